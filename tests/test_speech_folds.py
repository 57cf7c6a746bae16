"""Speaker-independent speech emotion: leave-speakers-out folds (gender-balanced, no
speaker on both sides), the log-mel cache, feature normalization shared with the device,
and ``vitaledge evaluate`` on speech runs and their converted artifacts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import unavailable

from vitaledge.device.inputs.mel import (
    SpeechSignal,
    clip_log_mel,
    mel_stats,
    model_input,
)
from vitaledge.firmware_sim.patients.speech import write_ravdess_like
from vitaledge.train.speech_cache import MelCache
from vitaledge.train.speech_data import (
    LABELS_WITH_CALM,
    Clip,
    clip_inputs,
    find_clips,
    speaker_folds,
    speaker_gender,
    speaker_split,
    synthetic_clips,
)

SMALL = SpeechSignal.fitted(sample_rate=8000.0, duration_s=1.0, offset_s=0.2,
                            min_duration_s=0.5, n_mels=32, fmax=4000.0, image_width=16)


def _real_clips(data_dir):
    dirs = [data_dir / "ravdess", data_dir / "ravdess-16k"]
    if not all(d.is_dir() for d in dirs):
        unavailable(f"RAVDESS not found in {data_dir}")
    return [c for d in dirs for c in find_clips(d)]  # listing only: names, no audio read


@pytest.mark.parametrize("k", [2, 3, 4, 5, 8])
def test_real_ravdess_folds_are_speaker_disjoint_and_gender_balanced(data_dir, k):
    clips = _real_clips(data_dir)
    speakers = sorted({c.speaker for c in clips})
    assert speakers == [f"{i:02d}" for i in range(1, 17)]
    genders = {c.speaker: speaker_gender(c) for c in clips}
    assert [genders[s] for s in speakers] == ["male", "female"] * 8  # odd male, even female
    folds = speaker_folds(clips, k, seed=3)
    assert sorted(s for f in folds for s in f) == speakers  # each speaker tested once
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    for test in folds:
        males = sum(genders[s] == "male" for s in test)
        assert abs(males - (len(test) - males)) <= 1
        parts = speaker_split(clips, test, 0.15, seed=1)
        side = {k2: {clips[i].speaker for i in v} for k2, v in parts.items()}
        assert side["test"] == set(test)
        assert not side["test"] & side["fit"] and not side["test"] & side["val"]
        assert not side["fit"] & side["val"] and side["val"]  # validation carved by speaker
        assert sum(len(v) for v in parts.values()) == len(clips)
        val_m = sum(genders[s] == "male" for s in side["val"])
        assert abs(val_m - (len(side["val"]) - val_m)) <= 1
    assert speaker_folds(clips, k, seed=3) == folds  # reproducible
    with pytest.raises(ValueError, match="17 folds but only 16 speakers"):
        speaker_folds(clips, 17)


def test_calm_merged_dropped_or_a_class(data_dir):
    d = data_dir / "ravdess"
    if not d.is_dir():
        unavailable(f"RAVDESS not found in {d}")
    merged, dropped, own = (find_clips(d, calm=c) for c in ("neutral", "drop", "class"))
    assert len(merged) == len(own) == 240 and len(dropped) == 208
    assert sum(c.label == "calm" for c in own) == 32
    assert sum(c.label == "neutral" for c in merged) == 48
    X, y, _ = clip_inputs([c for c in own if c.label == "calm"][:1], SMALL)
    assert y.tolist() == [LABELS_WITH_CALM.index("calm")] == [7]


def test_cached_log_mels_equal_fresh_ones(tmp_path):
    clips = synthetic_clips(1, 1, SMALL, seed=4)[:3]
    paths = write_ravdess_like(tmp_path / "wav", per_class=1, speakers=1, fs=16000,
                               seconds=1.4)[:2]
    files = find_clips(tmp_path / "wav")[:2]
    assert len(paths) >= 2
    cache = MelCache(tmp_path / "cache")
    first = [cache.log_mels(c.path, c.wave, c.fs, SMALL, 2, (15, 30), 0) for c in clips + files]
    assert cache.misses == 3 * 5 and cache.hits == 0
    again = MelCache(tmp_path / "cache")
    second = [again.log_mels(c.path, c.wave, c.fs, SMALL, 2, (15, 30), 0)
              for c in clips + files]
    assert again.hits == 15 and again.misses == 0
    import soundfile as sf

    for c, a, b in zip(clips + files, first, second, strict=True):
        wave, fs = (c.wave, c.fs) if c.wave is not None else sf.read(c.path, dtype="float64")
        fresh = clip_log_mel(wave, fs, SMALL)  # the 16 kHz files resampled by the device code
        np.testing.assert_array_equal(a[0], fresh)
        for x, z in zip(a, b, strict=True):
            assert x.dtype == np.float32 and np.array_equal(x, z)
        assert not np.array_equal(a[1], a[0]) and not np.array_equal(a[1], a[2])
    # whole model inputs: cached == uncached == the device's model_input
    X1, y1, _ = clip_inputs(clips, SMALL, 1, seed=0, cache=again)
    X0, y0, _ = clip_inputs(clips, SMALL, 1, seed=0)
    np.testing.assert_array_equal(X1, X0)
    np.testing.assert_array_equal(X1[0], model_input(clips[0].wave, clips[0].fs, SMALL))
    # another signal is another key: nothing stale is reused
    other = SpeechSignal.fitted(**{**SMALL.to_dict(), "n_mels": 24, "image_hop": 1})
    before = again.misses
    assert again.log_mels(None, clips[0].wave, clips[0].fs, other)[0].shape[0] == 24
    assert again.misses == before + 1


@pytest.mark.parametrize("norm", ["utterance", "speaker"])
def test_feature_normalization_is_the_same_in_training_and_on_the_device(norm):
    sig = SpeechSignal.fitted(**{**SMALL.to_dict(), "feature_norm": norm, "image_hop": 1})
    clips = synthetic_clips(2, 2, sig, seed=5)
    X, _, _ = clip_inputs(clips, sig)
    for i in (0, 5):
        c = clips[i]
        stats = None
        if norm == "speaker":  # the device gets the speaker's statistics from enrolment audio
            stats = mel_stats([clip_log_mel(o.wave, o.fs, sig) for o in clips
                               if o.speaker == c.speaker])
        np.testing.assert_array_equal(X[i], model_input(c.wave, c.fs, sig, stats=stats))
    spec = clip_log_mel(clips[0].wave, clips[0].fs, sig)
    if norm == "utterance":
        from vitaledge.device.inputs.mel import normalize_log_mel

        z = normalize_log_mel(spec, sig)
        np.testing.assert_allclose(z.mean(axis=1), 0, atol=1e-4)
        np.testing.assert_allclose(z.std(axis=1), 1, atol=1e-3)
    else:
        with pytest.raises(ValueError, match="speaker's statistics"):
            model_input(clips[0].wave, clips[0].fs, sig)
    none = SpeechSignal.from_dict({k: v for k, v in sig.to_dict().items()
                                   if k != "feature_norm"})  # specs from before the field
    assert none.feature_norm == "none"


def test_spec_augment_and_class_weights():
    from vitaledge.train.speech import class_weight_vector, spec_augment
    from vitaledge.train.speech_config import SpeechTrainConfig

    cfg = SpeechTrainConfig(time_masks=2, time_mask_width=4, freq_masks=1, freq_mask_width=5,
                            gain_db=0.0)
    x = np.random.default_rng(0).standard_normal((6, 32, 16, 1)).astype(np.float32)
    out = spec_augment(x, cfg, np.random.default_rng(1))
    assert out.shape == x.shape and not np.array_equal(out, x)
    changed = ~np.isclose(out, x)
    assert changed.any(axis=(0, 2, 3)).sum() <= 32 and np.isclose(out[changed], x.mean()).all()
    w = class_weight_vector(np.array([0, 0, 0, 1, 2, 2]), 4)
    np.testing.assert_allclose(w, [6 / 9, 2.0, 1.0, 0.0], rtol=1e-6)


def _fold_args(root) -> list[str]:
    """``train emotion-speech`` options of the tiny 2-fold run (all but ``--out``)."""
    return ["emotion-speech", "--data", str(root / "corpus"), "--split", "actors",
            "--folds", "2", "--sample-rate", "8000", "--duration", "1.0", "--offset", "0.2",
            "--n-mels", "32", "--image-width", "16", "--width", "0.25",
            "--epochs", "2", "--batch-size", "8", "--recipe", "robust", "--seed", "2",
            "--cache", str(root / "cache")]


@pytest.fixture(scope="module")
def fold_run(tmp_path_factory):
    """A tiny leave-speakers-out 2-fold run on RAVDESS-named synthetic wavs (2 epochs)."""
    from vitaledge.train.cli import train_group

    root = tmp_path_factory.mktemp("speechfolds")
    write_ravdess_like(root / "corpus", per_class=4, speakers=4, fs=16000, seconds=1.4)
    out = root / "run"
    res = CliRunner().invoke(train_group, [*_fold_args(root), "--out", str(out)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return root, out


def test_fold_report(fold_run):
    _, run = fold_run
    summary = json.loads((run / "folds.json").read_text())
    folds = summary["folds"]
    assert len(folds) == 2 and summary["calm"] == "neutral" and summary["recipe"] == "robust"
    assert sorted(s for f in folds for s in f["test_speakers"]) == ["01", "02", "03", "04"]
    for f in folds:
        assert not set(f["test_speakers"]) & set(f["val_speakers"])
        m = json.loads((run / f"fold-{f['fold']}" / "metrics.json").read_text())
        assert f["uar"] == m["uar"] and f["accuracy"] == m["accuracy"]
        assert m["epoch_seconds"] > 0 and m["run_seconds"] >= m["train_seconds"]
        assert set(m["split"]["speakers"]["fit"]).isdisjoint(f["test_speakers"])
    for key in ("accuracy", "uar", "macro_f1"):
        v = [f[key] for f in folds]
        assert summary["spread"][key]["mean"] == pytest.approx(np.mean(v))
        assert summary["spread"][key]["sd"] == pytest.approx(np.std(v, ddof=1))
    cm = np.asarray(summary["pooled"]["confusion_matrix"])
    assert cm.sum() == 28 and (cm == sum(np.asarray(f["confusion_matrix"]) for f in folds)).all()
    md = (run / "folds.md").read_text()
    assert "| mean ± sd |" in md and "UAR" in md and "merged into neutral" in md
    assert summary["run_seconds"] > 0 and summary["epoch_seconds"] > 0
    cfg = json.loads((run / "fold-1" / "config.json").read_text())
    assert cfg["signal"]["feature_norm"] == "utterance" and cfg["optimizer"] == "adam"


def test_one_fold_alone_is_that_fold_of_the_whole_deal(fold_run, tmp_path):
    """``--fold 2`` trains fold 2 of the same deal alone; with fold 1 of the whole run beside
    it in ``--out``, the rebuilt table has both folds as the whole run's has them."""
    import shutil

    from vitaledge.train.cli import train_group

    root, run = fold_run
    deal = speaker_folds(find_clips(root / "corpus"), 2, seed=2)
    whole = json.loads((run / "folds.json").read_text())
    assert [f["test_speakers"] for f in whole["folds"]] == deal and whole["complete"]
    out = tmp_path / "single"
    shutil.copytree(run / "fold-1", out / "fold-1")
    runner = CliRunner()
    res = runner.invoke(train_group, [*_fold_args(root), "--fold", "2", "--out", str(out)],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    m = json.loads((out / "fold-2" / "metrics.json").read_text())
    assert m["split"]["speakers"]["test"] == deal[1] != deal[0]
    assert m["split"]["speakers"] == json.loads(
        (run / "fold-2" / "metrics.json").read_text())["split"]["speakers"]  # val, fit too
    rebuilt = json.loads((out / "folds.json").read_text())
    assert rebuilt["folds_run"] == [1, 2] and rebuilt["complete"]
    for got, want in zip(rebuilt["folds"], whole["folds"], strict=True):
        for key in ("fold", "test_speakers", "val_speakers", "n_test"):
            assert got[key] == want[key], key
    assert rebuilt["folds"][0] == whole["folds"][0]  # fold 1 carried over as it was
    assert rebuilt["folds"][1]["accuracy"] == m["accuracy"]
    assert "Folds run so far" not in (out / "folds.md").read_text()
    # a fold of another run is refused before anything trains; so is a fold out of range
    cfg = json.loads((out / "fold-1" / "config.json").read_text())
    (out / "fold-1" / "config.json").write_text(json.dumps(cfg | {"seed": 3}))
    res = runner.invoke(train_group, [*_fold_args(root), "--fold", "2", "--out", str(out)])
    assert res.exit_code != 0 and f"--out {out / 'fold-2'}: already holds" in res.output
    res = runner.invoke(train_group, [*_fold_args(root), "--fold", "2", "--out", str(out),
                                      "--overwrite"])
    assert res.exit_code != 0 and "trained with other seed than this run" in res.output
    res = runner.invoke(train_group, [*_fold_args(root), "--fold", "3", "--out", str(out)])
    assert res.exit_code != 0 and "a 2-fold run has folds 1 to 2" in res.output


def _same(a: dict, b: dict) -> None:
    for key in ("accuracy", "uar", "macro_f1", "confusion_matrix", "n"):
        assert a[key] == b[key], key


def test_evaluate_speech_run_and_artifact_reproduce_training(fold_run, tmp_path):
    from vitaledge.cli import main
    from vitaledge.convert.pipeline import FAIL, ConvertOptions, convert_run

    root, run = fold_run
    fold = run / "fold-1"
    trained = json.loads((fold / "metrics.json").read_text())
    test_speakers = trained["split"]["speakers"]["test"]
    runner = CliRunner()

    def evaluate(*args):
        out = tmp_path / "m.json"
        res = runner.invoke(main, ["evaluate", *map(str, args), "--json", str(out),
                                   "--cache", str(root / "cache")],
                            catch_exceptions=False)
        assert res.exit_code == 0, res.output
        assert "UAR" in res.output
        return json.loads(out.read_text())

    _same(evaluate(fold), trained)                       # the run's held-out inputs
    _same(evaluate(fold / "model.keras"), trained)
    on_data = evaluate(fold, "--data", root / "corpus", "--actors", ",".join(test_speakers))
    _same(on_data, trained)                              # recomputed from the wav files
    assert on_data["data"]["actors"] == test_speakers
    results = convert_run(fold, tmp_path / "art", ConvertOptions(
        targets=["cpu"], quant="none", max_drop=100.0, fused_reference=False))
    assert [r.status != FAIL for r in results] == [True]
    art = tmp_path / "art" / results[0].variant
    _same(evaluate(art), trained)                        # device runtime, no TensorFlow
    _same(evaluate(art, "--data", root / "corpus", "--actors", ",".join(test_speakers)),
          trained)
    res = runner.invoke(main, ["evaluate", str(fold), "--data", str(root / "corpus"),
                               "--actors", "09"])
    assert res.exit_code != 0 and "actors ['09'] not in" in res.output


def test_split_none_trains_on_every_speaker(tmp_path):
    from vitaledge.train.speech import train_speech
    from vitaledge.train.speech_config import SpeechTrainConfig

    cfg = SpeechTrainConfig(synth_per_class=4, split="none", epochs=1, batch_size=8,
                            width=0.25, lstm_units=8, augment=0, signal=SMALL, seed=1)
    m = train_speech(cfg, tmp_path / "final", verbose=0)
    sp = m["split"]["speakers"]
    assert sp["test"] == sp["val"] and len(sp["val"]) == 1
    assert sorted(sp["fit"] + sp["val"]) == ["01", "02", "03", "04"]
    assert m["evaluated_on"].startswith("validation speakers") and "uar" in m


def test_clip_speakers_by_gender():
    assert speaker_gender(Clip("sad", "07", "ravdess")) == "male"
    assert speaker_gender(Clip("sad", "12", "ravdess")) == "female"
    assert speaker_gender(Clip("sad", "OAF", "tess")) == "female"
    assert speaker_gender(Clip("sad", "DC", "savee")) == "male"
