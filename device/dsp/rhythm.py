"""Rolling rhythm statistics over the most recent beats."""

from __future__ import annotations

from collections import Counter, deque

import numpy as np


class RhythmStats:
    """Heart rate, SDNN and RMSSD over the last ``window`` RR intervals, and class counts."""

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
        rr = np.asarray(self.rr)
        out = {"beats": self.beats, "classes": {lab: self.counts.get(lab, 0)
                                                for lab in self.labels}}
        if len(rr):
            out["heart_rate_bpm"] = round(60.0 / float(rr.mean()), 1)
            out["sdnn_ms"] = round(float(rr.std()) * 1e3, 1)
        if len(rr) > 1:
            out["rmssd_ms"] = round(float(np.sqrt(np.mean(np.diff(rr) ** 2))) * 1e3, 1)
        return out
