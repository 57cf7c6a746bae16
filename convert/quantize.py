"""Keras -> TFLite with the quantization modes the targets need.

Models are exported from a batch-1 concrete function so every tensor shape is static:
recurrent and TimeDistributed models otherwise fail with "TensorListReserve requires
element_shape to be static", and the Edge TPU and TFLite Micro need static shapes anyway.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np

from vitaledge.device.io.beats import BeatSet
from vitaledge.device.model.manifest import QUANTS as QUANT_MODES
from vitaledge.train.backend import keras, tf

from .targets import WEIGHT_ROUNDINGS

#: The int8 input tensor's range: the calibration inputs' ``minmax`` (the converter's own),
#: or ``mse``, the range of least squared error (:func:`mse_range`).
INPUT_RANGES = ("minmax", "mse")


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


def _variables_of(concrete) -> tf.Module:
    """What the converter saves beside ``concrete``: only the variables it captures.

    The converter lowers a concrete function through a SavedModel of the object it is
    given. Given the Keras model, that SavedModel traces and serializes every layer's
    call functions (4.5 s of the 5.3 s a ResNet1D conversion took); given a module
    holding the captured variables it serializes only those (0.8 s). The graph converted
    is the concrete function either way, and the TFLite bytes are the same (fp32 and
    fp16 of the demo's ResNet1D compared, and every artifact is verified after)."""
    holder = tf.Module()
    holder.variables_captured = list(concrete.variables)
    return holder


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


def to_tflite(model: keras.Model, quant: str, representative=None, concrete=None,
              weight_rounding: str = "compensated", input_range: str = "minmax") -> bytes:
    """Convert ``model`` at batch size 1 (or the given batch-1 ``concrete`` function of it).

    ``int8``: full-integer (int8 input and output tensors, int8 kernels only), calibrated on
    ``representative``; ``int8-fc``: matrix products (FULLY_CONNECTED, which includes an
    unrolled LSTM's hoisted input projection) in int8 with float32 everywhere else, for
    recurrent models whose gates and convolutions XNNPACK runs faster in float;
    ``fp16``: float16 weights (for GPU delegates); ``dynamic``: int8 weights with float
    activations; ``none``: float32.

    Full ``int8`` only: ``weight_rounding`` ``compensated`` rounds the Conv/Dense kernels
    first with :func:`.rounding.rounded_weights` (each rounding error spread over the
    kernel's inputs not yet rounded, weighted by the calibration inputs), ``nearest``
    leaves it to the converter; ``input_range`` ``mse`` clips the calibration inputs to
    :func:`mse_range` first, ``minmax`` takes them as they are. Why compensated is the
    default: the speech CNN (cnn_speech, 4 speaker folds, 240 held-out clips each) lost
    agreement with Keras in int8 through nearest weight rounding (a fake-quant simulation
    of fold 1: weights alone 0.875, activations alone 0.983). Artifacts' agreement with
    Keras, nearest -> compensated: 0.875 -> 0.983, 0.950 -> 0.988, 0.950 -> 0.971, 0.979
    -> 0.992; with the speech input range (``mse``, :data:`.emotion.INPUT_RANGE`) as
    well 0.996, 0.988, 0.983, 0.983, accuracy 0.42, 0, 0.42, 0.83 points below Keras
    (was 3.75 below, 0.83, 0.83 and 0.42 above); the final model (120 clips) 0.900 ->
    0.967 -> 0.992, 5.0 -> 0.83 points below. On beat models
    (tiny-rrt, MIT-BIH; 13,096 and 5,845 held-out beats) it changes one or two beats:
    agreement 0.9828 -> 0.9829 and 0.9995 -> 0.9993.
    """
    if quant not in QUANT_MODES:
        raise ValueError(f"quantization {quant!r}: expected one of {QUANT_MODES}")
    if weight_rounding not in WEIGHT_ROUNDINGS:
        raise ValueError(f"weight rounding {weight_rounding!r}: expected one of "
                         f"{WEIGHT_ROUNDINGS}")
    if input_range not in INPUT_RANGES:
        raise ValueError(f"input range {input_range!r}: expected one of {INPUT_RANGES}")
    if quant == "int8" and representative is None:
        raise ValueError("int8 quantization needs a representative dataset")
    if quant == "int8" and input_range == "mse":
        return to_tflite(model, quant, clip_to_mse_range(representative), concrete,
                         weight_rounding, "minmax")
    if quant == "int8" and weight_rounding == "compensated":
        from .rounding import rounded_weights

        with rounded_weights(model, representative):
            return to_tflite(model, quant, representative, concrete, "nearest")
    concrete = concrete or batch1_function(model)
    specs = list(concrete.structured_input_signature[0])

    def converter():
        return tf.lite.TFLiteConverter.from_concrete_functions([concrete],
                                                                _variables_of(concrete))

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
    return quiet_convert(conv)


@contextlib.contextmanager
def tf_interpreter_quiet():
    """Within: no TensorFlow warning that ``tf.lite.Interpreter`` is deprecated. Its own
    calibrator (for a multi-input model) and quantization debugger build one; nothing of
    ours uses that class (the device runs LiteRT), and the warning told a user to migrate
    code they do not have."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf\.lite\.Interpreter is "
                                r"deprecated", category=UserWarning)
        yield


def quiet_convert(conv) -> bytes:
    """``conv.convert()`` within :func:`tf_interpreter_quiet`."""
    with tf_interpreter_quiet():
        return conv.convert()


#: Quantiles of the calibration values :func:`mse_range` may clip at, each end.
CLIP_QUANTILES = (0.0, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3)


def mse_range(a: np.ndarray, n: int = 1_000_000, seed: int = 0) -> tuple[float, float]:
    """The int8 range ``[lo, hi]`` of the values in ``a`` with the least mean squared
    quantization error, rounding and clipping together; each end is a quantile of ``a``
    from :data:`CLIP_QUANTILES` (at most 0.1 % clipped per end; quantile 0 is the
    converter's own min/max), the error measured on up to ``n`` values."""
    a = np.asarray(a, np.float32).ravel()
    x = a if len(a) <= n else np.random.default_rng(seed).choice(a, n, replace=False)
    x = x.astype(np.float64)
    los = np.quantile(a, CLIP_QUANTILES)
    his = np.quantile(a, [1.0 - q for q in CLIP_QUANTILES])
    best = (np.inf, float(a.min()), float(a.max()))
    for lo in los:
        for hi in his:
            step = (hi - lo) / 255
            if step <= 0:
                continue
            err = np.mean((np.clip(np.round((x - lo) / step), 0, 255) * step + lo - x) ** 2)
            if err < best[0]:
                best = (err, float(lo), float(hi))
    return best[1], best[2]


def clip_to_mse_range(representative):
    """The calibration inputs (one array, or a list per input) each clipped to its
    :func:`mse_range`: the converter then takes that range for the int8 input tensor (its
    min/max), and every later tensor is calibrated on inputs as the device will see them
    (the int8 input clamps anything outside)."""
    if isinstance(representative, list | tuple):
        return [np.clip(a, *mse_range(a)).astype(np.float32) for a in representative]
    return np.clip(representative, *mse_range(representative)).astype(np.float32)


def _int8_only(converter, ops: tuple[str, ...], calibration) -> bytes:
    """Quantize only ``ops`` (weights and activations, int8); every other op stays float.

    Uses the converter's selective quantization (the quantization debugger's deny list):
    every op type of the float graph that is not in ``ops`` is deny-listed.
    """
    from vitaledge.device.model.runtime import list_ops

    float_ops = {o["op"] for o in list_ops(quiet_convert(converter()))}
    conv = converter()
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = calibration
    first = next(iter(calibration()))
    options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_ops=sorted(float_ops - set(ops)))
    with tf_interpreter_quiet():
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=conv, debug_dataset=lambda: iter([first]), debug_options=options)
        return bytes(debugger.get_nondebug_quantized_model())
