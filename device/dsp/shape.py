"""Comparing beat shapes: the Pearson correlation of windows, one implementation for the
dominant-beat rule (a beat against the patient's template), the similar-beat vote (a beat
against the patient's earlier beats) and the signal-quality index's shape consistency (a
QRS against the other QRS complexes of a block). numpy only."""

from __future__ import annotations

import numpy as np


def unit_rows(windows: np.ndarray, dtype=np.float64) -> np.ndarray:
    """(n, L): each window minus its mean, scaled to unit length (a flat window stays
    zero), so that the dot product of two rows is their Pearson correlation."""
    a = np.asarray(windows, np.float64).reshape(len(windows), -1)
    a = a - a.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(a, axis=1, keepdims=True)
    return (a / np.where(norm > 0, norm, 1.0)).astype(dtype, copy=False)


def correlation(windows: np.ndarray, templates: np.ndarray) -> np.ndarray:
    """(n,) Pearson correlation of each window with its template (0 for a flat one)."""
    return np.einsum("ij,ij->i", unit_rows(windows), unit_rows(templates))
