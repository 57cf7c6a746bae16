"""Class-imbalance handling for training sets.

``none``          the data as it is;
``class-weight``  inverse-frequency loss weights (n / (k * count_c));
``sqrt-weight``   their square roots, capped at 10, and 1 for a class with fewer than 100
                  training beats (DS1 has 8 Q beats: an inverse weight of ~1,000 on them
                  teaches the model to call unfamiliar normal beats abnormal);
``smote``         SMOTE oversampling of every minority class up to the majority count;
``hybrid:N``      random undersampling of classes above N and random oversampling of those
                  below, to exactly N per class (seed 003 uses 10,000).
"""

from __future__ import annotations

import numpy as np


class BalanceError(ValueError):
    """An unknown or unusable balance option."""


def parse(spec: str) -> tuple[str, int | None]:
    """``"hybrid:10000"`` -> ("hybrid", 10000); other names -> (name, None)."""
    name, _, arg = spec.partition(":")
    if name not in {"none", "class-weight", "sqrt-weight", "smote", "hybrid"}:
        raise BalanceError(f"balance {spec!r}: expected none, class-weight, sqrt-weight, smote "
                           "or hybrid:N")
    if name == "hybrid":
        if not arg.isdigit() or int(arg) <= 0:
            raise BalanceError(f"balance {spec!r}: hybrid needs a positive count, e.g. hybrid:5000")
        return name, int(arg)
    if arg:
        raise BalanceError(f"balance {spec!r}: {name} takes no argument")
    return name, None


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


def balance(X: np.ndarray, y: np.ndarray, spec: str, n_classes: int, seed: int = 0,
            rr: np.ndarray | None = None, template: np.ndarray | None = None):
    """Return (X, y, class_weight, rr, template) balanced according to ``spec``.

    A beat's other inputs (RR features, the patient's template) travel with its window:
    SMOTE interpolates all of them between the same two neighbours (found on everything
    together), over- and undersampling pick whole beats."""
    name, n = parse(spec)
    if name == "none":
        return X, y, None, rr, template
    if name == "class-weight":
        return X, y, class_weights(y, n_classes), rr, template
    if name == "sqrt-weight":
        return X, y, sqrt_weights(y, n_classes), rr, template
    parts = [a for a in (X, rr, template) if a is not None]
    widths = [int(np.prod(a.shape[1:])) for a in parts]
    flat = np.concatenate([a.reshape(len(a), -1).astype(np.float32) for a in parts], axis=1)
    flat, y = _resample(flat, y, name, n, n_classes, seed)
    out, at = [], 0
    for a, w in zip(parts, widths, strict=True):
        out.append(flat[:, at:at + w].reshape((-1, *a.shape[1:])).astype(a.dtype))
        at += w
    it = iter(out)
    X2 = next(it)
    rr2 = next(it) if rr is not None else None
    t2 = next(it) if template is not None else None
    return X2, y, None, rr2, t2


def _resample(flat: np.ndarray, y: np.ndarray, name: str, n: int | None, n_classes: int,
              seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``flat`` (n, d) resampled: SMOTE, or hybrid under/oversampling to ``n``."""
    counts = np.bincount(y, minlength=n_classes)
    if name == "smote":
        from imblearn.over_sampling import SMOTE

        smallest = int(counts[counts > 0].min())
        if smallest < 2:
            raise BalanceError("SMOTE needs at least 2 samples of every class present")
        sm = SMOTE(k_neighbors=min(5, smallest - 1), random_state=seed)
        Xr, yr = sm.fit_resample(flat, y)
        return Xr, np.asarray(yr, np.int64)
    from imblearn.over_sampling import RandomOverSampler
    from imblearn.under_sampling import RandomUnderSampler

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
