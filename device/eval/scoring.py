"""Beat-by-beat scoring of detections against reference annotations (ANSI/AAMI EC57
style): a detection matches a reference beat within a tolerance (150 ms), each used once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitaledge.device.dsp.matching import TOLERANCE_S, match_beats


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
                     tolerance_s: float = TOLERANCE_S) -> DetectionScore:
    ri, _ = match_beats(ref, det, int(round(tolerance_s * fs)))
    return DetectionScore(tp=len(ri), fn=len(ref) - len(ri), fp=len(det) - len(ri))


def outside(samples: np.ndarray, segments: list[tuple[int, int]]) -> np.ndarray:
    """Mask of ``samples`` outside every [start, stop) of ``segments``."""
    samples = np.asarray(samples, np.int64)
    keep = np.ones(len(samples), dtype=bool)
    for a, b in segments:
        keep &= ~((samples >= a) & (samples < b))
    return keep


def match_outside(ref: np.ndarray, det: np.ndarray, fs: float,
                  segments: list[tuple[int, int]], tolerance_s: float = TOLERANCE_S
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, DetectionScore]:
    """Detections matched to reference beats over the whole record, then reference beats
    and detections inside ``segments`` (flagged stretches, VF episodes) left out, as EC57
    leaves out excluded stretches: ``(ri, di, ref_out, det_out, score)``, the matched index
    pairs, the masks of the reference beats and detections outside, and the score there (a
    pair counts when its reference beat is outside)."""
    ref = np.asarray(ref, np.int64)
    det = np.asarray(det, np.int64)
    ri, di = match_beats(ref, det, int(round(tolerance_s * fs)))
    r_in, d_in = outside(ref, segments), outside(det, segments)
    return ri, di, r_in, d_in, score_pairs(ri, di, r_in, d_in)


def score_pairs(ri: np.ndarray, di: np.ndarray, r_in: np.ndarray,
                d_in: np.ndarray) -> DetectionScore:
    """The score of matched pairs ``(ri, di)`` over the reference beats and detections the
    masks ``r_in``/``d_in`` keep (a pair counts when its reference beat is kept): one
    matching scored over several stretches without matching again."""
    tp = int(r_in[ri].sum())
    return DetectionScore(tp=tp, fn=int(r_in.sum()) - tp,
                          fp=int(d_in.sum()) - int(d_in[di].sum()))


def score_outside(ref: np.ndarray, det: np.ndarray, fs: float,
                  segments: list[tuple[int, int]], tolerance_s: float = TOLERANCE_S
                  ) -> DetectionScore:
    """Detection scored only outside ``segments`` (:func:`match_outside`)."""
    return match_outside(ref, det, fs, segments, tolerance_s)[-1]
