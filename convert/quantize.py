"""Keras -> TFLite with the quantization modes the targets need.

Models are exported from a batch-1 concrete function so every tensor shape is static:
recurrent and TimeDistributed models otherwise fail with "TensorListReserve requires
element_shape to be static", and the Edge TPU and TFLite Micro need static shapes anyway.
"""

from __future__ import annotations

import numpy as np

from vitaledge.device.beats import BeatSet
from vitaledge.train.backend import keras, tf

QUANT_MODES = ("none", "int8", "fp16", "dynamic")


def representative_windows(train: BeatSet, n: int = 300, seed: int = 0) -> np.ndarray:
    """A class-stratified sample of training windows for calibration.

    Each class gets a share proportional to its frequency but at least ``n // 20`` windows
    (or all it has), so rare classes' activation ranges are seen too.
    """
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(train.y, return_counts=True)
    floor = max(1, n // 20)
    picks = []
    for c, cnt in zip(classes, counts, strict=True):
        k = min(cnt, max(floor, int(round(n * cnt / len(train.y)))))
        picks.append(rng.choice(np.flatnonzero(train.y == c), k, replace=False))
    idx = np.concatenate(picks)
    rng.shuffle(idx)
    return train.X[idx[:max(n, len(classes) * floor)]].astype(np.float32)


def to_tflite(model: keras.Model, quant: str, representative: np.ndarray | None = None) -> bytes:
    """Convert ``model`` at batch size 1.

    ``int8``: full-integer (int8 input and output tensors, int8 kernels only), calibrated on
    ``representative``; ``fp16``: float16 weights (for GPU delegates); ``dynamic``: int8
    weights with float activations; ``none``: float32.
    """
    if quant not in QUANT_MODES:
        raise ValueError(f"quantization {quant!r}: expected one of {QUANT_MODES}")
    in_shape = [1, *model.input_shape[1:]]
    fn = tf.function(lambda x: model(x, training=False),
                     input_signature=[tf.TensorSpec(in_shape, tf.float32, name="input")])
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], model)
    if quant == "int8":
        if representative is None or len(representative) == 0:
            raise ValueError("int8 quantization needs a representative dataset")
        rep = representative.reshape((-1, *in_shape[1:])).astype(np.float32)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([r[None]] for r in rep)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    elif quant == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif quant == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    return conv.convert()
