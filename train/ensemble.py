"""Several trained networks as one model: each member's layers rebuilt on one shared input
and their class probabilities averaged.

Networks trained alike from different random starts err on different examples, so the mean
of their probabilities is right more often than any one of them (an ensemble; e.g.
Lakshminarayanan et al., NeurIPS 2017). Merged into a single Keras graph, the ensemble is
one ordinary model: one manifest, one converted artifact, one invoke on the device, and the
converter sees every member's own Conv and Dense layers (each used once, as the
compensated int8 rounding of :mod:`vitaledge.convert.rounding` needs), not nested models.
"""

from __future__ import annotations

from .backend import keras


def merge(members: list[keras.Model], name: str = "ensemble") -> keras.Model:
    """One model whose output is the mean of ``members``' outputs (all with one input of
    the same shape and one output of the same shape). Member ``i``'s layers are copies named
    ``m{i}_<layer>`` holding its weights; the members themselves are left as they were."""
    if not members:
        raise ValueError("an ensemble needs at least one member")
    shapes = {(tuple(m.input_shape), tuple(m.output_shape)) for m in members}
    if len(shapes) != 1 or any(len(m.inputs) != 1 or len(m.outputs) != 1 for m in members):
        raise ValueError(f"ensemble members must share one input and one output shape, "
                         f"got {sorted(shapes)}")
    inp = keras.Input(members[0].input_shape[1:], name=members[0].inputs[0].name.split(":")[0])
    outs = []
    for i, member in enumerate(members):
        def fresh(layer, i=i):
            config = {**layer.get_config(), "name": f"m{i}_{layer.name}"}
            return layer.__class__.from_config(config)

        copy = keras.models.clone_model(member, input_tensors=inp, clone_function=fresh)
        copy.set_weights(member.get_weights())
        outs.append(copy.outputs[0])
    out = outs[0] if len(outs) == 1 else keras.layers.Average(name="probs")(outs)
    return keras.Model(inp, out, name=name)
