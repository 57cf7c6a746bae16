"""Class probabilities from a Keras beat model: the one call that fit, evaluate and convert
share (kept apart so that ``fit`` and ``evaluate`` do not import each other)."""

from __future__ import annotations

import numpy as np

from .backend import keras


def predict(model: keras.Model, X, batch_size: int = 512) -> np.ndarray:
    """Class probabilities for windows ``X`` of shape (n, length) or (n, length, 1), or for
    a multi-input model's inputs by name (``BeatSet.inputs()``)."""
    if isinstance(X, dict):
        n = len(next(iter(X.values())))
    else:
        X = X[..., None] if X.ndim == 2 else X
        n = len(X)
    if n == 0:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    return model.predict(X, batch_size=batch_size, verbose=0)
