"""Class-imbalance handling for training sets.

``none``          the data as it is;
``class-weight``  inverse-frequency loss weights (n / (k * count_c));
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
    if name not in {"none", "class-weight", "smote", "hybrid"}:
        raise BalanceError(f"balance {spec!r}: expected none, class-weight, smote or hybrid:N")
    if name == "hybrid":
        if not arg.isdigit() or int(arg) <= 0:
            raise BalanceError(f"balance {spec!r}: hybrid needs a positive count, e.g. hybrid:5000")
        return name, int(arg)
    if arg:
        raise BalanceError(f"balance {spec!r}: {name} takes no argument")
    return name, None


def class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """Inverse-frequency weights for the classes present in ``y``."""
    counts = np.bincount(y, minlength=n_classes)
    present = counts > 0
    k = int(present.sum())
    return {int(c): float(len(y) / (k * counts[c])) for c in np.flatnonzero(present)}


def balance(X: np.ndarray, y: np.ndarray, spec: str, n_classes: int,
            seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[int, float] | None]:
    """Return (X, y, class_weight) balanced according to ``spec``."""
    name, n = parse(spec)
    if name == "none":
        return X, y, None
    if name == "class-weight":
        return X, y, class_weights(y, n_classes)
    shape = X.shape[1:]
    flat = X.reshape(len(X), -1)
    counts = np.bincount(y, minlength=n_classes)
    if name == "smote":
        from imblearn.over_sampling import SMOTE

        smallest = int(counts[counts > 0].min())
        if smallest < 2:
            raise BalanceError("SMOTE needs at least 2 samples of every class present")
        sm = SMOTE(k_neighbors=min(5, smallest - 1), random_state=seed)
        Xr, yr = sm.fit_resample(flat, y)
        return Xr.reshape((-1, *shape)).astype(X.dtype), yr.astype(np.int64), None
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
    return flat.reshape((-1, *shape)).astype(X.dtype), np.asarray(y, np.int64), None
