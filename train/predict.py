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
    problem = input_mismatch(model, X)
    if problem:  # Keras would answer with a dozen lines of its graph's frames
        raise ValueError(f"{problem}: the model and config.json are not of one run")
    if n == 0:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    return model.predict(X, batch_size=batch_size, verbose=0)


def input_mismatch(model: keras.Model, X) -> str | None:
    """How the inputs ``X`` (an array, or arrays by input name) do not fit ``model``'s
    inputs (their number, names or shapes), or None."""
    names = list(model.input_names)
    shapes = [tuple(t.shape[1:]) for t in model.inputs]
    given = X if isinstance(X, dict) else {names[0] if len(names) == 1 else "(one array)": X}
    if set(given) != set(names):
        return (f"the model takes {len(names)} input(s) ({', '.join(names)}), the data "
                f"{len(given)} ({', '.join(given)})")
    for name, shape in zip(names, shapes, strict=True):
        got = tuple(np.shape(given[name])[1:])
        # over the dimensions both name (a channel axis of 1 is Keras's to add or drop)
        if any(s is not None and s != g for s, g in zip(shape, got, strict=False)):
            return f"the model's input {name} is {list(shape)} per beat, the data's {list(got)}"
    return None
