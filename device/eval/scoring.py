"""Beat-by-beat scoring of detections against reference annotations (ANSI/AAMI EC57
style): a detection matches a reference beat within a tolerance (150 ms), each used once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class DetectionScore:
    tp: int
    fn: int
    fp: int

    @property
    def sensitivity(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def ppv(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    def __add__(self, other: DetectionScore) -> DetectionScore:
        return DetectionScore(self.tp + other.tp, self.fn + other.fn, self.fp + other.fp)


def match_beats(ref: np.ndarray, det: np.ndarray, tolerance: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (ref index, det index) matched greedily by time order within ``tolerance``
    samples, each reference and detection used at most once."""
    ref = np.asarray(ref, np.int64)
    det = np.asarray(det, np.int64)
    ri, di = [], []
    j = 0
    for i, r in enumerate(ref):
        while j < len(det) and det[j] < r - tolerance:
            j += 1
        best, best_d = -1, tolerance + 1
        k = j
        while k < len(det) and det[k] <= r + tolerance:
            d = abs(int(det[k]) - int(r))
            if d < best_d:
                best, best_d = k, d
            k += 1
        if best >= 0:
            # prefer leaving the detection for the next reference if it is closer to it
            if i + 1 < len(ref) and abs(int(ref[i + 1]) - int(det[best])) < best_d:
                alt = [kk for kk in range(j, k) if kk != best]
                if alt:
                    best = min(alt, key=lambda kk: abs(int(det[kk]) - int(r)))
                else:
                    continue
            ri.append(i)
            di.append(best)
            j = best + 1
    return np.asarray(ri, np.int64), np.asarray(di, np.int64)


def score_detections(ref: np.ndarray, det: np.ndarray, fs: float,
                     tolerance_s: float = 0.15) -> DetectionScore:
    ri, _ = match_beats(ref, det, int(round(tolerance_s * fs)))
    return DetectionScore(tp=len(ri), fn=len(ref) - len(ri), fp=len(det) - len(ri))
