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
    from vitaledge.train.speech_config import RECIPES, SpeechTrainConfig

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


def test_merge_keeps_a_beat_models_named_inputs():
    """The beat models take several named inputs (window, RR features, template): the
    merged model takes the same names, each shared by every member, and averages."""
    from vitaledge.train import zoo

    arch = zoo.get("tiny-rrt", "beat")
    shapes = {"beat": (180, 1), "rr": (9,), "template": (180, 1)}
    members = []
    for seed in (1, 2, 3):
        keras.utils.set_random_seed(seed)
        members.append(arch.build(shapes, 5))
    merged = merge(members, name="x3")
    assert [t.name.split(":")[0] for t in merged.inputs] == ["beat", "rr", "template"]
    rng = np.random.default_rng(0)
    X = {k: rng.normal(size=(6, *s)).astype(np.float32) for k, s in shapes.items()}
    want = np.mean([m.predict(X, verbose=0) for m in members], axis=0)
    np.testing.assert_allclose(merged.predict(X, verbose=0), want, atol=1e-6)
    assert merged.count_params() == 3 * members[0].count_params()
    other = keras.Model(members[0].inputs[::-1], members[0].outputs)  # inputs in other order
    with pytest.raises(ValueError, match="named inputs"):
        merge([members[0], other])


@pytest.mark.slow
def test_beat_ensemble_through_the_cli_and_the_converter(synth_dir, tmp_path):
    """``train beat --ensemble 2``: two members trained on one split (member 0 is the
    network a run without --ensemble trains), the merged model their mean, each member
    scored beside it; the merged model converts to a verified int8 artifact with every
    input's quantization in its manifest."""
    from click.testing import CliRunner

    from vitaledge.cli import main
    from vitaledge.train.config import BeatTrainConfig

    with pytest.raises(ValueError, match="ensemble"):
        BeatTrainConfig(ensemble=0)
    common = ["train", "beat", "--arch", "tiny-rr", "--data", str(synth_dir), "--split",
              "record", "--test-records", "s003", "--epochs", "2", "--seed", "5"]
    out, single = tmp_path / "ens", tmp_path / "single"
    r = CliRunner().invoke(main, [*common, "--ensemble", "2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, [*common, "--ensemble", "1", "--out", str(single)])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["ensemble"] == 2 and [x["seed"] for x in m["members"]] == [5, 6]
    one = json.loads((single / "metrics.json").read_text())
    assert m["members"][0]["accuracy"] == pytest.approx(one["accuracy"], abs=0.02)
    merged = keras.models.load_model(out / "model.keras")
    members = [keras.models.load_model(out / f"model-member{i}.keras") for i in (0, 1)]
    with np.load(out / "test_predictions.npz") as z:
        probs = z["probs"]
    rng = np.random.default_rng(1)
    X = {t.name.split(":")[0]: rng.normal(size=(4, *t.shape[1:])).astype(np.float32)
         for t in merged.inputs}
    np.testing.assert_allclose(merged.predict(X, verbose=0),
                               np.mean([x.predict(X, verbose=0) for x in members], axis=0),
                               atol=1e-6)
    assert probs.shape[1] == 5 and np.allclose(probs.sum(1), 1, atol=1e-4)
    art = tmp_path / "art"
    r = CliRunner().invoke(main, ["convert", str(out), "--target", "cpu", "--quant", "int8",
                                  "--out", str(art)])
    assert r.exit_code == 0, r.output
    manifest = json.loads((art / "cpu-int8" / "manifest.json").read_text())
    inputs = [manifest["input"], *manifest["extra_inputs"]]
    assert sorted(i["name"] for i in inputs) == ["serving_default_beat:0",
                                                 "serving_default_rr:0"]
    assert all(i["dtype"] == "int8" and i["quantization"]["scale"] > 0 for i in inputs)


@pytest.mark.slow
def test_network_seed_changes_the_networks_start_and_not_the_split(synth_dir, tmp_path):
    """``--network-seed``: the same split (beats, validation patients) with other starting
    weights; the same network seed twice gives the same network, and an ensemble's first
    member is the network a run of one trains with that seed."""
    from click.testing import CliRunner

    from vitaledge.cli import main

    common = ["train", "beat", "--arch", "tiny-rr", "--data", str(synth_dir), "--split",
              "record", "--test-records", "s003", "--epochs", "1", "--seed", "5"]
    runs = {}
    for name, extra in (("a", ["--network-seed", "7", "--ensemble", "2"]),
                        ("b", ["--network-seed", "9", "--ensemble", "1"]),
                        ("a2", ["--network-seed", "7", "--ensemble", "1"])):
        runs[name] = tmp_path / name
        r = CliRunner().invoke(main, [*common, *extra, "--out", str(runs[name])])
        assert r.exit_code == 0, r.output
    m = json.loads((runs["a"] / "metrics.json").read_text())
    assert [x["seed"] for x in m["members"]] == [7, 8]
    with np.load(runs["a"] / "splits.npz") as za, np.load(runs["b"] / "splits.npz") as zb:
        assert sorted(za.files) == sorted(zb.files) and za.files
        for f in za.files:
            np.testing.assert_array_equal(za[f], zb[f])

    def weights(path):
        return keras.models.load_model(path).get_weights()

    a = weights(runs["a"] / "model-member0.keras")
    b, a2 = weights(runs["b"] / "model.keras"), weights(runs["a2"] / "model.keras")
    assert any(not np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert all(np.array_equal(x, y) for x, y in zip(a, a2, strict=True))
