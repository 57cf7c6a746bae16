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

    def to_dict(self) -> dict:
        """``tp``, ``fn``, ``fp``, ``se`` and ``ppv``; a ratio with nothing to count (no
        reference beat of a class, no detection) is None, not 0: a class the record does
        not hold must not read as Se 0 %."""
        return {"tp": self.tp, "fn": self.fn, "fp": self.fp,
                "se": self.sensitivity if self.tp + self.fn else None,
                "ppv": self.ppv if self.tp + self.fp else None}


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


def class_scores(ri: np.ndarray, di: np.ndarray, rcls: np.ndarray, dcls: np.ndarray,
                 r_in: np.ndarray, d_in: np.ndarray, labels: list[str]
                 ) -> dict[str, DetectionScore]:
    """Per-class scores of matched pairs ``(ri, di)`` as EC57 counts them, over the
    reference beats and detections the masks ``r_in``/``d_in`` keep (``rcls``/``dcls``:
    class indices into ``labels``, -1 for none): a reference beat of class c is a true
    positive when it is matched and the detection is labelled c, else a false negative of
    c (missed, or given another class); a kept detection labelled c that is not such a
    true positive is a false positive of c, unless it is paired with a reference beat
    that is not kept (as :func:`score_pairs`, such a pair counts nowhere)."""
    ri, di = np.asarray(ri, np.int64), np.asarray(di, np.int64)
    rcls, dcls = np.asarray(rcls), np.asarray(dcls)
    paired_away = np.zeros(len(dcls), bool)
    paired_away[di[~r_in[ri]]] = True
    out = {}
    for k, name in enumerate(labels):
        ok = r_in[ri] & (rcls[ri] == k) & (dcls[di] == k)
        is_tp = np.zeros(len(dcls), bool)
        is_tp[di[ok]] = True
        tp = int(ok.sum())
        out[name] = DetectionScore(
            tp=tp, fn=int((r_in & (rcls == k)).sum()) - tp,
            fp=int((d_in & (dcls == k) & ~is_tp & ~paired_away).sum()))
    return out
