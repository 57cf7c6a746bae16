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


def _inputs(model: keras.Model) -> list[tuple[str, tuple]]:
    """(name, shape without the batch axis) of each of ``model``'s inputs, in order."""
    return [(t.name.split(":")[0], tuple(t.shape[1:])) for t in model.inputs]


def merge(members: list[keras.Model], name: str = "ensemble") -> keras.Model:
    """One model whose output is the mean of ``members``' outputs. The members must have
    the same named inputs (one, or several as the beat models' window, RR features and
    template) and one output, all of the same shapes; the merged model has those inputs,
    each shared by every member. Member ``i``'s layers are copies named ``m{i}_<layer>``
    holding its weights; the members themselves are left as they were."""
    if not members:
        raise ValueError("an ensemble needs at least one member")
    signatures = {(tuple(_inputs(m)), tuple(m.output_shape)) for m in members}
    if len(signatures) != 1 or any(len(m.outputs) != 1 for m in members):
        raise ValueError(f"ensemble members must share their named inputs and one output "
                         f"of one shape, got {sorted(map(str, signatures))}")
    inputs = [keras.Input(shape, name=n) for n, shape in _inputs(members[0])]
    outs = []
    for i, member in enumerate(members):
        def fresh(layer, i=i):
            config = {**layer.get_config(), "name": f"m{i}_{layer.name}"}
            return layer.__class__.from_config(config)

        copy = keras.models.clone_model(
            member, input_tensors=inputs[0] if len(inputs) == 1 else inputs,
            clone_function=fresh)
        copy.set_weights(member.get_weights())
        outs.append(copy.outputs[0])
    out = outs[0] if len(outs) == 1 else keras.layers.Average(name="probs")(outs)
    return keras.Model(inputs[0] if len(inputs) == 1 else inputs, out, name=name)
