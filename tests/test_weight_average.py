"""Weight averaging over the late epochs (``--checkpoint average``): the kept weights are
the mean of the epochs' weights and the BatchNorm statistics are those of the averaged
network on the training batches."""

import json

import numpy as np
import pytest

from vitaledge.train.backend import keras
from vitaledge.train.weight_average import WeightAverage, recompute_batchnorm

L = keras.layers


def small_model():
    inp = L.Input((6, 6, 1))
    x = L.Conv2D(3, 3, padding="same", use_bias=False, name="conv")(inp)
    x = L.BatchNormalization(momentum=0.9, name="bn")(x)
    x = L.ReLU()(x)
    out = L.Dense(2, activation="softmax")(L.GlobalAveragePooling2D()(x))
    return keras.Model(inp, out)


def batch_means(model, batches):
    """Per-channel mean of the conv output of each batch under the model's weights."""
    conv = keras.Model(model.input, model.get_layer("conv").output)
    return np.array([conv(b).numpy().reshape(-1, 3).mean(0) for b in batches])


def test_recompute_batchnorm_is_the_mean_of_the_batch_statistics():
    rng = np.random.default_rng(0)
    model = small_model()
    batches = [rng.normal(2.0, 3.0, (8, 6, 6, 1)).astype(np.float32) for _ in range(5)]
    assert recompute_batchnorm(model, batches) == 5
    bn = model.get_layer("bn")
    assert bn.momentum == 0.9  # restored
    np.testing.assert_allclose(bn.moving_mean.numpy(), batch_means(model, batches).mean(0),
                               rtol=1e-5, atol=1e-5)
    conv = keras.Model(model.input, model.get_layer("conv").output)
    var = np.mean([conv(b).numpy().reshape(-1, 3).var(0, ddof=1) for b in batches], 0)
    np.testing.assert_allclose(bn.moving_variance.numpy(), var, rtol=1e-4)
    dense_only = keras.Sequential([L.Input((3,)), L.Dense(2)])
    assert recompute_batchnorm(dense_only, batches) == 0  # no BN layer: nothing to do


def test_weight_average_keeps_the_mean_of_the_late_epochs_weights():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(48, 6, 6, 1)).astype(np.float32)
    y = (X.mean(axis=(1, 2, 3)) > 0).astype(int)
    keras.utils.set_random_seed(0)
    model = small_model()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    snapshots = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: snapshots.append(
        [w.numpy().copy() for w in model.trainable_weights]))
    batches = [X[i:i + 16] for i in range(0, len(X), 16)]
    avg = WeightAverage(3, batches)
    model.fit(X, y, epochs=5, batch_size=16, verbose=0, callbacks=[record, avg])
    assert avg.epochs == [3, 4, 5]
    for i, w in enumerate(model.trainable_weights):
        mean = np.mean([s[i] for s in snapshots[2:]], axis=0)
        np.testing.assert_allclose(w.numpy(), mean, rtol=1e-5, atol=1e-6)
        assert not np.allclose(w.numpy(), snapshots[-1][i])  # not just the last epoch's
    np.testing.assert_allclose(model.get_layer("bn").moving_mean.numpy(),
                               batch_means(model, batches).mean(0), rtol=1e-5, atol=1e-5)


def test_checkpoint_average_through_the_cli(tmp_path):
    """``--checkpoint average`` runs the whole schedule, averages the second half and keeps
    that model: the saved model.keras scores the accuracy the metrics report."""
    from click.testing import CliRunner

    from vitaledge.train.cli import train_group

    out = tmp_path / "avg"
    args = ["emotion-speech", "--synth-per-class", "4", "--split", "random",
            "--sample-rate", "8000", "--duration", "1.0", "--offset", "0.2",
            "--n-mels", "16", "--image-width", "8", "--width", "0.25", "--epochs", "6",
            "--patience", "1", "--batch-size", "8", "--seed", "1", "--no-cache",
            "--recipe", "robust", "--speed-perturb", "0", "--checkpoint", "average",
            "--ensemble", "1", "--out", str(out)]
    res = CliRunner().invoke(train_group, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["epochs_run"] == 6 and m["averaged_epochs"] == [4, 6]
    assert m["checkpoint"] == "average"
    data = np.load(out / "data.npz")
    probs = keras.models.load_model(out / "model.keras").predict(data["test_mel"], verbose=0)
    assert m["accuracy"] == pytest.approx(float(np.mean(probs.argmax(1) == data["test_y"])))


def test_beat_checkpoint_average_runs_every_epoch(synth_dir, tmp_path):
    """``train beat --checkpoint average``: no early stop (patience 1 is ignored), the
    second half averaged, recorded in the config and metrics; the default stays ``best``.
    One network: each member of an ensemble makes its checkpoint the same way."""
    from click.testing import CliRunner

    from vitaledge.train.cli import train_group
    from vitaledge.train.config import BeatTrainConfig

    assert BeatTrainConfig().checkpoint == "best"
    out = tmp_path / "avg"
    args = ["beat", "--arch", "tiny-rrt", "--data", str(synth_dir), "--records",
            "s000,s001,s002", "--split", "record", "--test-records", "s002", "--epochs", "4",
            "--patience", "1", "--ensemble", "1", "--checkpoint", "average", "--out", str(out)]
    res = CliRunner().invoke(train_group, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["epochs_run"] == 4 and m["averaged_epochs"] == [3, 4]
    assert BeatTrainConfig.load(out / "config.json").checkpoint == "average"
    res = CliRunner().invoke(train_group, args[:-4] + ["--checkpoint", "median", "--out",
                                                       str(out)])
    assert res.exit_code != 0 and "median" in res.output
