"""RR-interval features of each beat, computed causally: what separates S from N on a new
patient is timing, not shape.

For the beat at R peak ``r[i]`` (all in seconds):

``pre_rr``     r[i] - r[i-1]
``post_rr``    r[i+1] - r[i]  (so a beat's features are known when the next R peak arrives)
``local_rr``   mean of the last ``local_beats`` RR intervals before this beat
``long_rr``    mean of the RR intervals of the last ``long_s`` seconds before this beat
``pre_rel``, ``post_rel``, ``local_rel``   the first three divided by ``long_rr``: the
               patient's own running mean, so a premature beat looks premature whatever the
               patient's heart rate
``irregularity``  median absolute difference of successive RR intervals over the last
               ``irregular_beats`` intervals before this beat, divided by their mean: low in
               sinus rhythm with isolated premature beats (most successive intervals are
               alike), high when the rhythm is irregular beat after beat, as in atrial
               fibrillation, where "early" says nothing about the beat (0 with fewer than
               ``MIN_IRREGULAR`` intervals of history)

After de Chazal, O'Dwyer & Reilly (IEEE TBME 51(7), 2004: pre-, post-, average and local
average RR) and Mondéjar-Guerra et al. (Biomed. Signal Process. Control 47, 2019: the same
intervals normalised by the patient's mean). Both used centred windows over a whole record;
here every mean looks only backwards, so the daemon can compute it on a stream.

Intervals outside ``[min_rr_s, max_rr_s]`` (a missed or doubled detection, a pause) are
clipped before they enter the means. The first beat of a stream, which has no
predecessor, takes the local mean (or, with no history, its post-RR) as pre-RR; with no
history the means are its own interval.
A hole in the stream (:meth:`RRFeatures.gap`) ends the current run of peaks: the beat
before it is emitted with its post-RR taken as the local mean, the interval across the hole
is never used, and the history is kept for a short hole (the heart went on beating) or
dropped for a long one. (After a short hole, one successive difference of the irregularity
compares the intervals either side of it.)

:class:`RRFeatures` is the one implementation; :func:`rr_features` (training) feeds it a
whole record's peaks, so training and the stream compute the same numbers bit for bit.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

FEATURES = ("pre_rr", "post_rr", "local_rr", "long_rr", "pre_rel", "post_rel", "local_rel",
            "irregularity")
#: Fewest intervals of history the irregularity is measured on (else it is 0).
MIN_IRREGULAR = 6


@dataclass(frozen=True)
class RRSpec:
    """How the RR features are computed; saved in the manifest's signal spec.

    ``features`` are the ones a model takes, in order: all of :data:`FEATURES`, or the
    first seven for a model trained before ``irregularity`` existed."""

    local_beats: int = 10
    long_s: float = 300.0
    min_rr_s: float = 0.2
    max_rr_s: float = 2.5
    irregular_beats: int = 20
    features: tuple[str, ...] = FEATURES

    def __post_init__(self):
        if not (isinstance(self.local_beats, int) and self.local_beats >= 1):
            raise ValueError(f"rr.local_beats: expected an int >= 1, got {self.local_beats!r}")
        if not (isinstance(self.irregular_beats, int)
                and self.irregular_beats >= MIN_IRREGULAR):
            raise ValueError(f"rr.irregular_beats: expected an int >= {MIN_IRREGULAR}, got "
                             f"{self.irregular_beats!r}")
        feats = tuple(self.features)
        if feats not in {FEATURES, FEATURES[:7]}:
            raise ValueError(f"rr.features: this device computes {list(FEATURES)} (or the "
                             f"first seven of them), the model wants {list(feats)}")
        object.__setattr__(self, "features", feats)
        if not self.long_s > 0:
            raise ValueError(f"rr.long_s: expected a positive number, got {self.long_s!r}")
        if not 0 < self.min_rr_s < self.max_rr_s:
            raise ValueError(f"rr.min_rr_s/max_rr_s: expected 0 < min < max, got "
                             f"{self.min_rr_s!r}, {self.max_rr_s!r}")

    def to_dict(self) -> dict:
        return {**asdict(self), "features": list(self.features)}

    @classmethod
    def from_dict(cls, d: dict) -> RRSpec:
        d = dict(d)
        if not isinstance(d.get("features", []), list):
            raise ValueError(f"rr.features: expected a list, got {d['features']!r}")
        d["features"] = tuple(d.get("features", FEATURES))
        unknown = set(d) - {"local_beats", "long_s", "min_rr_s", "max_rr_s",
                            "irregular_beats", "features"}
        if unknown:
            raise ValueError(f"rr: unknown keys {sorted(unknown)}")
        return cls(**d)


class RRFeatures:
    """Streaming RR features: :meth:`push` each R peak (absolute sample index, increasing);
    it returns ``(r, features)`` for the beat before it, whose post-RR is now known."""

    #: A hole longer than this drops the RR history (a new recording, another rhythm).
    WARM_GAP_S = 30.0

    def __init__(self, fs: float, spec: RRSpec | None = None):
        self.fs = float(fs)
        self.spec = spec or RRSpec()
        self._history: deque[tuple[float, float]] = deque()  # (time of the later R, rr)
        # (R, pre-RR, local mean, long mean, irregularity) of the beat waiting for its post-RR
        self._pending: tuple[int, float | None, float | None, float | None, float] | None = None
        self._last_r: int | None = None

    def _clip(self, rr: float) -> float:
        return min(max(rr, self.spec.min_rr_s), self.spec.max_rr_s)

    def _means(self, t: float) -> tuple[float | None, float | None, float]:
        """(local, long) means and the irregularity of the intervals before time ``t``."""
        while self._history and self._history[0][0] <= t - self.spec.long_s:
            self._history.popleft()
        if not self._history:
            return None, None, 0.0
        rrs = [rr for _, rr in self._history]
        local = rrs[-self.spec.local_beats:]
        return sum(local) / len(local), sum(rrs) / len(rrs), irregularity(
            rrs[-self.spec.irregular_beats:])

    def _emit(self, post: float | None) -> tuple[int, np.ndarray]:
        r, pre, local, long, irregular = self._pending
        self._pending = None
        if post is None:  # end of a run of peaks: the rhythm so far stands in for it
            post = local if local is not None else pre
        if pre is None:  # first beat of a run
            pre = local if local is not None else post
        if pre is None:  # one lonely beat: nothing to go on but a resting heart
            pre = post = 1.0
        local = pre if local is None else local
        long = pre if long is None else long
        row = [pre, post, local, long, pre / long, post / long, local / long, irregular]
        return r, np.array(row[:len(self.spec.features)], dtype=np.float32)

    def push(self, r: int) -> list[tuple[int, np.ndarray]]:
        out = []
        rr = None if self._last_r is None else self._clip((r - self._last_r) / self.fs)
        if self._pending is not None:
            out.append(self._emit(rr))
        local, long, irregular = self._means(r / self.fs)
        if rr is not None:
            self._history.append((r / self.fs, rr))
        self._pending = (r, rr, local, long, irregular)
        self._last_r = r
        return out

    def flush(self) -> list[tuple[int, np.ndarray]]:
        """End of stream: the last beat, its post-RR taken as the local mean."""
        return [self._emit(None)] if self._pending is not None else []

    def gap(self, seconds: float) -> list[tuple[int, np.ndarray]]:
        """Samples were lost: emit the beat waiting for its post-RR, never use the interval
        across the hole, and keep the history only for a short hole."""
        out = self.flush()
        self._last_r = None
        if seconds > self.WARM_GAP_S:
            self._history.clear()
        return out


def irregularity(rrs: list[float]) -> float:
    """Median absolute successive difference of intervals ``rrs`` over their mean (0 with
    fewer than :data:`MIN_IRREGULAR`)."""
    if len(rrs) < MIN_IRREGULAR:
        return 0.0
    a = np.asarray(rrs, dtype=np.float64)
    return float(np.median(np.abs(np.diff(a))) / a.mean())


def rr_features(peaks: np.ndarray, fs: float, spec: RRSpec | None = None) -> np.ndarray:
    """(n, len(spec.features)) float32 features of every peak in ``peaks`` (one record,
    sample indices in order), through the streaming implementation."""
    f = RRFeatures(fs, spec)
    rows = []
    for r in np.asarray(peaks, dtype=np.int64):
        rows += f.push(int(r))
    rows += f.flush()
    return (np.stack([x for _, x in rows]) if rows
            else np.zeros((0, len(f.spec.features)), np.float32))
