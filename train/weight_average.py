"""Weight averaging over the late epochs of a schedule, with the BatchNorm statistics
recomputed for the averaged weights.

Averaging the weights a network passes through late in training (stochastic weight
averaging: Izmailov et al., UAI 2018) lands nearer the middle of a wide optimum than any
single epoch's weights, and it needs no validation set to pick an epoch. That matters when
the validation set is a few speakers whose accuracy swings by several points from one epoch
to the next: choosing the epoch on it picks noise. The average is one ordinary model, so
conversion and the device are unchanged.

The moving mean and variance of a BatchNormalization layer belong to the weights they were
gathered with, not to their average, so they are gathered again: one pass over the training
batches in training mode with a cumulative average (each batch's statistics weighted
equally), the way SWA's ``update_bn`` does it.
"""

from __future__ import annotations

import numpy as np

from .backend import keras


class WeightAverage(keras.callbacks.Callback):
    """Keeps the running mean of the trainable weights at the end of every epoch from
    ``first`` (1-based) on; at the end of training loads the mean into the model and
    recomputes the BatchNorm statistics over ``batches`` (a ``keras.utils.Sequence`` or list
    of model inputs, or of tuples whose first item is the input: :func:`input_batches`).
    ``epochs`` lists the epochs averaged."""

    def __init__(self, first: int, batches):
        super().__init__()
        self.first, self.batches = int(first), batches
        self.epochs: list[int] = []
        self.mean: list[np.ndarray] | None = None

    @property
    def span(self) -> list[int] | None:
        """[first, last] epoch averaged (None: none yet), as run reports give it."""
        return [self.epochs[0], self.epochs[-1]] if self.epochs else None

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 < self.first:
            return
        now = [w.numpy().astype(np.float64) for w in self.model.trainable_weights]
        n = len(self.epochs)
        self.mean = now if self.mean is None else [m + (w - m) / (n + 1)
                                                   for m, w in zip(self.mean, now, strict=True)]
        self.epochs.append(epoch + 1)

    def on_train_end(self, logs=None):
        if self.mean is None:  # stopped before the first averaged epoch: keep the weights
            return
        for var, value in zip(self.model.trainable_weights, self.mean, strict=True):
            var.assign(value.astype(var.dtype.as_numpy_dtype))
        recompute_batchnorm(self.model, self.batches)


def recompute_batchnorm(model: keras.Model, batches) -> int:
    """Sets every BatchNormalization layer's moving mean and variance to the average of its
    per-batch statistics over ``batches`` (first item of each is the input) under the
    model's current weights; returns the number of batches used (0: no BN layer, nothing
    done). A batch is the model's input, or a tuple whose first item is. The layers'
    momentum is restored afterwards."""
    bns = [layer for layer in _layers(model)
           if isinstance(layer, keras.layers.BatchNormalization)]
    if not bns:
        return 0
    saved = [bn.momentum for bn in bns]
    n = 0
    try:
        for i in range(len(batches)):
            item = batches[i]
            x = item[0] if isinstance(item, tuple) else item  # (inputs, targets...) or inputs
            for bn in bns:  # cumulative mean: the i-th batch (0-based) weighs 1 / (i + 1)
                bn.momentum = i / (i + 1.0)
            model(x, training=True)
            n += 1
    finally:
        for bn, m in zip(bns, saved, strict=True):
            bn.momentum = m
    return n


def input_batches(X, batch_size: int) -> list:
    """``X`` (an array, or a dict or list of arrays: a multi-input model's inputs) cut into
    consecutive batches of ``batch_size`` rows, each in ``X``'s form."""
    if isinstance(X, dict):
        n = len(next(iter(X.values())))
        return [{k: v[i:i + batch_size] for k, v in X.items()} for i in range(0, n, batch_size)]
    if isinstance(X, list | tuple):
        return [[v[i:i + batch_size] for v in X] for i in range(0, len(X[0]), batch_size)]
    return [X[i:i + batch_size] for i in range(0, len(X), batch_size)]


def _layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer
