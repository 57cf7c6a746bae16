"""The premature-beat rule: a beat of normal shape that comes early is supraventricular.

What separates an S beat from an N beat on a patient the model has never seen is timing,
not shape: an atrial premature beat has a normal QRS, and arrives before the patient's
rhythm says it should (de Chazal, O'Dwyer & Reilly, IEEE TBME 51(7), 2004; Mondéjar-Guerra
et al., BSPC 47, 2019: RR intervals, and RR intervals over the patient's own mean, carry
most of their S sensitivity). A network given the RR features beside the window learns to
tell the *training* patients' S beats by their shape instead, and misses most S beats of a
new patient (docs/results.md). This rule puts the timing decision where it generalizes:

    score = sigmoid(bias + sum_k weight_k * log(term_k))        (terms below)

and a beat the network calls N or S is S when ``score > threshold`` and the rhythm before
it is regular (its ``irregularity`` RR feature at most ``max_irregularity``), N otherwise;
V, F and Q stay the network's (a premature ventricular beat is premature too: its shape
says V). The regularity gate is for atrial fibrillation: there every other beat comes
early, and the rule without it called thousands of AF beats of DS1's records 201 and 203
S (docs/results.md). Isolated premature beats leave the median successive difference of the
last 20 intervals low; only a rhythm irregular beat after beat raises it.
The weights are a logistic regression fitted at training time on the training patients'
N and S beats (``vitaledge.train.premature``); the rule travels in the manifest's signal
spec, so training, conversion checks, ``evaluate`` and the daemon decide the same way.

Terms, each a ratio of a beat's RR features (:mod:`vitaledge.device.dsp.rr`), so they are
known when the beat's features are (at the next R peak) and need no state of their own:

``pre_rel``    pre-RR over the patient's long-term mean RR
``post_rel``   post-RR over the long-term mean
``local_rel``  local mean RR over the long-term mean
``pre_local``  pre-RR over the local mean RR (premature against the last ~10 beats)
``post_pre``   post-RR over pre-RR (the compensatory pause after a premature beat)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vitaledge.device.dsp.rr import FEATURES
from vitaledge.device.dsp.spec_fields import construct, read_fields, require

_F = FEATURES.index
#: Each term as (numerator feature, denominator feature or None).
TERMS: dict[str, tuple[str, str | None]] = {
    "pre_rel": ("pre_rel", None),
    "post_rel": ("post_rel", None),
    "local_rel": ("local_rel", None),
    "pre_local": ("pre_rr", "local_rr"),
    "post_pre": ("post_rr", "pre_rr"),
}
#: The classes the rule decides between (the rest keep the network's decision).
NORMAL, PREMATURE = "N", "S"
#: The classes the rule decides between: a model's labels must hold them.
LABELS = (NORMAL, PREMATURE)


def log_terms(rr: np.ndarray, terms: tuple[str, ...] | list[str]) -> np.ndarray:
    """(n, len(terms)) natural logs of the named terms of RR feature rows ``rr`` (n, k)."""
    rr = np.atleast_2d(np.asarray(rr, dtype=np.float64))
    cols = []
    for t in terms:
        num, den = TERMS[t]
        v = rr[:, _F(num)] if den is None else rr[:, _F(num)] / rr[:, _F(den)]
        cols.append(np.log(np.maximum(v, 1e-6)))
    return np.stack(cols, axis=1) if cols else np.zeros((len(rr), 0))


@dataclass(frozen=True)
class PrematureRule:
    """A fitted rule: terms, their weights, the bias, the probability threshold, and the
    irregularity above which no beat is called S by timing (None: no such gate)."""

    terms: list[str]
    weights: list[float]
    bias: float
    threshold: float = 0.8
    max_irregularity: float | None = None

    def __post_init__(self) -> None:
        unknown = [t for t in self.terms if t not in TERMS]
        require(bool(self.terms) and not unknown, "terms",
                f"expected some of {sorted(TERMS)}, got {list(self.terms)!r}")
        require(len(self.weights) == len(self.terms), "weights",
                f"{len(self.weights)} weights for {len(self.terms)} terms")
        require(all(math.isfinite(w) for w in [*self.weights, self.bias]), "weights",
                "expected finite weights and bias")
        require(0.0 < self.threshold < 1.0, "threshold",
                f"expected a probability in (0, 1), got {self.threshold!r}")
        require(self.max_irregularity is None or self.max_irregularity > 0,
                "max_irregularity", f"expected a positive number or null, got "
                f"{self.max_irregularity!r}")

    @classmethod
    def from_dict(cls, d: dict, where: str = "premature") -> PrematureRule:
        """From a signal spec's ``premature`` dict; unknown or missing fields are errors
        (``max_irregularity`` may be absent: a rule fitted before the gate existed)."""
        if isinstance(d, dict):
            d = {"max_irregularity": None, **d}
        return construct(cls, read_fields(cls, d, where), where)

    def score(self, rr: np.ndarray) -> np.ndarray:
        """(n,) probability that each beat (RR feature rows) is premature."""
        z = self.bias + log_terms(rr, self.terms) @ np.asarray(self.weights, np.float64)
        return 1.0 / (1.0 + np.exp(-z))

    def regular(self, rr: np.ndarray) -> np.ndarray:
        """(n,) whether each beat's rhythm is regular enough for timing to say S."""
        rr = np.atleast_2d(np.asarray(rr, dtype=np.float32))  # the features' own precision
        if self.max_irregularity is None:
            return np.ones(len(rr), dtype=bool)
        return rr[:, _F("irregularity")] <= np.float32(self.max_irregularity)

    def apply(self, pred: np.ndarray, rr: np.ndarray, labels: list[str]) -> np.ndarray:
        """The classes ``pred`` (indices into ``labels``) with every N-or-S beat decided by
        timing: S when the score passes the threshold in a regular rhythm, else N."""
        pred = np.asarray(pred).copy()
        if len(pred) == 0:
            return pred
        n, s = labels.index(NORMAL), labels.index(PREMATURE)
        ns = (pred == n) | (pred == s)
        early = (self.score(rr) > self.threshold) & self.regular(rr)
        pred[ns & early] = s
        pred[ns & ~early] = n
        return pred

    def to_dict(self) -> dict:
        return {"terms": list(self.terms), "weights": [float(w) for w in self.weights],
                "bias": float(self.bias), "threshold": float(self.threshold),
                "max_irregularity": (None if self.max_irregularity is None
                                     else float(self.max_irregularity))}
