"""Recurrent models in a form XNNPACK runs fast: LSTM unrolled with its input projection hoisted.

A Keras ``LSTM`` converts to TFLite's fused ``UNIDIRECTIONAL_SEQUENCE_LSTM``, which XNNPACK
does not take; for seed 000's ECG model that op multiplies each of the 48 steps' 4,096-wide
input by the 4,096×512 input kernel one step at a time in the reference kernels (about
9 ms per window here). The same arithmetic can be reordered: the input projection
``x_t · W + b`` does not depend on the recurrence, so it is computed for all steps as one
(T×F)·(F×4U) matrix product (a single FULLY_CONNECTED that XNNPACK runs near the CPU's
peak), and only the small ``h_{t-1} · U`` product and the gate nonlinearities are unrolled
step by step. The function computes exactly what the Keras layer computes (gate order i, f,
c, o; sigmoid gates; tanh cell), so predictions do not change; tests check agreement.

Supported: models that are a chain of single-input layers with LSTM layers that use the
default activations, no masking, ``go_backwards=False`` and ``stateful=False``. Anything
else is refused with the reason, and the caller falls back to the fused op.
"""

from __future__ import annotations

from vitaledge.train.backend import keras, tf


class UnrollError(ValueError):
    """The model cannot be unrolled; the message says which layer and why."""


def _is_chain(model: keras.Model) -> bool:
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        return False
    for layer in model.layers[1:]:
        nodes = [n for n in layer.inbound_nodes if n.inbound_layers]
        if len(nodes) != 1 or isinstance(nodes[0].inbound_layers, list):
            return False
    return True


def _check_lstm(layer) -> None:
    cfg = layer.get_config()
    problems = []
    if cfg.get("activation") != "tanh":
        problems.append(f"activation {cfg.get('activation')}")
    if cfg.get("recurrent_activation") != "sigmoid":
        problems.append(f"recurrent_activation {cfg.get('recurrent_activation')}")
    if cfg.get("go_backwards") or cfg.get("stateful"):
        problems.append("go_backwards/stateful")
    if not cfg.get("use_bias", True):
        problems.append("no bias")
    if problems:
        raise UnrollError(f"layer {layer.name}: cannot unroll ({', '.join(problems)})")


def lstm_layers(model: keras.Model) -> list:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.LSTM)]


def _lstm_hoisted(layer, x):
    """``layer`` applied to ``x`` (batch 1, T, F) with the input projection hoisted."""
    w, u, b = layer.cell.kernel, layer.cell.recurrent_kernel, layer.cell.bias
    units = int(u.shape[0])
    steps, feats = int(x.shape[1]), int(x.shape[2])
    proj = tf.matmul(tf.reshape(x, (steps, feats)), w) + b      # (T, 4U), one GEMM
    h = c = None
    outs = []
    for t in range(steps):
        z = proj[t:t + 1]
        if h is not None:
            z = z + tf.matmul(h, u)
        i, f, g, o = tf.split(z, 4, axis=1)
        i, o, g = tf.sigmoid(i), tf.sigmoid(o), tf.tanh(g)
        c = i * g if c is None else tf.sigmoid(f) * c + i * g
        h = o * tf.tanh(c)
        outs.append(h)
    if layer.return_sequences:
        return tf.reshape(tf.concat(outs, axis=0), (1, steps, units))
    return h


def unrolled_function(model: keras.Model) -> tf.types.experimental.ConcreteFunction:
    """A batch-1 concrete function computing ``model`` with every LSTM unrolled and hoisted.

    Raises :class:`UnrollError` when the model is not a supported chain.
    """
    if not lstm_layers(model):
        raise UnrollError("model has no LSTM layer")
    if not _is_chain(model):
        raise UnrollError("only single-input chains of layers can be unrolled")
    for layer in lstm_layers(model):
        _check_lstm(layer)
        if layer.return_state:
            raise UnrollError(f"layer {layer.name}: return_state is not supported")
    shape = [1, *model.input_shape[1:]]

    def call(x):
        for layer in model.layers[1:]:
            if isinstance(layer, keras.layers.LSTM):
                x = _lstm_hoisted(layer, x)
            else:
                x = layer(x, training=False)
        return x

    spec = tf.TensorSpec(shape, tf.float32, name=model.input_names[0])
    return tf.function(call, input_signature=[spec]).get_concrete_function()
