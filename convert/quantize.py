"""Keras -> TFLite with the quantization modes the targets need.

Models are exported from a batch-1 concrete function so every tensor shape is static:
recurrent and TimeDistributed models otherwise fail with "TensorListReserve requires
element_shape to be static", and the Edge TPU and TFLite Micro need static shapes anyway.
"""

from __future__ import annotations

import numpy as np

from vitaledge.device.io.beats import BeatSet
from vitaledge.train.backend import keras, tf

QUANT_MODES = ("none", "int8", "int8-fc", "fp16", "dynamic")


def representative_windows(train: BeatSet, n: int = 300, seed: int = 0,
                           input_names: list[str] | None = None):
    """A class-stratified sample of training windows for calibration; for a model with
    RR features (``input_names`` ``["beat", "rr"]``) a list of the windows and their
    features, in the model's input order.

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
    idx = idx[:max(n, len(classes) * floor)]
    if input_names and len(input_names) > 1:
        by_name = train.subset(idx).inputs()
        return [np.asarray(by_name[k], np.float32) for k in input_names]
    return train.X[idx].astype(np.float32)


def _signature(model: keras.Model) -> list:
    """Batch-1 input specs named after the model's inputs (static shapes throughout)."""
    return [tf.TensorSpec([1, *inp.shape[1:]], tf.float32, name=name)
            for inp, name in zip(model.inputs, model.input_names, strict=True)]


def batch1_function(model: keras.Model):
    """The model's inference graph at batch size 1, as a concrete function."""
    sig = _signature(model)
    if len(sig) == 1:
        fn = tf.function(lambda x: model(x, training=False), input_signature=sig)
    else:
        fn = tf.function(lambda *xs: model(list(xs), training=False), input_signature=sig)
    return fn.get_concrete_function()


def _calibration(representative, specs: list):
    """A representative-dataset generator from an array (one input) or a list of arrays
    (one per model input, in input order), each reshaped to its input's batch-1 shape.
    Several inputs are yielded as a dict keyed by input name: the converter orders a
    multi-input graph's inputs its own way (alphabetically), not in the Keras order."""
    arrays = [representative] if len(specs) == 1 else list(representative)
    if len(arrays) != len(specs) or any(a is None or len(a) == 0 for a in arrays):
        raise ValueError("int8 quantization needs a representative dataset for every input")
    n = min(len(a) for a in arrays)
    arrays = [np.asarray(a, np.float32).reshape((-1, *spec.shape[1:]))
              for a, spec in zip(arrays, specs, strict=True)]
    if len(arrays) == 1:
        return lambda: ([arrays[0][i:i + 1]] for i in range(n))
    names = [spec.name for spec in specs]
    return lambda: ({k: a[i:i + 1] for k, a in zip(names, arrays, strict=True)}
                    for i in range(n))


def to_tflite(model: keras.Model, quant: str, representative=None, concrete=None) -> bytes:
    """Convert ``model`` at batch size 1 (or the given batch-1 ``concrete`` function of it).

    ``int8``: full-integer (int8 input and output tensors, int8 kernels only), calibrated on
    ``representative``; ``int8-fc``: matrix products (FULLY_CONNECTED, which includes an
    unrolled LSTM's hoisted input projection) in int8 with float32 everywhere else, for
    recurrent models whose gates and convolutions XNNPACK runs faster in float;
    ``fp16``: float16 weights (for GPU delegates); ``dynamic``: int8 weights with float
    activations; ``none``: float32.
    """
    if quant not in QUANT_MODES:
        raise ValueError(f"quantization {quant!r}: expected one of {QUANT_MODES}")
    concrete = concrete or batch1_function(model)
    specs = list(concrete.structured_input_signature[0])

    def converter():
        return tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)

    conv = converter()
    if quant == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = _calibration(representative, specs)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    elif quant == "int8-fc":
        return _int8_only(converter, ("FULLY_CONNECTED",), _calibration(representative,
                                                                         specs))
    elif quant == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif quant == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    return conv.convert()


def _int8_only(converter, ops: tuple[str, ...], calibration) -> bytes:
    """Quantize only ``ops`` (weights and activations, int8); every other op stays float.

    Uses the converter's selective quantization (the quantization debugger's deny list):
    every op type of the float graph that is not in ``ops`` is deny-listed.
    """
    from vitaledge.device.model.runtime import list_ops

    float_ops = {o["op"] for o in list_ops(converter().convert())}
    conv = converter()
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = calibration
    first = next(iter(calibration()))
    options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_ops=sorted(float_ops - set(ops)))
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=conv, debug_dataset=lambda: iter([first]), debug_options=options)
    return bytes(debugger.get_nondebug_quantized_model())
