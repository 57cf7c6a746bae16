"""Beat-by-beat scoring of detections against reference annotations (ANSI/AAMI EC57
style): a detection matches a reference beat within a tolerance (150 ms), each used once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitaledge.device.dsp.matching import match_beats


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


def score_detections(ref: np.ndarray, det: np.ndarray, fs: float,
                     tolerance_s: float = 0.15) -> DetectionScore:
    ri, _ = match_beats(ref, det, int(round(tolerance_s * fs)))
    return DetectionScore(tp=len(ri), fn=len(ref) - len(ri), fp=len(det) - len(ri))
