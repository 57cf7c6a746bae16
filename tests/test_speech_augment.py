"""Training-time augmentation for speech emotion: mixup (the mixed batch, its class weights,
the config check), the mel-axis warp and speed perturbation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vitaledge.device.dsp.resample import resample
from vitaledge.device.inputs.mel import SpeechSignal, clip_log_mel, images_from_log_mel
from vitaledge.train.speech import (
    SpeechBatches,
    class_weight_vector,
    mixup_batch,
    spec_augment,
    speed_factors,
    warp_mel,
)
from vitaledge.train.speech_cache import (
    MelCache,
    add_noise,
    content_hash,
    noise_params,
    speed_perturb,
)
from vitaledge.train.speech_config import SpeechTrainConfig
from vitaledge.train.speech_data import Clip, clip_inputs


def _pairs(t: np.ndarray, y: np.ndarray):
    """(lambda, partner index) per row of the targets, read off the labels: every example
    has its own class, so the class holding the rest of the mass names the partner."""
    lam = t[np.arange(len(y)), y]
    rest = t.copy()
    rest[np.arange(len(y)), y] = 0
    partner = np.where(rest.max(axis=1) > 0, rest.argmax(axis=1), y)  # else itself
    return lam, np.argsort(y)[partner]


def test_mixup_blends_inputs_and_labels_with_one_lambda():
    rng = np.random.default_rng(0)
    n = 8
    y = rng.permutation(n)  # one example per class: the target says who the partner is
    x = rng.standard_normal((n, 6, 5, 4, 1)).astype(np.float32)
    for seed in range(5):
        xm, t, sw = mixup_batch(x, y, n, 0.2, np.random.default_rng(seed))
        assert sw is None and xm.dtype == np.float32 and xm.shape == x.shape
        assert t.shape == (n, n) and (t >= 0).all()
        np.testing.assert_allclose(t.sum(axis=1), 1, atol=1e-6)
        assert ((t > 0).sum(axis=1) <= 2).all()  # a convex pair, nothing else
        lam, j = _pairs(t, y)
        mixed = j != np.arange(n)
        assert mixed.any() and sorted(j) == list(range(n))  # a permutation of the batch
        assert np.allclose(lam[mixed], lam[mixed][0])  # one lambda for the whole batch
        lam = float(lam[mixed][0])
        assert 0 < lam < 1
        np.testing.assert_allclose(xm, lam * x + (1 - lam) * x[j], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(t, lam * np.eye(n)[y] + (1 - lam) * np.eye(n)[y[j]],
                                   atol=1e-6)
    # Beta(0.2, 0.2) puts most lambdas near 0 or 1 (mostly one clip, a little of another)
    lams = [np.random.default_rng(s).beta(0.2, 0.2) for s in range(400)]
    assert np.mean([min(v, 1 - v) < 0.1 for v in lams]) > 0.5


def test_mixup_keeps_each_labels_class_weight():
    rng = np.random.default_rng(1)
    y = np.array([0, 0, 0, 0, 0, 1, 2, 2])
    w = class_weight_vector(y, 4)  # class 3 absent: weight 0
    x = rng.standard_normal((len(y), 3, 4, 2, 1)).astype(np.float32)
    xm, t, sw = mixup_batch(x, y, 4, 0.4, np.random.default_rng(3), w)
    # replay the draws to know lambda and the pairs
    r = np.random.default_rng(3)
    lam, j = float(r.beta(0.4, 0.4)), r.permutation(len(y))
    np.testing.assert_allclose(xm, lam * x + (1 - lam) * x[j], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sw, lam * w[y] + (1 - lam) * w[y[j]], rtol=1e-6)
    np.testing.assert_allclose(t.sum(axis=1), 1, atol=1e-6)
    # sample weight x target = each label's share times its own class weight, so the loss
    # s * CE(t) = lam w(y_i) CE(y_i) + (1 - lam) w(y_j) CE(y_j)
    eye = np.eye(4)
    np.testing.assert_allclose(sw[:, None] * t,
                               lam * w[y][:, None] * eye[y]
                               + (1 - lam) * w[y[j]][:, None] * eye[y[j]], atol=1e-6)
    logp = np.log(np.random.default_rng(4).dirichlet(np.ones(4), len(y)))
    loss = -(sw[:, None] * t * logp).sum(axis=1)
    expect = -(lam * w[y] * logp[np.arange(len(y)), y]
               + (1 - lam) * w[y[j]] * logp[np.arange(len(y)), y[j]])
    np.testing.assert_allclose(loss, expect, rtol=1e-5)


def test_batches_mix_only_when_asked():
    rng = np.random.default_rng(2)
    y = np.array([0, 1, 2, 3, 4, 5, 6, 0, 1, 2])
    x = rng.standard_normal((len(y), 2, 4, 3, 1)).astype(np.float32)
    w = class_weight_vector(y, 7)
    plain = SpeechBatches(x, y, SpeechTrainConfig(batch_size=4), w)
    xb, yb, sb = plain[0]
    idx = plain.order[:4]
    assert yb.dtype == y.dtype and (yb == y[idx]).all()  # integer labels, untouched inputs
    np.testing.assert_array_equal(xb, x[idx])
    np.testing.assert_allclose(sb, w[y[idx]])
    mixed = SpeechBatches(x, y, SpeechTrainConfig(batch_size=4, mixup=0.2), None)
    xb, tb = mixed[2]
    assert xb.shape == (2,) + x.shape[1:] and tb.shape == (2, 7)
    np.testing.assert_allclose(tb.sum(axis=1), 1, atol=1e-6)
    xb, tb, sb = SpeechBatches(x, y, SpeechTrainConfig(batch_size=4, mixup=0.2), w)[0]
    assert tb.shape == (4, 7) and sb.shape == (4,) and (sb > 0).all()


@pytest.mark.parametrize("alpha", [-0.1, math.nan, math.inf, "0.2x"])
def test_config_refuses_bad_mixup(alpha):
    with pytest.raises(ValueError, match="mixup"):
        SpeechTrainConfig(mixup=alpha).check()


def test_config_mixup_default_off_and_round_trips():
    assert SpeechTrainConfig().mixup == 0.0
    SpeechTrainConfig(mixup=0).check()
    cfg = SpeechTrainConfig(mixup=0.2)
    cfg.check()
    assert SpeechTrainConfig.from_dict(cfg.to_dict()).mixup == 0.2
    old = {k: v for k, v in cfg.to_dict().items() if k != "mixup"}  # configs from before
    assert SpeechTrainConfig.from_dict(old).mixup == 0.0


def test_cli_passes_mixup_to_the_config():
    from click.testing import CliRunner

    from vitaledge.train.cli import train_group

    res = CliRunner().invoke(train_group, ["emotion-speech", "--synth-per-class", "2",
                                           "--mixup", "-0.5", "--out", "unused"])
    assert res.exit_code != 0 and "mixup" in res.output and "-0.5" in res.output
    assert "--mixup" in CliRunner().invoke(train_group, ["emotion-speech", "--help"]).output


def test_warp_moves_spectral_structure_along_the_mel_axis():
    x = np.zeros((3, 64, 5, 1), np.float32)
    x[:, 20] = 1.0  # one band lit in every image and frame
    np.testing.assert_array_equal(warp_mel(x, 1.0), x)
    up, down = warp_mel(x, 1.1), warp_mel(x, 0.9)
    assert int(np.argmax(up[0, :, 0, 0])) == 22 and int(np.argmax(down[0, :, 0, 0])) == 18
    assert up.shape == x.shape and np.allclose(up[1], up[0])  # every image alike
    ramp = np.broadcast_to(np.arange(64, dtype=np.float32)[None, :, None, None], x.shape)
    np.testing.assert_allclose(warp_mel(ramp, 1.25)[0, :60, 0, 0], np.arange(60) / 1.25,
                               atol=1e-5)  # linear interpolation between bands


def test_warp_is_drawn_per_example_and_only_in_training_batches():
    rng = np.random.default_rng(3)
    y = np.array([0, 1, 2, 3])
    x = rng.standard_normal((4, 2, 16, 3, 1)).astype(np.float32)
    cfg = SpeechTrainConfig(batch_size=4, freq_warp=0.1)
    a = spec_augment(x[0], cfg, np.random.default_rng(0))
    b = spec_augment(x[0], cfg, np.random.default_rng(1))
    assert a.shape == x[0].shape and not np.allclose(a, b) and not np.allclose(a, x[0])
    xb, yb = SpeechBatches(x, y, cfg, None)[0]
    assert not np.allclose(xb, x[SpeechBatches(x, y, cfg, None).order[:4]])
    xb, _ = SpeechBatches(x, y, SpeechTrainConfig(batch_size=4), None)[0]
    assert any(np.array_equal(xb[0], xi) for xi in x)  # off: inputs untouched


@pytest.mark.parametrize("warp", [-0.1, 0.5, math.nan, "0.1"])
def test_config_refuses_bad_warp(warp):
    with pytest.raises(ValueError, match="freq_warp"):
        SpeechTrainConfig(freq_warp=warp).check()


def _voice(fs: float, seconds: float = 4.0) -> np.ndarray:
    """A gliding harmonic tone with a little noise: spectral and temporal structure."""
    t = np.arange(int(seconds * fs)) / fs
    f0 = 150 + 60 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / fs
    x = sum(np.sin(k * phase) / k for k in range(1, 12)) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return x + 0.01 * np.random.default_rng(0).standard_normal(len(t))


def test_speed_perturb_changes_tempo_and_pitch():
    fs = 16000.0
    t = np.arange(int(2 * fs)) / fs
    tone = np.sin(2 * np.pi * 1000 * t)
    assert speed_perturb(tone, fs, 1.0) is tone
    for factor in (0.9, 1.1):
        y = speed_perturb(tone, fs, factor)
        assert len(y) == math.ceil(len(tone) / factor)  # shorter when faster
        np.testing.assert_array_equal(y, resample(tone, fs * factor, fs))  # the device's
        mid = y[2000:2000 + 8192]
        peak = np.argmax(np.abs(np.fft.rfft(mid * np.hanning(len(mid))))) * fs / len(mid)
        assert abs(peak - 1000 * factor) < 5  # the pitch moves with the speed


@pytest.mark.parametrize("fs", [16000.0, 48000.0])
def test_speed_perturbed_features_are_a_fresh_resample_and_cached_per_factor(tmp_path, fs):
    sig = SpeechSignal(feature_norm="utterance")
    wave = _voice(fs)
    cache = MelCache(tmp_path)
    plain = cache.log_mels(None, wave, fs, sig, noisy_copies=1, seed=3)
    for factor in (0.9, 1.1):
        got = cache.log_mels(None, wave, fs, sig, noisy_copies=1, seed=3, speed=factor)
        fresh = resample(wave, fs * factor, fs)
        np.testing.assert_array_equal(got[0], clip_log_mel(fresh, fs, sig))
        snr, s = noise_params(content_hash(None, wave, fs), 1, (15.0, 30.0), 3)
        noisy = add_noise(fresh, snr, np.random.default_rng(s))
        np.testing.assert_array_equal(got[1], clip_log_mel(noisy, fs, sig))
        for g, p in zip(got, plain, strict=True):
            assert g.shape == p.shape and np.abs(g - p).mean() > 1.0  # dB: not the original
    assert cache.misses == 6 and cache.hits == 0  # a key per factor (and per noisy copy)
    again = MelCache(tmp_path)
    for factor in (0.9, 1.1):
        got = again.log_mels(None, wave, fs, sig, noisy_copies=1, seed=3, speed=factor)
        np.testing.assert_array_equal(got[0], clip_log_mel(resample(wave, fs * factor, fs),
                                                           fs, sig))
    assert again.hits == 4 and again.misses == 0
    assert not np.array_equal(again.log_mels(None, wave, fs, sig, speed=0.9)[0],
                              again.log_mels(None, wave, fs, sig, speed=1.1)[0])


def test_clip_inputs_at_a_speed_are_the_perturbed_clips_model_inputs():
    fs = 16000.0
    sig = SpeechSignal(feature_norm="utterance")
    clips = [Clip("happy", "01", "synth", wave=_voice(fs), fs=fs),
             Clip("sad", "02", "synth", wave=_voice(fs)[::-1].copy(), fs=fs)]
    X, y, src = clip_inputs(clips, sig, speed=1.1)
    X1, y1, _ = clip_inputs(clips, sig)
    assert X.shape == X1.shape and (y == y1).all() and not np.allclose(X, X1)
    for k, c in enumerate(clips):
        np.testing.assert_array_equal(
            X[k], images_from_log_mel(clip_log_mel(resample(c.wave, fs * 1.1, fs), fs, sig),
                                      sig))


def test_speed_variants_drawn_per_example_each_epoch_and_only_when_on():
    rng = np.random.default_rng(5)
    n = 64
    y = np.arange(n) % 7
    x = rng.standard_normal((n, 2, 4, 3, 1)).astype(np.float32)
    xs = np.stack([x + 100, x + 200])  # tell the versions apart by their offset
    cfg = SpeechTrainConfig(batch_size=n, speed_perturb=0.1)
    assert speed_factors(cfg) == (0.9, 1.1) and speed_factors(SpeechTrainConfig()) == ()
    x0, xs0 = x.copy(), xs.copy()
    b = SpeechBatches(x, y, cfg, None, xs)
    seen = []
    for _ in range(2):
        xb, yb = b[0]
        idx = b.order
        which = np.round((xb - x[idx]).mean(axis=(1, 2, 3, 4)) / 100).astype(int)
        assert set(which) == {0, 1, 2}  # all three speeds in one batch of 64
        np.testing.assert_array_equal(xb, np.stack([x, *xs])[which, idx])
        assert (yb == y[idx]).all()
        seen.append(which[np.argsort(idx)])
        b.on_epoch_end()
    assert not (seen[0] == seen[1]).all()  # drawn afresh each epoch
    np.testing.assert_array_equal(x, x0)  # the stored inputs untouched
    np.testing.assert_array_equal(xs, xs0)
    xb, _ = SpeechBatches(x, y, SpeechTrainConfig(batch_size=n), None)[0]
    assert all(any(np.array_equal(r, xi) for xi in x) for r in xb)  # off: as recorded
    with pytest.raises(ValueError, match="speed variants"):
        SpeechBatches(x, y, cfg, None, xs[:, :10])


@pytest.mark.parametrize("speed", [-0.1, 0.5, 1.0, math.nan, math.inf, "0.1", True])
def test_config_refuses_bad_speed_perturb(speed):
    with pytest.raises(ValueError, match="speed_perturb"):
        SpeechTrainConfig(speed_perturb=speed).check()


def test_config_speed_perturb_default_off_round_trips_and_cli_passes_it():
    from click.testing import CliRunner

    from vitaledge.train.cli import train_group

    assert SpeechTrainConfig().speed_perturb == 0.0
    cfg = SpeechTrainConfig(speed_perturb=0.1)
    cfg.check()
    assert SpeechTrainConfig.from_dict(cfg.to_dict()).speed_perturb == 0.1
    old = {k: v for k, v in cfg.to_dict().items() if k != "speed_perturb"}
    assert SpeechTrainConfig.from_dict(old).speed_perturb == 0.0
    res = CliRunner().invoke(train_group, ["emotion-speech", "--synth-per-class", "2",
                                           "--speed-perturb", "0.7", "--out", "unused"])
    assert res.exit_code != 0 and "speed_perturb" in res.output and "0.7" in res.output


def test_checkpoint_choices_keep_the_epoch_they_name(tmp_path, monkeypatch):
    """``--checkpoint``: ``best`` (the seed's) keeps the epoch of best validation accuracy,
    ``last`` the weights after the last epoch, ``late-best`` (the robust recipe's) the best
    epoch of the second half of the schedule; the last two never stop early."""
    import json

    from click.testing import CliRunner

    from vitaledge.train.backend import keras
    from vitaledge.train.cli import train_group
    from vitaledge.train.speech_config import RECIPES

    assert RECIPES["robust"]["checkpoint"] == "late-best"
    assert RECIPES["seed"]["checkpoint"] == "best"
    with pytest.raises(ValueError, match="checkpoint"):
        SpeechTrainConfig(checkpoint="median").check()
    made = []
    real = keras.callbacks.ModelCheckpoint

    class Recording(real):  # how the run asks Keras to write model.keras
        def __init__(self, *args, **kwargs):
            made.append(kwargs.get("save_best_only"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(keras.callbacks, "ModelCheckpoint", Recording)
    runs, vals = {}, {}
    for kept in ("last", "best", "late-best"):
        out = tmp_path / kept
        args = ["emotion-speech", "--synth-per-class", "4", "--split", "random",
                "--sample-rate", "8000", "--duration", "1.0", "--offset", "0.2",
                "--n-mels", "16", "--image-width", "8", "--width", "0.25", "--epochs", "6",
                "--patience", "1", "--batch-size", "8", "--seed", "1", "--no-cache",
                "--speed-perturb", "0", "--checkpoint", kept, "--ensemble", "1",
                "--out", str(out)]
        res = CliRunner().invoke(train_group, args, catch_exceptions=False)
        assert res.exit_code == 0, res.output
        runs[kept] = json.loads((out / "metrics.json").read_text())
        assert json.loads((out / "config.json").read_text())["checkpoint"] == kept
        hist = (out / "history.csv").read_text().splitlines()
        col = hist[0].split(",").index("val_accuracy")
        vals[kept] = [float(r.split(",")[col]) for r in hist[1:]]
    # "last": written after every epoch, the last one last; late-best writes its own
    assert made == [False, True]
    assert runs["last"]["kept_epoch"] == runs["last"]["epochs_run"] == 6  # no early stop
    assert runs["late-best"]["epochs_run"] == 6
    assert runs["best"]["kept_epoch"] == runs["best"]["best_epoch"]
    assert runs["best"]["best_val_accuracy"] == pytest.approx(max(vals["best"]))
    late = vals["late-best"][3:]  # epochs 4-6, the second half
    assert runs["late-best"]["kept_epoch"] == 4 + late.index(max(late))
