"""Rhythm statistics of RR intervals: heart rate, SDNN, RMSSD and pNN50 as the Task Force
of the ESC/NASPE (Circulation 93, 1996) defines them, with intervals outside a heart's
range left out as detection errors (a monitor's range, :data:`HEART_RATE_BPM`, for the
daemon's rolling figures over the most recent beats, /health and its summary,
:class:`RhythmStats`; the narrower :data:`RR_RANGE_S` for the emotion model's HRV
features, :mod:`.hrv`, which add LF/HF)."""

from __future__ import annotations

from collections import Counter, deque

import numpy as np

#: RR intervals (s) of the HRV features: outside, detection errors, dropped (the emotion
#: models were trained so).
RR_RANGE_S = (0.3, 2.0)
#: Heart rates (/min) a monitor reports: a ventricular tachycardia at 220 or a block at 25
#: is the heart's rate, not a detection error. The signal-quality gate's plausible rates.
HEART_RATE_BPM = (20.0, 250.0)
#: :data:`HEART_RATE_BPM` as RR intervals (s).
HEART_RR_S = (60.0 / HEART_RATE_BPM[1], 60.0 / HEART_RATE_BPM[0])


def in_range(rr_s, rr_range: tuple[float, float] = RR_RANGE_S) -> np.ndarray:
    """The RR intervals (s) inside ``rr_range``, float64: the others are detection errors
    (a missed or an invented beat), not the heart's rhythm."""
    rr = np.asarray(rr_s, dtype=np.float64)
    return rr[(rr >= rr_range[0]) & (rr <= rr_range[1])]


def time_domain(rr_s, rr_range: tuple[float, float] = RR_RANGE_S) -> dict[str, float]:
    """Mean HR (/min), SDNN (ms, the sample standard deviation), RMSSD (ms) and pNN50 (%) of
    the RR intervals (s) inside ``rr_range``; a statistic that needs more intervals than
    are left is absent (mean HR needs one, the others two)."""
    rr = in_range(rr_s, rr_range)
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
    intervals inside :data:`HEART_RR_S` (a monitor's range, wider than the HRV features'),
    and class counts."""

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
        td = time_domain(list(self.rr), HEART_RR_S)
        for key, name in (("mean_hr", "heart_rate_bpm"), ("sdnn", "sdnn_ms"),
                          ("rmssd", "rmssd_ms")):
            if key in td:
                out[name] = round(td[key], 1)
        return out
