"""``vitaledge bench stream`` on a speech artifact: audio clips streamed through the
daemon's speech stage on one thread, one row per clip, decisions as the stage makes them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from vitaledge.device.inputs.mel import SpeechSignal, model_input
from vitaledge.firmware_sim.patients.speech import EMOTIONS, synth_clip

pytestmark = pytest.mark.slow

# the small signal of tests/test_speech.py: 8 kHz, a 0.2 s offset + 1 s clip
SMALL = SpeechSignal.fitted(sample_rate=8000.0, duration_s=1.0, offset_s=0.2,
                            min_duration_s=0.5, n_mels=32, fmax=4000.0, image_width=16)


@pytest.fixture(scope="module")
def speech_artifact(tmp_path_factory):
    """A toy speech model (TD conv -> dense) on the small signal, converted to cpu-int8."""
    from vitaledge.convert.pipeline import FAIL, ConvertOptions, convert_run
    from vitaledge.train.backend import keras

    rng = np.random.default_rng(0)
    X = np.stack([model_input(synth_clip(EMOTIONS[i % 7], SMALL.sample_rate, 1.4, rng),
                              SMALL.sample_rate, SMALL) for i in range(28)])
    y = np.arange(28) % 7
    L = keras.layers
    inp = L.Input(SMALL.input_shape, name="mel")
    x = L.TimeDistributed(L.Conv2D(2, 3, strides=4, activation="relu"))(inp)
    x = L.Flatten()(x)
    model = keras.Model(inp, L.Dense(7, activation="softmax")(x))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(X, y, epochs=1, verbose=0)
    run = tmp_path_factory.mktemp("speech-bench") / "run"
    run.mkdir()
    model.save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({
        "task": "emotion-speech", "arch": "toy", "labels": list(EMOTIONS),
        "signal": SMALL.to_dict()}))
    np.savez(run / "data.npz", calib_mel=X, test_mel=X, test_y=y)
    art = run.parent / "art"
    results = convert_run(run, art, ConvertOptions(targets=["cpu"], quant="int8",
                                                   max_drop=100.0, fused_reference=False))
    assert [r.status != FAIL for r in results] == [True], [r.error for r in results]
    return art / results[0].variant


def _decisions(n: int, fs: float) -> int:
    """Emotion events SpeechEmotionStage makes for a stream of ``n`` samples at ``fs``:
    one per clip of offset + duration every half clip, else one tail clip when there is
    at least offset + min_duration of audio."""
    length = int(round((SMALL.offset_s + SMALL.duration_s) * fs))
    hop = int(round((SMALL.offset_s + SMALL.duration_s) / 2 * fs))
    if n >= length:
        return (n - length) // hop + 1
    return int(n >= int(round((SMALL.offset_s + SMALL.min_duration_s) * fs)))


def test_bench_stream_speech_rows_decisions_and_json(speech_artifact, tmp_path):
    from vitaledge.cli import main

    data = tmp_path / "clips"
    rng = np.random.default_rng(1)
    # a RAVDESS-like layout (searched recursively), rates other than the model's (the
    # stage resamples), and one clip too short for a full window (the tail decision)
    clips = {"Actor_01/a": (16000, 3.0), "Actor_01/b": (8000, 2.05),
             "Actor_02/c": (22050, 0.9)}
    for name, (fs, seconds) in clips.items():
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(data / f"{name}.wav", synth_clip("angry", fs, seconds, rng), fs,
                 subtype="PCM_16")
    out = tmp_path / "speech.json"
    r = CliRunner().invoke(main, ["bench", "stream", str(speech_artifact), "--data",
                                  str(data), "--chunk", "0.25", "--json", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["task"] == "emotion-speech" and res["threads"] == 1 and res["chunk_s"] == 0.25
    assert [row["clip"] for row in res["rows"]] == list(clips)
    for row in res["rows"]:
        fs, seconds = clips[row["clip"]]
        n = int(round(fs * seconds))
        assert row["fs"] == fs and row["seconds"] == round(n / fs, 2)
        assert row["decisions"] == _decisions(n, fs) > 0, row
        assert row["wall_s"] > 0 and row["realtime_factor"] > 0
        assert 0 < row["decision_ms_p50"] <= row["decision_ms_p95"] <= row["decision_ms_p99"]
    total = res["total"]
    assert total["decisions"] == sum(row["decisions"] for row in res["rows"])
    assert total["realtime_factor"] > 0 and res["invoke_ms_p50"] > 0
    assert res["features_ms_p50"] > 0
    for name in (*clips, "total", "one invoke"):
        assert name in r.output
    # --clips keeps the first N in path order
    r = CliRunner().invoke(main, ["bench", "stream", str(speech_artifact), "--data",
                                  str(data), "--clips", "1"])
    assert r.exit_code == 0, r.output
    assert "Actor_01/a" in r.output and "Actor_01/b" not in r.output


def test_bench_stream_speech_bad_input_is_one_line(speech_artifact, tmp_path):
    from vitaledge.cli import main

    def run(data, *more):
        return CliRunner().invoke(main, ["bench", "stream", str(speech_artifact), "--data",
                                         str(data), *more])

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no audio here\n")
    r = run(empty)
    assert r.exit_code == 1 and "no audio clips" in r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "clip.wav").write_text("this is not a wav file\n")
    r = run(fake)
    assert r.exit_code == 1 and "clip.wav" in r.output and "cannot read audio" in r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    r = run(fake, "--records", "100")
    assert r.exit_code == 1 and "--clips" in r.output
