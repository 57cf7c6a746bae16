"""ECG signal faults found in the sample stream before detection: they are cut out of the
stream (the pipeline sees a gap, so nothing in them is ever classified as a beat) and
reported as status events when they start and end.

* ``non_finite``: NaN or infinite samples.
* ``out_of_range``: |x| > ``max_abs`` (1e9): no ECG front end gives that in mV, µV or
  24-bit ADC counts, so it is garbage on the wire, and left in it would overflow the
  detector's squared derivative to inf and its filters' state to NaN for the rest of the
  stream (a CSV replay with one sample of 1e300 gave 16 of 72 beats, with no fault
  reported).
* ``saturation``: the signal stuck at one value (|x[i] - x[i-1]| <= ``eps``) with
  |x| >= ``sat_mv`` for at least ``sat_s`` — a clipped amplifier or ADC.
* ``lead_off``: the signal stuck at one value for at least ``flat_s`` at any level — an
  electrode off (the front end rails or holds).

The first ``sat_s``/``flat_s`` of a stuck run have already gone to the pipeline when the
run qualifies; a flat stretch holds no QRS, and beats whose window reaches into the cut
are dropped at the gap. Defaults were checked on the seven MIT-BIH records here: their
longest stuck run is 9 samples (25 ms at 360 Hz) and no stuck run at |x| >= 2.5 mV is
longer than 4 samples, so none of them reports a fault.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fault:
    """``n`` samples of the stream cut out as ``kind``."""

    kind: str
    n: int


@dataclass(frozen=True)
class Change:
    """A fault started (``kind``) or ended (``kind="signal_ok"``, ``after``, ``samples``)."""

    kind: str
    after: str | None = None
    samples: int = 0


class SignalMonitor:
    """Splits chunks of one ECG lead into clean arrays, :class:`Fault` runs and
    :class:`Change` markers, in stream order; state carries across chunks."""

    def __init__(self, fs: float, sat_mv: float = 2.5, sat_s: float = 0.03,
                 flat_s: float = 0.5, eps: float = 1e-9, max_abs: float = 1e9):
        self.sat_n = max(2, int(round(sat_s * fs)))
        self.flat_n = max(self.sat_n + 1, int(round(flat_s * fs)))
        self.sat_mv, self.eps, self.max_abs = float(sat_mv), float(eps), float(max_abs)
        self._prev: float | None = None
        self._run = 0
        self._kind: str | None = None
        self._total = 0
        self.counts: dict[str, int] = {"non_finite": 0, "saturation": 0, "lead_off": 0,
                                       "out_of_range": 0}

    def kinds(self, x: np.ndarray) -> np.ndarray:
        """Per-sample fault kind code: 0 clean, 1 non_finite, 2 saturation, 3 lead_off,
        4 out_of_range."""
        n = len(x)
        fin = np.isfinite(x)
        wild = fin & (np.abs(np.where(fin, x, 0.0)) > self.max_abs)
        fin &= ~wild  # a wild sample breaks a stuck run as a non-finite one does
        same = np.zeros(n, dtype=bool)
        if n:
            with np.errstate(invalid="ignore", over="ignore"):
                same[1:] = fin[1:] & fin[:-1] & (np.abs(np.diff(x)) <= self.eps)
                if self._prev is not None and fin[0]:
                    same[0] = abs(x[0] - self._prev) <= self.eps
        idx = np.arange(n)
        reset = np.maximum.accumulate(np.where(~same, idx, -1))
        run = np.where(reset >= 0, idx - reset + 1, self._run + idx + 1)
        run = np.where(fin, run, 0)
        code = np.zeros(n, dtype=np.int8)
        with np.errstate(invalid="ignore"):
            code[run >= self.flat_n] = 3
            code[(run >= self.sat_n) & (np.abs(x) >= self.sat_mv)] = 2
        code[~fin] = 1
        code[wild] = 4
        if n:
            self._run = int(run[-1])
            self._prev = float(x[-1]) if fin[-1] else None
        return code

    def split(self, x: np.ndarray) -> list:
        x = np.asarray(x, dtype=np.float64).ravel()
        code = self.kinds(x)
        out: list = []
        if not len(x):
            return out
        names = (None, "non_finite", "saturation", "lead_off", "out_of_range")
        edges = np.flatnonzero(np.diff(code)) + 1
        for a, b in zip(np.r_[0, edges], np.r_[edges, len(x)], strict=True):
            kind = names[int(code[a])]
            if kind != self._kind:
                if self._kind is not None:
                    out.append(Change("signal_ok", self._kind, self._total))
                if kind is not None:
                    out.append(Change(kind))
                self._kind, self._total = kind, 0
            if kind is None:
                out.append(x[a:b])
            else:
                self._total += int(b - a)
                self.counts[kind] += int(b - a)
                out.append(Fault(kind, int(b - a)))
        return out
