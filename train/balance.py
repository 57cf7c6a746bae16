"""Class-imbalance handling for training sets: one entry of ``METHODS`` per ``--balance``
method. A method either weights the loss (``weights``) or resamples the training rows
(``resample``); ``hybrid`` takes a count (``hybrid:N``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


class BalanceError(ValueError):
    """An unknown or unusable balance option."""


def sqrt_weights(y: np.ndarray, n_classes: int, cap: float = 10.0,
                 min_count: int = 100) -> dict[int, float]:
    """Square roots of the inverse-frequency weights, capped; classes too rare to learn
    from (fewer than ``min_count`` beats) keep weight 1."""
    counts = np.bincount(y, minlength=n_classes)
    full = class_weights(y, n_classes)
    return {c: (min(cap, float(np.sqrt(w))) if counts[c] >= min_count else 1.0)
            for c, w in full.items()}


def class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """Inverse-frequency weights for the classes present in ``y``."""
    counts = np.bincount(y, minlength=n_classes)
    present = counts > 0
    k = int(present.sum())
    return {int(c): float(len(y) / (k * counts[c])) for c in np.flatnonzero(present)}


def smote(flat: np.ndarray, y: np.ndarray, n: int | None, n_classes: int,
          seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``flat`` (n, d) with every minority class oversampled by SMOTE up to the
    majority count."""
    from imblearn.over_sampling import SMOTE

    counts = np.bincount(y, minlength=n_classes)
    smallest = int(counts[counts > 0].min())
    if smallest < 2:
        raise BalanceError("SMOTE needs at least 2 samples of every class present")
    sm = SMOTE(k_neighbors=min(5, smallest - 1), random_state=seed)
    Xr, yr = sm.fit_resample(flat, y)
    return Xr, np.asarray(yr, np.int64)


def hybrid(flat: np.ndarray, y: np.ndarray, n: int | None, n_classes: int,
           seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``flat`` with classes above ``n`` randomly undersampled and those below
    randomly oversampled, to exactly ``n`` per class."""
    from imblearn.over_sampling import RandomOverSampler
    from imblearn.under_sampling import RandomUnderSampler

    counts = np.bincount(y, minlength=n_classes)
    under = {int(c): n for c in np.flatnonzero(counts > n)}
    if under:
        flat, y = RandomUnderSampler(sampling_strategy=under, random_state=seed).fit_resample(
            flat, y)
    counts = np.bincount(y, minlength=n_classes)
    over = {int(c): n for c in np.flatnonzero((counts > 0) & (counts < n))}
    if over:
        flat, y = RandomOverSampler(sampling_strategy=over, random_state=seed).fit_resample(
            flat, y)
    return flat, np.asarray(y, np.int64)


Weights = Callable[[np.ndarray, int], dict[int, float]]
Resample = Callable[[np.ndarray, np.ndarray, "int | None", int, int],
                    tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Method:
    """One ``--balance`` method: loss weights or a resampling of the rows (not both), and
    whether it takes a count (``name:N``)."""

    help: str
    weights: Weights | None = None
    resample: Resample | None = None
    takes_count: bool = False


METHODS: dict[str, Method] = {
    "none": Method("the data as it is"),
    "class-weight": Method("inverse-frequency loss weights, n / (k * count_c)",
                           weights=class_weights),
    # A class with fewer than 100 beats keeps weight 1: DS1 has 8 Q beats, and an inverse
    # weight of ~1,000 on them teaches the model to call unfamiliar normal beats abnormal.
    "sqrt-weight": Method("the square roots of class-weight's, capped at 10; 1 for a class "
                          "with fewer than 100 training beats", weights=sqrt_weights),
    "smote": Method("SMOTE oversampling of every minority class up to the majority count",
                    resample=smote),
    "hybrid": Method("random undersampling of classes above N and random oversampling of "
                     "those below, to exactly N per class; seed 003 uses 10,000",
                     resample=hybrid, takes_count=True),
}


def spelled(name: str) -> str:
    """A method as ``--balance`` spells it: ``hybrid:N`` for one that takes a count."""
    return f"{name}:N" if METHODS[name].takes_count else name


def choices() -> str:
    """``none | class-weight | ... | hybrid:N``."""
    return " | ".join(spelled(k) for k in METHODS)


def described() -> str:
    """Each method and what it does, for ``--balance``'s help."""
    return "; ".join(f"{spelled(k)} ({m.help})" for k, m in METHODS.items())


def parse(spec: str) -> tuple[str, int | None]:
    """``"hybrid:10000"`` -> ("hybrid", 10000); other names -> (name, None)."""
    name, _, arg = spec.partition(":")
    method = METHODS.get(name)
    if method is None:
        raise BalanceError(f"balance {spec!r}: expected {choices()}")
    if method.takes_count:
        if not arg.isdigit() or int(arg) <= 0:
            raise BalanceError(f"balance {spec!r}: {name} needs a positive count, "
                               f"e.g. {name}:5000")
        return name, int(arg)
    if arg:
        raise BalanceError(f"balance {spec!r}: {name} takes no argument")
    return name, None


def balance(X: np.ndarray, y: np.ndarray, spec: str, n_classes: int, seed: int = 0,
            rr: np.ndarray | None = None, template: np.ndarray | None = None):
    """Return (X, y, class_weight, rr, template) balanced according to ``spec``.

    A beat's other inputs (RR features, the patient's template) travel with its window:
    SMOTE interpolates all of them between the same two neighbours (found on everything
    together), over- and undersampling pick whole beats."""
    name, n = parse(spec)
    method = METHODS[name]
    if method.resample is None:
        weights = method.weights(y, n_classes) if method.weights is not None else None
        return X, y, weights, rr, template
    parts = [a for a in (X, rr, template) if a is not None]
    widths = [int(np.prod(a.shape[1:])) for a in parts]
    flat = np.concatenate([a.reshape(len(a), -1).astype(np.float32) for a in parts], axis=1)
    flat, y = method.resample(flat, y, n, n_classes, seed)
    out, at = [], 0
    for a, w in zip(parts, widths, strict=True):
        out.append(flat[:, at:at + w].reshape((-1, *a.shape[1:])).astype(a.dtype))
        at += w
    it = iter(out)
    X2 = next(it)
    rr2 = next(it) if rr is not None else None
    t2 = next(it) if template is not None else None
    return X2, y, None, rr2, t2
