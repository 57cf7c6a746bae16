"""The sensor board's analog front end and ADC: gain, baseline, quantization, saturation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AdcModel:
    """``bits``-bit signed converter; ``gain`` counts per mV, ``baseline`` the count at 0 mV.

    The default (12 bits, 200 counts/mV) has MIT-BIH's own 5 uV step, so a record passes
    through it unchanged; its range is +/-10.24 mV around the baseline.
    """

    bits: int = 12
    gain: float = 200.0
    baseline: int = 0

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 16:
            raise ValueError(f"ADC bits {self.bits}: expected 2..16 (samples travel as int16)")
        if not self.gain > 0:
            raise ValueError(f"ADC gain {self.gain}: must be positive (counts per mV)")
        if not self.lo <= self.baseline <= self.hi:
            raise ValueError(f"ADC baseline {self.baseline} outside the {self.bits}-bit range")

    @property
    def lo(self) -> int:
        return -(1 << (self.bits - 1))

    @property
    def hi(self) -> int:
        return (1 << (self.bits - 1)) - 1

    def convert(self, x_mv: np.ndarray) -> np.ndarray:
        """mV -> int16 counts, rounded to the step and clipped at the rails."""
        c = np.round(np.asarray(x_mv, np.float64) * self.gain) + self.baseline
        return np.clip(c, self.lo, self.hi).astype(np.int16)

    def saturated(self, counts: np.ndarray) -> np.ndarray:
        """True where a count sits on a rail."""
        return (counts <= self.lo) | (counts >= self.hi)
