"""Comparing beat shapes: the Pearson correlation of windows, one implementation for the
dominant-beat rule (a beat against the patient's template), the similar-beat vote (a beat
against the patient's earlier beats) and the signal-quality index's shape consistency (a
QRS against the other QRS complexes of a block); and the rows of each patient in time
order, which the first two walk in batch. numpy only."""

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


def patient_rows(groups: np.ndarray, times: np.ndarray | None = None):
    """Row indices of each patient of ``groups`` (a patient id per row), in ``times``
    order (row order without): what the decisions over a patient's earlier beats (the
    similar-beat vote, the dominant-beat rule's template) run over in batch."""
    groups = np.asarray(groups)
    keys = np.arange(len(groups)) if times is None else np.asarray(times)
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        yield rows[np.argsort(keys[rows], kind="stable")]
