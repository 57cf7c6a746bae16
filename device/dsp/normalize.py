"""Per-window amplitude normalization (one implementation for training and device)."""

from __future__ import annotations

import numpy as np

METHODS = ("minmax", "zscore", "none")


def normalize(x: np.ndarray, method: str) -> np.ndarray:
    """Normalize a 1-D window: ``minmax`` to [0, 1], ``zscore`` to mean 0 / std 1.

    A flat window (no range or no variance) maps to zeros instead of dividing by zero.
    """
    x = np.asarray(x, dtype=np.float64)
    if method == "none":
        return x.copy()
    if method == "minmax":
        lo, hi = float(x.min()), float(x.max())
        return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    if method == "zscore":
        sd = float(x.std())
        return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)
    raise ValueError(f"unknown normalization {method!r}; expected one of {METHODS}")
