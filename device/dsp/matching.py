"""Pairing two sequences of R peaks (a detector's and a reference's, or two detectors'):
each beat matched at most once, within a tolerance, in time order. Scoring counts the pairs
(ANSI/AAMI EC57: 150 ms); training labels detected beats with their matched reference."""

from __future__ import annotations

import numpy as np

#: ANSI/AAMI EC57's matching window: a detection within 150 ms of a reference beat matches it.
#: Every scorer (and the labelling of detected training beats) uses this one value.
TOLERANCE_S = 0.15


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
