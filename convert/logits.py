"""The logits model: a classifier with its final softmax removed.

A microcontroller needs only the class, the argmax, which the softmax does not change; the
softmax costs a kernel in flash and time, and int8 softmax kernels differ between runtimes
(TFLite Micro vs LiteRT) by several 1/256 steps near a tie. The ``micro`` target therefore
converts the model up to the softmax's input; the manifest says ``output_kind: "logits"``
and the device runtime applies a float softmax when probabilities are asked for.
"""

from __future__ import annotations

from vitaledge.train.backend import keras

#: ``manifest.output_kind`` of an artifact whose output tensor is the logits.
LOGITS = "logits"


def logits_model(model: keras.Model) -> keras.Model | None:
    """``model`` ending at the input of its final softmax, sharing its layers and weights;
    None when the last layer is not a softmax this function knows (Dense with softmax
    activation, Softmax, Activation("softmax")), e.g. a quantization-aware wrapper."""
    last = model.layers[-1]
    if len(model.outputs) != 1 or model.outputs[0] is not last.output:
        return None
    act = getattr(last, "activation", None)
    is_softmax = act is keras.activations.softmax or getattr(act, "__name__", "") == "softmax"
    if isinstance(last, keras.layers.Softmax) or (
            type(last) is keras.layers.Activation and is_softmax):
        return keras.Model(model.inputs, last.input, name=f"{model.name}_logits")
    if type(last) is keras.layers.Dense and is_softmax:
        linear = keras.layers.Dense.from_config({**last.get_config(), "activation": "linear",
                                                 "name": f"{last.name}_logits"})
        out = linear(last.input)
        linear.set_weights(last.get_weights())
        return keras.Model(model.inputs, out, name=f"{model.name}_logits")
    return None
