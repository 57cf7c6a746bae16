"""Causal IIR filtering of ECG, identical in batch and streaming use.

Zero-phase filters (filtfilt) need the future and cannot run on a stream, so the device
and training both use the same causal Butterworth sections. State starts at the filter's
step response to the first sample, so a signal with a DC offset does not ring at start.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import signal as sps


@dataclass(frozen=True)
class FilterSpec:
    """Band-pass (or high/low-pass when one edge is None) Butterworth filter."""

    low_hz: float | None = 0.5
    high_hz: float | None = 40.0
    order: int = 2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> FilterSpec | None:
        if d is None:
            return None
        unknown = set(d) - {"low_hz", "high_hz", "order"}
        if unknown:
            raise ValueError(f"filter spec: unknown fields {sorted(unknown)}")
        return cls(**d)


def design(spec: FilterSpec, fs: float) -> np.ndarray:
    """Second-order sections for ``spec`` at sample rate ``fs``."""
    nyq = fs / 2.0
    if spec.high_hz is not None and spec.high_hz >= nyq:
        raise ValueError(f"filter high edge {spec.high_hz} Hz is not below Nyquist ({nyq} Hz)")
    if spec.low_hz is not None and spec.high_hz is not None:
        return sps.butter(spec.order, [spec.low_hz, spec.high_hz], btype="bandpass",
                          fs=fs, output="sos")
    if spec.low_hz is not None:
        return sps.butter(spec.order, spec.low_hz, btype="highpass", fs=fs, output="sos")
    if spec.high_hz is not None:
        return sps.butter(spec.order, spec.high_hz, btype="lowpass", fs=fs, output="sos")
    raise ValueError("filter spec needs low_hz, high_hz or both")


class CausalFilter:
    """Stateful causal filter: ``process(chunk)`` over consecutive chunks equals one call
    on the concatenated signal, for any chunk sizes."""

    def __init__(self, spec: FilterSpec | None, fs: float):
        self.spec = spec
        self.fs = fs
        self._sos = design(spec, fs) if spec is not None else None
        self._zi: np.ndarray | None = None

    def reset(self) -> None:
        self._zi = None

    def process(self, chunk: np.ndarray) -> np.ndarray:
        x = np.asarray(chunk, dtype=np.float64)
        if self._sos is None or x.size == 0:
            return x.copy()
        if self._zi is None:
            self._zi = sps.sosfilt_zi(self._sos) * x[0]
        y, self._zi = sps.sosfilt(self._sos, x, zi=self._zi)
        return y


def apply_filter(x: np.ndarray, fs: float, spec: FilterSpec | None) -> np.ndarray:
    """Filter a whole signal (the batch form of :class:`CausalFilter`)."""
    return CausalFilter(spec, fs).process(x)
