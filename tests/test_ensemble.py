"""Several networks as one model (``train emotion-speech --ensemble N``)."""

import json

import numpy as np
import pytest

from vitaledge.train.backend import keras
from vitaledge.train.ensemble import merge

L = keras.layers


def member(seed, shape=(4, 8, 1), n=3):
    keras.utils.set_random_seed(seed)
    inp = L.Input(shape, name="mel")
    x = L.Conv2D(2, 3, padding="same", name="conv")(inp)
    x = L.BatchNormalization(name="bn")(x)
    x = L.GlobalAveragePooling2D(name="gap")(L.ReLU(name="relu")(x))
    return keras.Model(inp, L.Dense(n, activation="softmax", name="probs")(x))


def test_merge_averages_the_members_and_owns_its_layers():
    members = [member(s) for s in (1, 2, 3)]
    X = np.random.default_rng(0).normal(size=(5, 4, 8, 1)).astype(np.float32)
    merged = merge(members, name="x3")
    want = np.mean([m.predict(X, verbose=0) for m in members], axis=0)
    np.testing.assert_allclose(merged.predict(X, verbose=0), want, atol=1e-6)
    names = [layer.name for layer in merged.layers]
    assert len(names) == len(set(names)) and "m2_conv" in names
    # every member layer is a copy used once (what the converter's int8 rounding needs),
    # and the members are untouched
    assert all(len(layer.inbound_nodes) == 1 for layer in merged.layers)
    assert all(len(m.get_layer("conv").inbound_nodes) == 1 for m in members)
    np.testing.assert_allclose(merge(members[:1]).predict(X, verbose=0),
                               members[0].predict(X, verbose=0), atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        merge([members[0], member(4, n=4)])
    with pytest.raises(ValueError, match="at least one"):
        merge([])


def test_speech_ensemble_through_the_cli(tmp_path):
    """The robust recipe's ``--ensemble 3``: three members trained on one split, kept
    beside the merged model, whose predictions are their mean; each member's own accuracy
    is reported."""
    from click.testing import CliRunner

    from vitaledge.train.cli import train_group
    from vitaledge.train.speech import RECIPES, SpeechTrainConfig

    assert RECIPES["robust"]["ensemble"] == 3 and RECIPES["seed"]["ensemble"] == 1
    assert SpeechTrainConfig().ensemble == 1
    with pytest.raises(ValueError, match="ensemble"):
        SpeechTrainConfig(ensemble=0).check()
    out = tmp_path / "ens"
    args = ["emotion-speech", "--synth-per-class", "6", "--split", "random",
            "--sample-rate", "8000", "--duration", "1.0", "--offset", "0.2",
            "--n-mels", "16", "--image-width", "8", "--recipe", "robust", "--width", "0.25",
            "--epochs", "3", "--batch-size", "8", "--no-cache", "--out", str(out)]  # robust: 3
    res = CliRunner().invoke(train_group, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    assert [x["seed"] for x in m["members"]] == [0, 1, 2]
    data = np.load(out / "data.npz")
    X, y = data["test_mel"], data["test_y"]
    probs = [keras.models.load_model(out / f"model-member{i}.keras").predict(X, verbose=0)
             for i in range(3)]
    assert not np.allclose(probs[0], probs[1])  # different starting points
    for p, mem in zip(probs, m["members"], strict=True):
        assert mem["accuracy"] == pytest.approx(float(np.mean(p.argmax(1) == y)))
    merged = keras.models.load_model(out / "model.keras").predict(X, verbose=0)
    np.testing.assert_allclose(merged, np.mean(probs, axis=0), atol=1e-5)
    assert m["accuracy"] == pytest.approx(float(np.mean(merged.argmax(1) == y)))
    assert json.loads((out / "config.json").read_text())["ensemble"] == 3
