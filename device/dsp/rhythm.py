"""Rhythm statistics of RR intervals: heart rate, SDNN, RMSSD and pNN50 as the Task Force
of the ESC/NASPE (Circulation 93, 1996) defines them, with intervals outside a heart's
range left out as detection errors. The daemon keeps them rolling over the most recent
beats (/health and its summary, :class:`RhythmStats`); the emotion model's HRV features
(:mod:`.hrv`) are these plus LF/HF."""

from __future__ import annotations

from collections import Counter, deque

import numpy as np

#: RR intervals outside this range (s) are treated as detection errors and dropped.
RR_RANGE_S = (0.3, 2.0)


def in_range(rr_s) -> np.ndarray:
    """The RR intervals (s) inside :data:`RR_RANGE_S`, float64: the others are detection
    errors (a missed or an invented beat), not the heart's rhythm."""
    rr = np.asarray(rr_s, dtype=np.float64)
    return rr[(rr >= RR_RANGE_S[0]) & (rr <= RR_RANGE_S[1])]


def time_domain(rr_s) -> dict[str, float]:
    """Mean HR (/min), SDNN (ms, the sample standard deviation), RMSSD (ms) and pNN50 (%) of
    the RR intervals (s) inside :data:`RR_RANGE_S`; a statistic that needs more intervals
    than are left is absent (mean HR needs one, the others two)."""
    rr = in_range(rr_s)
    out: dict[str, float] = {}
    if len(rr):
        out["mean_hr"] = float(60.0 / rr.mean())
    if len(rr) > 1:
        d = np.diff(rr)
        out["sdnn"] = float(rr.std(ddof=1) * 1000.0)
        out["rmssd"] = float(np.sqrt(np.mean(d * d)) * 1000.0)
        out["pnn50"] = float(np.mean(np.abs(d) > 0.05) * 100.0)
    return out


class RhythmStats:
    """Heart rate, SDNN and RMSSD (:func:`time_domain`) over the last ``window`` RR
    intervals, and class counts."""

    def __init__(self, labels: list[str], window: int = 64):
        self.labels = labels
        self.rr: deque[float] = deque(maxlen=window)
        self.counts: Counter[str] = Counter()
        self.beats = 0

    def add(self, label: str, rr_s: float | None) -> None:
        self.beats += 1
        self.counts[label] += 1
        if rr_s is not None:
            self.rr.append(rr_s)

    def summary(self) -> dict:
        out = {"beats": self.beats, "classes": {lab: self.counts.get(lab, 0)
                                                for lab in self.labels}}
        td = time_domain(list(self.rr))
        for key, name in (("mean_hr", "heart_rate_bpm"), ("sdnn", "sdnn_ms"),
                          ("rmssd", "rmssd_ms")):
            if key in td:
                out[name] = round(td[key], 1)
        return out
