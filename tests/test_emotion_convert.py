"""Emotion runs -> TFLite: the unrolled LSTM computes what Keras computes, and every
variant of a recurrent model converts, verifies and loads through its manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vitaledge.device.inputs.emotion_ecg import EcgEmotionSignal, default_signal
from vitaledge.device.model.manifest import load_manifest
from vitaledge.device.model.runtime import Model, list_ops

pytestmark = pytest.mark.slow

LABELS = ["LVLA", "LVHA", "HVLA", "HVHA"]


def _small_cnnlstm(keras, return_sequences=False):
    """The seed-000 layer chain at toy size: TD Conv1D -> Reshape -> LSTM -> Dense."""
    L = keras.layers
    inp = L.Input((6, 16, 1), name="ecg")
    x = L.TimeDistributed(L.Conv1D(4, 5, activation="relu", padding="same"))(inp)
    x = L.Reshape((6, 64))(x)
    x = L.LSTM(8, return_sequences=return_sequences, name="lstm")(x)
    if return_sequences:
        x = L.Flatten()(x)
    x = L.Dense(4)(x)
    return keras.Model(inp, L.Activation("softmax")(x))


def _data(n, rng):
    """Class k: a 2 Hz sine of amplitude k + 1 in noise, learnable in a few epochs."""
    y = rng.integers(0, 4, n)
    t = np.arange(16) / 16
    X = ((1 + y)[:, None, None] * np.sin(2 * np.pi * 2 * t)[None, None, :]
         + 0.3 * rng.standard_normal((n, 6, 16)))
    return X[..., None].astype(np.float32), y


@pytest.fixture(scope="module")
def emotion_run(tmp_path_factory):
    from vitaledge.train.backend import keras

    rng = np.random.default_rng(3)
    model = _small_cnnlstm(keras)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    X, y = _data(240, rng)
    model.fit(X[:160], y[:160], epochs=15, verbose=0)
    run = tmp_path_factory.mktemp("emotion-run")
    model.save(run / "model.keras")
    # the device's ECG emotion signal spec at toy size: 6 one-second windows at 16 Hz
    signal = {**default_signal(), "fs": 16.0, "n_windows": 6}
    (run / "config.json").write_text(json.dumps({
        "task": "emotion-ecg", "arch": "toy", "labels": LABELS, "signal": signal}))
    np.savez(run / "data.npz", calib_ecg=X[:100], test_ecg=X[160:], test_y=y[160:])
    return run, model, X[160:], y[160:]


@pytest.mark.parametrize("return_sequences", [False, True])
def test_unrolled_lstm_matches_keras(return_sequences):
    from vitaledge.convert.unroll import unrolled_function
    from vitaledge.train.backend import keras

    model = _small_cnnlstm(keras, return_sequences)
    x, _ = _data(5, np.random.default_rng(0))
    fn = unrolled_function(model)
    for i in range(len(x)):
        got = fn(x[i:i + 1]).numpy()
        np.testing.assert_allclose(got, model(x[i:i + 1]).numpy(), rtol=1e-5, atol=1e-6)


def test_unroll_refuses_what_it_cannot_do():
    from vitaledge.convert.unroll import UnrollError, unrolled_function
    from vitaledge.train.backend import keras

    L = keras.layers
    inp = L.Input((5, 3))
    x = L.LSTM(4, activation="relu")(inp)
    with pytest.raises(UnrollError, match="activation relu"):
        unrolled_function(keras.Model(inp, L.Dense(2)(x)))
    a, b = L.Input((5, 3)), L.Input((5, 3))
    x = L.LSTM(4)(L.Concatenate()([a, b]))
    with pytest.raises(UnrollError, match="single-input chains"):
        unrolled_function(keras.Model([a, b], L.Dense(2)(x)))


def test_emotion_run_converts_to_every_cpu_variant(emotion_run, tmp_path):
    from vitaledge.convert.pipeline import OK, ConvertOptions, convert_run

    run, model, X, y = emotion_run
    results = convert_run(run, tmp_path, ConvertOptions(targets=["cpu", "edgetpu"],
                                                        max_drop=5.0))
    by_name = {r.variant: r for r in results}
    assert sorted(by_name) == ["cpu-fp16", "cpu-fp32", "cpu-fp32-fused", "cpu-int8",
                               "cpu-int8-fc"]
    assert all(r.status == OK for r in results), [
        (r.variant, r.status, r.metrics.get("accuracy_drop_points"), r.error) for r in results]
    keras_pred = model.predict(X, verbose=0).argmax(1)
    assert np.mean(keras_pred == y) > 0.6      # the toy model did learn something
    # The unrolled float graph is the Keras arithmetic reordered: same predictions.
    for name in ("cpu-fp32", "cpu-fp32-fused"):
        assert by_name[name].metrics["agreement_with_keras"] == 1.0, name
    # fp16 weights round: on a near-tie of the (unseeded) toy model one window's argmax may
    # flip, not more (of the 80 held-out windows, 0.99 would still demand all)
    fp16 = by_name["cpu-fp16"].metrics
    assert fp16["n"] > 0 and round((1 - fp16["agreement_with_keras"]) * fp16["n"]) <= 1, fp16
    assert by_name["cpu-int8-fc"].metrics["agreement_with_keras"] >= 0.95
    # the MCU side is the beat model's: refused in one line (both gave AttributeError
    # tracebacks: no signal.window, or a speech window that is a string)
    from conftest import error_line, invoke

    for cmd in (["firmware", "mcu", tmp_path / "cpu-int8", "--data", tmp_path / "heldout.npz"],
                ["firmware", "export", tmp_path / "cpu-int8", "--out", tmp_path / "fw"]):
        line = error_line(invoke(cmd))
        assert "the model's task is 'emotion-ecg'" in line and "beat models only" in line, line
    assert not (tmp_path / "fw").exists()

    fused = {o["op"] for o in list_ops((tmp_path / "cpu-fp32-fused/model.tflite").read_bytes())}
    unrolled = {o["op"] for o in list_ops((tmp_path / "cpu-fp32/model.tflite").read_bytes())}
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in fused
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" not in unrolled and "FULLY_CONNECTED" in unrolled

    # The fused LSTM kernel keeps its state between calls; the runtime resets it, so the
    # same window gives the same answer whatever came before it.
    fused_model = Model(tmp_path / "cpu-fp32-fused")
    assert fused_model.stateful and not Model(tmp_path / "cpu-fp32").stateful
    first = fused_model.predict(X[:1])
    fused_model.predict(X[1:20])
    np.testing.assert_array_equal(fused_model.predict(X[:1]), first)

    m, _ = load_manifest(tmp_path / "cpu-int8-fc")
    assert m.task == "emotion-ecg" and m.labels == LABELS and m.quantization == "int8-fc"
    assert isinstance(m.signal, EcgEmotionSignal) and m.signal.n_windows == 6
    assert m.extra["lstm"].startswith("unrolled") and m.input.dtype == "float32"
    # bench takes the held-out inputs convert saved beside the artifacts
    from vitaledge.device.bench.latency import run_bench

    res = run_bench([tmp_path / "cpu-int8-fc", tmp_path / "cpu-fp32-fused"], [1], ["xnnpack"],
                    [1, 4], warmup=1, runs=3)
    assert [r.status for r in res.rows] == [OK] * 4, [r.error for r in res.rows]
    for r in res.rows:
        assert r.accuracy == pytest.approx(by_name[Path(r.artifact).name].metrics["accuracy"])
    int8 = Model(tmp_path / "cpu-int8")
    assert int8.manifest.input.dtype == "int8"
    probs = int8.predict(X)
    assert probs.shape == (len(X), 4) and np.allclose(probs.sum(1), 1.0, atol=0.05)


def test_emotion_run_without_data_is_refused(emotion_run, tmp_path):
    from vitaledge.convert.emotion import EmotionRunError, load_run

    run, *_ = emotion_run
    broken = tmp_path / "run"
    broken.mkdir()
    (broken / "config.json").write_text((run / "config.json").read_text())
    with pytest.raises(EmotionRunError, match="data.npz"):
        load_run(broken)
    (broken / "config.json").write_text(json.dumps({"task": "emotion-ecg"}))
    with pytest.raises(EmotionRunError, match="missing 'arch'"):
        load_run(broken)


@pytest.mark.parametrize("damage, words", [
    (lambda p: p.write_bytes(b""), "empty file (0 bytes), not a valid .npz"),
    (lambda p: p.write_bytes(p.read_bytes()[:500]), "not a valid .npz (truncated or corrupt"),
    (lambda p: np.savez(p, **{**dict(np.load(p)), "calib_ecg": np.full((2, 96, 1), np.nan)}),
     "calib_ecg holds non-finite values"),
])
def test_a_damaged_data_npz_is_named_by_convert_and_evaluate(emotion_run, tmp_path, damage,
                                                            words):
    """A truncated data.npz was a BadZipFile traceback in evaluate, an empty one "Aborted!"
    in convert, and a NaN in the calibration inputs an int8 model agreeing 0 % with Keras,
    converted and passed, exit 0. Each is now one line naming the file, from both."""
    import shutil

    from conftest import error_line, invoke

    run, *_ = emotion_run
    broken = tmp_path / "run"
    shutil.copytree(run, broken)
    damage(broken / "data.npz")
    out = tmp_path / "art"
    res = invoke(["convert", broken, "--target", "cpu", "--representative", "5",
                  "--out", out])
    assert res.exit_code == 1 and f"{broken / 'data.npz'}: {words}" in error_line(res), \
        res.output
    assert not out.exists() or not any(out.iterdir())
    res = invoke(["evaluate", broken])
    if "calib" in words:  # evaluate reads the test inputs only, and scores them
        assert res.exit_code == 0 and "accuracy" in res.output, res.output
    else:
        assert res.exit_code == 1 and f"{broken / 'data.npz'}: {words}" in error_line(res), \
            res.output


def test_pruning_and_qat_are_refused_for_emotion_runs(emotion_run, tmp_path):
    """--qat was ignored: the plain int8 artifact was written, named cpu-int8."""
    from vitaledge.convert.emotion import EmotionRunError
    from vitaledge.convert.pipeline import ConvertOptions, convert_run

    run, *_ = emotion_run
    for opts, words in ((ConvertOptions(qat=True), "drop --qat"),
                        (ConvertOptions(sparsities=[0.5]), "drop --prune")):
        with pytest.raises(EmotionRunError, match=words):
            convert_run(run, tmp_path / "out", opts)
        assert not (tmp_path / "out").exists()
