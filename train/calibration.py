"""The calibration inputs a run keeps for int8 conversion (``calib_*`` in ``data.npz``):
a class-balanced pick of training inputs, the same rule for every emotion task."""

from __future__ import annotations

import numpy as np

#: How many inputs a run keeps for the converter's representative dataset.
CALIBRATION_SIZE = 300


def calibration_pick(y: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of up to ``size`` items of ``y``, the classes taken in turn (each
    class's items in a seeded random order) until ``size`` or every item is taken, so the
    classes are as evenly represented as ``y`` allows."""
    rng = np.random.default_rng(seed)
    by_class = [rng.permutation(np.flatnonzero(y == c)).tolist() for c in np.unique(y)]
    chosen: list[int] = []
    while len(chosen) < size and any(by_class):
        for idx in by_class:
            if idx and len(chosen) < size:
                chosen.append(idx.pop())
    return np.sort(np.asarray(chosen, dtype=np.int64))
