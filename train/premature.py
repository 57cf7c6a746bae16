"""Fitting the premature-beat rule (:mod:`vitaledge.device.dsp.premature`) on training
patients: a logistic regression of S against N over the log RR-ratio terms, classes
weighted equally (S beats are a few per cent of a training set), fitted on the training
patients' N and S beats only — never on validation or test patients."""

from __future__ import annotations

from vitaledge.device.dsp.premature import NORMAL, PREMATURE, PrematureRule, log_terms
from vitaledge.device.io.aami import CLASSES
from vitaledge.device.io.beats import BeatSet

#: The terms of the default rule: prematurity against the patient's long-term and local
#: mean, and the pause that follows (DS1 leave-one-record-out, docs/results.md).
DEFAULT_TERMS = ("pre_rel", "pre_local", "post_pre")
#: Fewest beats of each class the fit accepts.
MIN_BEATS = 20


def fit_premature(beats: BeatSet, threshold: float = 0.8,
                  terms: tuple[str, ...] = DEFAULT_TERMS,
                  max_irregularity: float | None = None) -> PrematureRule:
    """The rule fitted on ``beats`` (which must carry RR features); ``max_irregularity``
    is passed through to the rule (its regularity gate, not fitted)."""
    from sklearn.linear_model import LogisticRegression

    if beats.rr is None:
        raise ValueError("the premature-beat rule needs RR features: choose an architecture "
                         "with an \"rr\" input")
    n, s = CLASSES.index(NORMAL), CLASSES.index(PREMATURE)
    keep = (beats.y == n) | (beats.y == s)
    is_s = beats.y[keep] == s
    if is_s.sum() < MIN_BEATS or (~is_s).sum() < MIN_BEATS:
        raise ValueError(f"the premature-beat rule needs at least {MIN_BEATS} N and "
                         f"{MIN_BEATS} S training beats; these patients have "
                         f"{int((~is_s).sum())} N and {int(is_s.sum())} S (train with "
                         "--s-rule network to let the network decide)")
    X = log_terms(beats.rr[keep], terms)
    lr = LogisticRegression(class_weight="balanced", max_iter=2000).fit(X, is_s)
    return PrematureRule(list(terms), [float(w) for w in lr.coef_[0]],
                         float(lr.intercept_[0]), threshold, max_irregularity)


def describe(rule: PrematureRule) -> str:
    """One line for the training log."""
    terms = " ".join(f"{w:+.2f}*log({t})" for t, w in zip(rule.terms, rule.weights,
                                                          strict=True))
    gate = ("" if rule.max_irregularity is None
            else f" and irregularity <= {rule.max_irregularity:g}")
    return (f"premature-beat rule: S when sigmoid({rule.bias:+.2f} {terms}) > "
            f"{rule.threshold:g}{gate}")

