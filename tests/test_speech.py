"""Speech-emotion training side: corpus loaders, splits, augmentation, the seed-004
architecture, and a run directory written by ``vitaledge train emotion-speech``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from conftest import unavailable

from vitaledge.device.inputs.mel import SpeechSignal, model_input
from vitaledge.firmware_sim.patients.speech import EMOTIONS as SYNTH_EMOTIONS
from vitaledge.firmware_sim.patients.speech import synth_clip, write_ravdess_like
from vitaledge.train.speech_data import (
    EMOTIONS,
    add_noise,
    clip_inputs,
    find_clips,
    parse_ravdess,
    parse_savee,
    parse_tess,
    split_clips,
    synthetic_clips,
)

SMALL = SpeechSignal.fitted(sample_rate=8000.0, duration_s=1.0, offset_s=0.2,
                            min_duration_s=0.5, n_mels=32, fmax=4000.0, image_width=16)


def test_file_name_schemes(tmp_path):
    P = tmp_path
    assert parse_ravdess(P / "03-01-05-01-02-01-12.wav") == ("angry", "12")
    assert parse_ravdess(P / "03-01-02-02-01-01-07.wav") == ("calm", "07")
    assert parse_ravdess(P / "03-01-09-01-01-01-01.wav") is None
    assert parse_tess(P / "OAF_back_angry.wav") == ("angry", "OAF")
    assert parse_tess(P / "YAF_dog_ps.wav") == ("surprise", "YAF")
    assert parse_savee(P / "DC_sa01.wav") == ("sad", "DC")
    assert parse_savee(P / "JE" / "su15.wav") == ("surprise", "JE")
    assert parse_savee(P / "KL_a03.wav") == ("angry", "KL")
    assert set(SYNTH_EMOTIONS) == set(EMOTIONS)


def _touch_wavs(root, names):
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(p), np.zeros(800), 8000)


def test_find_clips_merges_schemes_and_maps_or_drops_calm(tmp_path):
    _touch_wavs(tmp_path, ["Actor_01/03-01-02-01-01-01-01.wav",
                           "Actor_01/03-01-01-01-01-01-01.wav",
                           "TESS/OAF_back_ps.wav", "SAVEE/DC/n01.wav"])
    clips = find_clips(tmp_path)
    assert [(c.corpus, c.label, c.speaker) for c in clips] == [
        ("ravdess", "neutral", "01"), ("ravdess", "neutral", "01"),  # calm -> neutral
        ("savee", "neutral", "DC"), ("tess", "surprise", "OAF")]
    dropped = find_clips(tmp_path, calm="drop")
    assert len(dropped) == 3 and all("-02-" not in c.path for c in dropped)
    _touch_wavs(tmp_path, ["stray/recording.wav"])
    with pytest.raises(ValueError, match="1 wav file\\(s\\) match no.*recording.wav"):
        find_clips(tmp_path)


def test_a_folder_named_like_a_clip_is_named(tmp_path):
    """A directory called ``….wav`` was read as a clip: an IsADirectoryError traceback from
    the log-mel cache in train and evaluate."""
    _touch_wavs(tmp_path, ["Actor_01/03-01-02-01-01-01-01.wav"])
    (tmp_path / "Actor_01" / "03-01-01-01-01-01-01.wav").mkdir()
    with pytest.raises(ValueError, match=r"03-01-01-01-01-01-01.wav: a directory .*not a "
                                         r"\.wav file"):
        find_clips(tmp_path)


def test_real_ravdess_clips(data_dir):
    d = data_dir / "ravdess"
    if not d.is_dir():
        unavailable(f"RAVDESS not found in {d}")
    clips = find_clips(d)
    labels = [c.label for c in clips]
    assert len(clips) == 240 and labels.count("neutral") == 48  # 16 neutral + 32 calm
    assert {labels.count(e) for e in EMOTIONS if e != "neutral"} == {32}
    assert sorted({c.speaker for c in clips}) == ["01", "02", "03", "04"]
    assert len(find_clips(d, calm="drop")) == 208


def test_splits_are_disjoint_stratified_and_speaker_independent():
    rng = np.random.default_rng(0)
    from vitaledge.train.speech_data import Clip

    clips = [Clip(EMOTIONS[i % 7], f"{s:02d}", "ravdess", path=f"{s}-{i}.wav")
             for s in range(1, 5) for i in range(35)]
    rng.shuffle(clips)
    parts = split_clips(clips, "actor", ["4"], val_fraction=0.2, seed=1)
    assert {clips[i].speaker for i in parts["test"]} == {"04"}
    assert "04" not in {clips[i].speaker for i in np.r_[parts["fit"], parts["val"]]}
    assert sorted(np.concatenate(list(parts.values()))) == list(range(len(clips)))
    assert len(parts["val"]) == 7 * 3  # 20 % of each class's 15 training clips
    rnd = split_clips(clips, "random", test_fraction=0.2, val_fraction=0.1, seed=2)
    test_labels = [clips[i].label for i in rnd["test"]]
    assert {test_labels.count(e) for e in EMOTIONS} == {4}  # 20 % of 20 per class
    assert len(set(rnd["fit"]) | set(rnd["val"]) | set(rnd["test"])) == len(clips)
    with pytest.raises(ValueError, match="test actor '09' not in the data"):
        split_clips(clips, "actor", ["09"])


def test_noise_injection_hits_the_snr():
    rng = np.random.default_rng(1)
    x = synth_clip("happy", 8000, 1.5, rng)
    for snr in (15.0, 30.0):
        noisy = add_noise(x, snr, rng)
        measured = 10 * np.log10(np.mean(x ** 2) / np.mean((noisy - x) ** 2))
        assert measured == pytest.approx(snr, abs=0.3)
    clips = synthetic_clips(1, 1, SMALL, seed=0)[:2]
    X, y, src = clip_inputs(clips, SMALL, noisy_copies=2, seed=0)
    assert X.shape == (6, *SMALL.input_shape) and list(src) == [0, 0, 0, 1, 1, 1]
    np.testing.assert_array_equal(X[0], model_input(clips[0].wave, clips[0].fs, SMALL))
    assert not np.allclose(X[1], X[0]) and not np.allclose(X[1], X[2])


def _estimate_f0_and_rate(x: np.ndarray, fs: float) -> tuple[float, float]:
    """Fundamental (strongest spectral peak below 400 Hz, over the voiced part) and
    syllables per second (rising crossings of half the smoothed envelope's maximum)."""
    env = np.convolve(np.abs(x), np.ones(int(0.02 * fs)) / int(0.02 * fs), "same")
    voiced = env > 0.3 * env.max()
    spec = np.abs(np.fft.rfft(x * voiced))
    f = np.fft.rfftfreq(len(x), 1 / fs)
    band = (f > 60) & (f < 400)
    above = env > 0.5 * env.max()
    onsets = np.count_nonzero(above[1:] & ~above[:-1])
    return float(f[band][np.argmax(spec[band])]), onsets / (len(x) / fs)


def test_synthetic_speech_pitch_and_tempo_follow_the_class():
    rng = np.random.default_rng(2)
    est = {e: np.mean([_estimate_f0_and_rate(synth_clip(e, 8000, 4.0, rng), 8000)
                       for _ in range(4)], axis=0) for e in ("sad", "neutral", "fear")}
    f0 = {e: v[0] for e, v in est.items()}
    rate = {e: v[1] for e, v in est.items()}
    assert 100 < f0["sad"] < 140 < f0["neutral"] < 180 < 250 < f0["fear"] < 310
    assert rate["sad"] < rate["neutral"] < rate["fear"]


def test_seed_architecture_layers():
    from vitaledge.train import zoo
    from vitaledge.train.backend import keras

    arch = zoo.get("tdcnnlstm_speech", "emotion-speech")
    m = arch.build(SpeechSignal().input_shape, 7)
    assert m.input.name.split(":")[0] == "mel" and m.input_shape == (None, 6, 64, 128, 1)
    inner = [type(layer.layer).__name__ if isinstance(layer, keras.layers.TimeDistributed)
             else type(layer).__name__ for layer in m.layers[1:]]
    assert inner == ["Conv2D", "BatchNormalization", "Activation", "MaxPooling2D",
                     "Dropout"] * 4 + ["Flatten", "LSTM", "Dense"]
    convs = [layer.layer for layer in m.layers if isinstance(layer, keras.layers.TimeDistributed)
             and isinstance(layer.layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [64, 64, 128, 128]
    assert {c.kernel_size for c in convs} == {(3, 3)}
    acts = [layer.layer.activation.__name__ for layer in m.layers
            if isinstance(layer, keras.layers.TimeDistributed)
            and isinstance(layer.layer, keras.layers.Activation)]
    assert acts == ["elu"] * 4
    lstm, dense = m.layers[-2], m.layers[-1]
    assert lstm.units == 256 and dense.units == 7
    assert dense.activation.__name__ == "softmax"
    assert m.get_layer("flatten").output_shape == (None, 6, 128)
    assert m.count_params() == 656_583


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory):
    """A small-signal, quarter-width model trained through the CLI on synthetic speech."""
    from vitaledge.train.cli import train_group

    out = tmp_path_factory.mktemp("speech") / "run"
    args = ["emotion-speech", "--synth-per-class", "12", "--split", "random",
            "--sample-rate", "8000",
            "--duration", "1.0", "--offset", "0.2", "--n-mels", "32", "--image-width", "16",
            "--width", "0.25", "--epochs", "12", "--patience", "12", "--batch-size", "16",
            "--momentum", "0.9", "--seed", "1", "--no-cache", "--recipe", "seed",
            "--out", str(out)]
    res = CliRunner().invoke(train_group, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return out, res.output


def test_training_learns_synthetic_speech(synth_run):
    run, output = synth_run
    m = json.loads((run / "metrics.json").read_text())
    assert m["n_test"] == 14 and m["labels"] == list(EMOTIONS)
    assert m["accuracy"] >= 0.5  # chance is 1/7
    assert m["macro_f1"] == m["macro"]["f1"] > 0.4
    assert "random stratified" in m["split"]["description"]
    assert "accuracy" in output and "macro avg" in output


def test_run_directory_contract(synth_run):
    from vitaledge.train.backend import keras
    from vitaledge.train.speech_config import SpeechTrainConfig

    run, _ = synth_run
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["task"] == "emotion-speech" and cfg["arch"] == "tdcnnlstm_speech"
    assert cfg["labels"] == list(EMOTIONS) and cfg["seed"] == 1
    signal = SpeechSignal.from_dict(cfg["signal"])
    assert signal.input_shape == (6, 32, 16, 1) and signal.sample_rate == 8000
    assert SpeechTrainConfig.load(run / "config.json").signal == signal
    data = np.load(run / "data.npz")
    assert data["calib_mel"].dtype == np.float32 and data["test_mel"].dtype == np.float32
    assert data["test_y"].dtype == np.int64 and len(data["test_y"]) == 14
    assert data["calib_mel"].shape[1:] == signal.input_shape
    assert np.bincount(np.load(run / "data.npz")["test_y"], minlength=7).min() == 2
    model = keras.models.load_model(str(run / "model.keras"))
    assert model.input_names == ["mel"]
    probs = model.predict(data["test_mel"], verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    m = json.loads((run / "metrics.json").read_text())
    assert np.mean(probs.argmax(1) == data["test_y"]) == pytest.approx(m["accuracy"])
    # the stored held-out inputs are bit for bit what the device computes from the clips
    clips = synthetic_clips(12, 4, signal, seed=1)
    test_idx = split_clips(clips, "random", None, 0.2, 0.15, seed=1)["test"]
    for k in (0, 13):
        clip = clips[test_idx[k]]
        np.testing.assert_array_equal(model_input(clip.wave, clip.fs, cfg["signal"]),
                                      data["test_mel"][k])
        assert EMOTIONS.index(clip.label) == data["test_y"][k]
    for f in ("history.csv", "training_history.png", "confusion_matrix.png"):
        assert (run / f).stat().st_size > 0
    bad = dict(cfg, stale_option=1)
    (run / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="stale_option"):
        SpeechTrainConfig.load(run / "bad.json")


def test_ravdess_like_files_round_trip(tmp_path):
    paths = write_ravdess_like(tmp_path, per_class=1, speakers=1, fs=8000, seconds=1.5)
    clips = find_clips(tmp_path)
    assert len(paths) == len(clips) == 7
    assert sorted(c.label for c in clips) == sorted(EMOTIONS)
    X, y, _ = clip_inputs(clips, SMALL)
    assert X.shape == (7, *SMALL.input_shape) and np.isfinite(X).all()


def test_cli_refuses_missing_data():
    from vitaledge.train.cli import train_group

    res = CliRunner().invoke(train_group, ["emotion-speech", "--out", "/tmp/x"])
    assert res.exit_code != 0 and "give --data DIR or --synth-per-class N" in res.output


def test_converts_and_runs_in_the_daemon_on_wav_replay(synth_run, tmp_path):
    """The trained run converts (fp32 fused/unrolled, fp16, int8, int8-fc), each verified
    against Keras; the deployed one classifies a wav replayed through the daemon."""
    from vitaledge.convert.pipeline import FAIL, ConvertOptions, convert_run
    from vitaledge.device.stream.daemon import Daemon
    from vitaledge.device.stream.daemon_config import DaemonConfig

    run, _ = synth_run
    art = tmp_path / "art"
    results = {r.variant: r for r in convert_run(run, art, ConvertOptions(
        targets=["cpu"], max_drop=100.0, fused_reference=False))}
    assert {"cpu-fp32", "cpu-fp16", "cpu-int8", "cpu-int8-fc"} <= set(results)
    assert all(r.status != FAIL for r in results.values()), {
        k: r.error for k, r in results.items()}
    keras_acc = json.loads((run / "metrics.json").read_text())["accuracy"]
    assert results["cpu-fp32"].metrics["accuracy"] == pytest.approx(keras_acc, abs=0.08)
    sig = SpeechSignal.from_dict(json.loads((run / "config.json").read_text())["signal"])
    clip = synth_clip("angry", sig.sample_rate, 3.0, np.random.default_rng(5))
    wav = tmp_path / "angry.wav"
    sf.write(wav, clip, int(sig.sample_rate), subtype="PCM_16")
    events_path = tmp_path / "ev.jsonl"
    Daemon(DaemonConfig(model=str(art / "cpu-int8-fc"), source=f"replay:{wav}",
                        out=[str(events_path)])).run(install_signals=False)
    events = [json.loads(x) for x in events_path.read_text().splitlines()]
    length = sig.offset_s + sig.duration_s          # one clip, then every half clip
    assert len(events) == int((3.0 - length) // (length / 2)) + 1
    assert all(e["type"] == "emotion" and e["task"] == "emotion-speech" for e in events)


def test_speech_splits_are_one_table():
    """--split's choices and help, the options only a split reads and how each describes
    a run come from SPEECH_SPLITS (they were a tuple, a hand-written table, an if-chain of
    sentences and name tests in three modules)."""
    from click.testing import CliRunner

    from vitaledge.cli import main
    from vitaledge.train.cli import SPEECH_SPLIT_OPTIONS
    from vitaledge.train.speech_config import SPEECH_SPLITS, SPLITS, SpeechTrainConfig

    assert SPLITS == tuple(SPEECH_SPLITS) == ("actor", "actors", "none", "random")
    assert SPEECH_SPLIT_OPTIONS == {"fold": ("actors",), "folds": ("actors",),
                                    "test_actors": ("actor",), "test_fraction": ("random",)}
    out = " ".join(CliRunner().invoke(main, ["train", "emotion-speech", "--help"],
                                      terminal_width=1000).output.split())
    who = {"fit": "a (f)", "val": "b (m)", "test": "c (?)"}
    for name, kind in SPEECH_SPLITS.items():
        assert f"{name}: {kind.help}" in out
        assert not (kind.test_is_val and kind.folds)  # a fold has test speakers
        text = kind.describe(SpeechTrainConfig(split=name, folds=4, fold=2), who)
        assert text and ("c (?)" in text or kind.test_is_val or not kind.by_speaker)
