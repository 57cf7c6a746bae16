"""ECG -> input of the ECG emotion CNN-LSTM (seed 000), for a whole trial or a stream.

The seed's AMIGOS preprocessing, per trial: the baseline is the mean of the first 5 s;
the first 2 s after it (7 s from the start in all) and the last 2 s are dropped; the
baseline is subtracted; the rest is cut into 48 one-second windows at 128 Hz, giving a
model input of shape (48, 128, 1).

Everything is driven by one ``signal`` dict (saved in the run's config and the manifest),
read into an :class:`EcgEmotionSignal`:

``fs``            model sample rate (128)
``window_s``      sub-window length in seconds (1) -> ``fs * window_s`` samples per step
``n_windows``     sub-windows per model input (48)
``baseline_s``    the baseline is the mean of the first ``baseline_s`` seconds (5)
``skip_s``        seconds dropped after the baseline (2): segments start at 7 s
``trim_end_s``    seconds dropped at the end of a trial (2); a stream has no end, so the
                  streaming form ignores it
``hop_s``         seconds between consecutive 48 s segments of one trial or stream
``pad_short``     a trial too short for one segment gives one segment padded with zeros
                  (i.e. with the baseline level) instead of none
``filter``        optional causal Butterworth (``FilterSpec`` dict) applied at the source
                  rate from the first sample on, or None (the seed does not filter)

On a stream the baseline is defined as the mean of the stream's first ``baseline_s``
seconds (the device is put on, the subject rests, then the stream counts as one trial),
and segments start ``baseline_s + skip_s`` seconds into the stream, every ``hop_s``.

Source signals at another rate are resampled per segment: each segment is cut at the
source rate with the FIR's reach as margin, aligned to the resampling grid, baseline
subtracted and resampled. A segment thus depends only on its own source samples, so the
streaming :class:`EcgEmotionWindower` gives bit for bit the segments of :func:`segments`
(with ``trim_end=False``) for any chunking.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from vitaledge.device.dsp.filters import CausalFilter, FilterSpec
from vitaledge.device.dsp.resample import filter_half_len_in, rate_ratio, resample
from vitaledge.device.dsp.signal_buffer import SignalBuffer
from vitaledge.device.dsp.spec_fields import (
    construct,
    non_negative,
    positive,
    read_fields,
    require,
    sample_rate,
)
from vitaledge.device.inputs.signal_spec import SignalSpecBase

KIND = "ecg-emotion-segments"


def default_signal(hop_s: float = 4.0, filter: FilterSpec | None = None) -> dict:
    """The seed's preprocessing as a ``signal`` dict (hop chosen for streaming/training)."""
    return {"kind": KIND, "fs": 128.0, "window_s": 1.0, "n_windows": 48,
            "baseline_s": 5.0, "skip_s": 2.0, "trim_end_s": 2.0, "hop_s": float(hop_s),
            "pad_short": True, "filter": filter.to_dict() if filter is not None else None}


@dataclass(frozen=True)
class EcgEmotionSignal(SignalSpecBase):
    """The ``signal`` dict, typed and checked (fields as in the module docstring)."""

    kind: str
    fs: float
    window_s: float
    n_windows: int
    baseline_s: float
    skip_s: float
    trim_end_s: float
    hop_s: float
    pad_short: bool
    filter: FilterSpec | None

    def __post_init__(self) -> None:
        require(self.kind == KIND, "kind", f"{self.kind!r} is not {KIND!r}")
        sample_rate(self, "fs")
        positive(self, "window_s", "n_windows", "hop_s")
        non_negative(self, "baseline_s", "skip_s", "trim_end_s")

    def to_dict(self) -> dict:
        return {**asdict(self), "filter": None if self.filter is None else self.filter.to_dict()}

    @classmethod
    def from_dict(cls, d: dict | EcgEmotionSignal, where: str = "signal") -> EcgEmotionSignal:
        """From a run's or manifest's ``signal`` dict; unknown or missing fields are
        errors (:class:`~vitaledge.device.dsp.spec_fields.SpecError` naming the field)."""
        if isinstance(d, EcgEmotionSignal):
            return d
        return construct(cls, read_fields(cls, d, where, {"filter": FilterSpec.from_dict}),
                         where)


def check_signal(signal: dict | EcgEmotionSignal) -> EcgEmotionSignal:
    """Refuse a ``signal`` dict with unknown, missing or out-of-range fields."""
    return EcgEmotionSignal.from_dict(signal)


@dataclass(frozen=True)
class _Plan:
    """Integer geometry of the segments for one source rate."""

    fs_in: float
    up: int
    down: int
    h: int              # FIR reach in source samples (0 without resampling)
    n_base: int         # source samples averaged for the baseline
    first_out: int      # model-rate index of the first segment's first sample
    hop_out: int        # model-rate samples between segments
    seg_out: int        # model-rate samples per segment (n_windows * window)
    win: int            # samples per sub-window
    n_windows: int
    trim_end_in: int    # source samples dropped at a trial's end


def _plan(s: EcgEmotionSignal, fs_in: float) -> _Plan:
    fs = float(s.fs)
    win = int(round(s.window_s * fs))
    up, down = rate_ratio(fs_in, fs)
    h = filter_half_len_in(fs_in, fs)
    n_base = int(round(s.baseline_s * fs_in))
    if n_base < 1:
        raise ValueError("emotion ECG signal spec: baseline_s gives no samples")
    p = _Plan(fs_in=float(fs_in), up=up, down=down, h=h, n_base=n_base,
              first_out=int(round((s.baseline_s + s.skip_s) * fs)),
              hop_out=max(1, int(round(s.hop_s * fs))),
              seg_out=win * int(s.n_windows), win=win,
              n_windows=int(s.n_windows),
              trim_end_in=int(round(s.trim_end_s * fs_in)))
    if _span(p, p.first_out)[0] < 0:
        raise ValueError(f"emotion ECG signal spec: baseline_s + skip_s leaves no room for "
                         f"the resampling filter at {fs_in} Hz")
    return p


def _span(p: _Plan, a_out: int) -> tuple[int, int, int]:
    """Source span [start, stop) and output offset that give model samples
    [a_out, a_out + seg_out) exactly as resampling the whole signal would."""
    if p.up == p.down == 1:
        return a_out, a_out + p.seg_out, 0
    # the span starts on a multiple of ``down`` so its output grid is the global one
    start = (int(np.floor(a_out * p.down / p.up - p.h)) // p.down) * p.down
    stop = int(np.ceil((a_out + p.seg_out) * p.down / p.up)) + p.h + 1
    return start, stop, a_out - start * p.up // p.down


def _segment(p: _Plan, span: np.ndarray, offset: int, baseline: float) -> np.ndarray:
    y = span - baseline
    if not p.up == p.down == 1:
        y = resample(y, p.fs_in, p.fs_in * p.up / p.down)
    y = y[offset: offset + p.seg_out]
    out = np.zeros(p.seg_out, np.float32)
    out[: len(y)] = y
    return out.reshape(p.n_windows, p.win, 1)


def _as_signal(ecg: np.ndarray, name: str = "ecg") -> np.ndarray:
    x = np.asarray(ecg, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D signal, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        bad = int(np.flatnonzero(~np.isfinite(x))[0])
        raise ValueError(f"{name}: non-finite sample at index {bad}")
    return x


def segments(ecg: np.ndarray, fs: float, signal: dict | EcgEmotionSignal,
             trim_end: bool = True) -> np.ndarray:
    """All model inputs of one trial, every ``hop_s``: float32 (n, n_windows, win, 1).

    With ``pad_short`` a trial too short for one whole segment (but longer than the
    baseline and skip) gives one zero-padded segment; otherwise it gives none.
    """
    x = _as_signal(ecg)
    s = EcgEmotionSignal.from_dict(signal)
    p = _plan(s, fs)
    if len(x) < p.n_base:
        raise ValueError(f"ecg: {len(x)} samples, shorter than the {s.baseline_s} s "
                         "baseline")
    x = CausalFilter(s.filter, fs).process(x)
    baseline = float(x[: p.n_base].mean())
    end_in = len(x) - (p.trim_end_in if trim_end else 0)
    out = []
    a = p.first_out
    while True:
        start, stop, off = _span(p, a)
        if stop > end_in:
            break
        out.append(_segment(p, x[start:stop], off, baseline))
        a += p.hop_out
    if not out and s.pad_short:
        start, _, off = _span(p, p.first_out)
        if end_in - start > p.h + 1:
            seg = _segment(p, x[start:end_in], off, baseline)
            if np.any(seg):
                out.append(seg)
    if not out:
        return np.zeros((0, p.n_windows, p.win, 1), np.float32)
    return np.stack(out)


def model_input(ecg: np.ndarray, fs: float, signal: dict | EcgEmotionSignal) -> np.ndarray:
    """The seed's single model input for one trial: the first segment, (n_windows, win, 1).

    Raises ValueError when the trial is too short (and ``pad_short`` is off)."""
    s = EcgEmotionSignal.from_dict(signal)
    segs = segments(ecg, fs, s)
    if len(segs) == 0:
        need = s.baseline_s + s.skip_s + s.trim_end_s + s.n_windows * s.window_s
        raise ValueError(f"ecg: trial of {len(ecg) / fs:.1f} s is too short for one segment "
                         f"(needs {need:.1f} s)")
    return segs[0]


class EcgEmotionWindower:
    """Streaming form of :func:`segments`: ``push(chunk)`` returns the model inputs
    (each (n_windows, win, 1) float32) completed by that chunk, every ``hop_s`` once the
    first ``baseline_s + skip_s + n_windows * window_s`` seconds have arrived.

    The baseline is the mean of the stream's first ``baseline_s`` seconds."""

    def __init__(self, signal: dict | EcgEmotionSignal, fs_in: float | None = None):
        self.signal = EcgEmotionSignal.from_dict(signal)
        self.fs_in = float(self.signal.fs if fs_in is None else fs_in)
        self._p = _plan(self.signal, self.fs_in)
        self._filter = CausalFilter(self.signal.filter, self.fs_in)
        self._buf = SignalBuffer()
        self.baseline: float | None = None
        self._next_out = self._p.first_out
        self.n_emitted = 0

    def push(self, chunk: np.ndarray) -> list[np.ndarray]:
        x = self._filter.process(_as_signal(np.atleast_1d(chunk), "ecg chunk"))
        if x.size == 0:
            return []
        self._buf.append(x)
        if self.baseline is None:
            if self._buf.end < self._p.n_base:
                return []
            # the same reduction as the batch form: one mean over the baseline samples
            self.baseline = float(self._buf.get(0, self._p.n_base).mean())
        out = []
        while True:
            start, stop, off = _span(self._p, self._next_out)
            if stop > self._buf.end:
                break
            out.append(_segment(self._p, self._buf.get(start, stop), off, self.baseline))
            self._next_out += self._p.hop_out
            self.n_emitted += 1
        self._buf.trim(_span(self._p, self._next_out)[0])
        return out
