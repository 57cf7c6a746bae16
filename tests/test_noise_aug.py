"""Noise augmentation of beat training (vitaledge.train.noise_aug): the SNR drawn is the SNR
delivered, only training patients are copied, a seed rebuilds the same beats, and bad
options get a one-line error."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from vitaledge.cli import main
from vitaledge.device.dsp.windows import WindowSpec
from vitaledge.device.io.aami import map_annotations
from vitaledge.device.io.nst import measured_snr, qrs_amplitude, rms_amplitude
from vitaledge.device.io.records import list_records, read_record
from vitaledge.train.config import BeatTrainConfig
from vitaledge.train.data import prepare
from vitaledge.train.noise_aug import NoiseAug, forget_built, noisy_beats, noisy_record


@pytest.fixture(scope="module")
def noise_dir(tmp_path_factory):
    """A two-channel noise record at 250 Hz (so it is resampled): a wandering baseline
    (channel 0) and broadband noise (channel 1), five minutes."""
    import wfdb

    d = tmp_path_factory.mktemp("noise")
    rng = np.random.default_rng(3)
    n = 250 * 300
    wander = np.cumsum(rng.normal(0, 0.01, n))
    wander -= np.convolve(wander, np.ones(250) / 250, mode="same")
    sig = np.stack([wander, rng.normal(0, 0.2, n)], axis=1)
    wfdb.wrsamp("zz", fs=250, units=["mV", "mV"], sig_name=["noise1", "noise2"], p_signal=sig,
                fmt=["16", "16"], adc_gain=[2000.0, 2000.0], baseline=[0, 0], write_dir=str(d))
    return d


def _record(synth_dir, name="s000"):
    return read_record({p.name: p for p in list_records(synth_dir)}[name])


def test_snr_drawn_is_snr_delivered(synth_dir):
    rec = _record(synth_dir)
    samples, classes = map_annotations(rec.ann_samples, rec.ann_symbols)
    pp = qrs_amplitude(rec.signal, rec.fs, samples[classes == 0])
    rng = np.random.default_rng(0)
    white = np.random.default_rng(1).normal(0, 1.0, len(rec.signal))

    aug = NoiseAug("unused", snr_db=[12.0, 12.0], segment_s=30.0)
    noisy, snrs = noisy_record(rec, white, aug, rng)
    assert snrs == [12.0] * len(snrs) and len(snrs) == 6  # 3 minutes in 30-s segments
    added = noisy.signal - rec.signal
    assert abs(measured_snr(pp, rms_amplitude(added, rec.fs, max_windows=10**6)) - 12.0) < 0.5
    assert np.array_equal(noisy.ann_samples, rec.ann_samples)  # the reference is the same

    aug = NoiseAug("unused", snr_db=[0.0, 24.0], segment_s=30.0)
    noisy, snrs = noisy_record(rec, white, aug, np.random.default_rng(0))
    assert all(0.0 <= s <= 24.0 for s in snrs) and max(snrs) - min(snrs) > 3.0
    added = noisy.signal - rec.signal
    seg = int(30 * rec.fs)
    for k, s in enumerate(snrs):  # each segment at its own level, 1-s edges left out
        part = added[k * seg + int(rec.fs): (k + 1) * seg - int(rec.fs)]
        assert abs(measured_snr(pp, rms_amplitude(part, rec.fs, max_windows=10**6)) - s) < 0.5


def _cfg(synth_dir, noise_dir, **kw):
    return BeatTrainConfig(arch="tiny", records=str(synth_dir), window=WindowSpec.kachuee(),
                           split="record", test_records=["s003"], seed=4, **kw)


def test_only_training_patients_are_copied_and_a_seed_rebuilds_them(synth_dir, noise_dir):
    aug = NoiseAug(str(noise_dir), copies=2, snr_db=[6.0, 18.0]).to_dict()
    clean = prepare(_cfg(synth_dir, noise_dir))
    forget_built()
    p = prepare(_cfg(synth_dir, noise_dir, noise_aug=aug))
    train_records = set(p.train.record)
    assert "s003" not in train_records and set(p.val.record).isdisjoint(train_records)
    # the clean parts are left as they were: the copies only add to what the network fits
    for part in ("train", "val", "test"):
        a, b = getattr(clean, part), getattr(p, part)
        assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    cfg = _cfg(synth_dir, noise_dir, noise_aug=aug)

    def copies(seed):
        return noisy_beats(NoiseAug.from_dict(aug), cfg.records, sorted(train_records), seed,
                           cfg.window, cfg.lead, cfg.anchor)

    noisy = copies(cfg.seed)
    assert set(noisy.record) == train_records
    assert len(p.y_fit) == len(p.train) + len(noisy) > 2.5 * len(p.train)  # two copies each
    assert p.description["noise_aug"]["beats"]["N"] == int((noisy.y == 0).sum())
    # rebuilt from nothing with the same seed: the same beats; another seed: others
    forget_built()
    again = prepare(_cfg(synth_dir, noise_dir, noise_aug=aug))
    assert np.array_equal(again.X_fit, p.X_fit) and np.array_equal(again.y_fit, p.y_fit)
    forget_built()
    other = copies(5)
    assert len(other) != len(noisy) or not np.array_equal(other.X, noisy.X)


def test_config_round_trips_and_refuses_bad_values(synth_dir, noise_dir, tmp_path):
    aug = NoiseAug(str(noise_dir)).to_dict()
    cfg = _cfg(synth_dir, noise_dir, noise_aug=aug)
    cfg.save(tmp_path / "config.json")
    assert BeatTrainConfig.load(tmp_path / "config.json").noise_aug == aug
    for bad, field in (({**aug, "copies": 0}, "copies"), ({**aug, "snr_db": [24, 6]}, "snr_db"),
                       ({**aug, "snr_db": ["a", 6]}, "snr_db"), ({**aug, "segment_s": "60"},
                                                                 "segment_s"),
                       ({**aug, "snr_db": [float("nan"), 6]}, "snr_db"),
                       ({**aug, "snr_db": [-1e308, 1e308]}, "within -30..60"),
                       ({**aug, "snr_db": [1000, 2000]}, "within -30..60"),
                       ({**aug, "segment_s": -1}, "segment_s"), ({**aug, "gain": 1}, "unknown"),
                       ({"copies": 1}, "noise")):
        with pytest.raises(ValueError, match=field):
            BeatTrainConfig.from_dict({**cfg.to_dict(), "noise_aug": bad})


def test_a_split_by_beat_is_refused(synth_dir, noise_dir):
    """Copying a whole record would copy its held-out beats into training."""
    aug = NoiseAug(str(noise_dir)).to_dict()
    cfg = BeatTrainConfig(arch="tiny", records=str(synth_dir), window=WindowSpec.kachuee(),
                          split="beat", noise_aug=aug)
    with pytest.raises(ValueError, match="split by patient"):
        prepare(cfg)


def test_flat_noise_is_refused(synth_dir):
    with pytest.raises(ValueError, match="flat"):
        noisy_record(_record(synth_dir), np.zeros(36_000), NoiseAug("unused"),
                     np.random.default_rng(0))


@pytest.mark.parametrize("extra, message", [
    (["--noise-snr", "24,6"], "snr_db"),
    (["--noise-snr", "six,24"], "--noise-snr: 'six,24': expected LOW,HIGH in dB"),
    (["--noise-aug", "."], "no WFDB noise records"),
    (["--split", "beat"], "split by patient"),
    (["--no-aug", "--noise-copies", "2"], "need --noise-aug"),
])
def test_cli_bad_noise_options_one_line(synth_dir, noise_dir, tmp_path, extra, message):
    args = ["train", "beat", "--arch", "tiny", "--data", str(synth_dir), "--out",
            str(tmp_path / "run")]
    if "--split" not in extra:
        args += ["--split", "record", "--test-records", "s003"]
    if "--no-aug" in extra:
        extra = [a for a in extra if a != "--no-aug"]
    elif "--noise-aug" not in extra:
        args += ["--noise-aug", str(noise_dir)]
    r = CliRunner().invoke(main, args + extra)
    assert r.exit_code == 2 and "Traceback" not in r.output
    errors = [x for x in r.output.splitlines() if x.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], r.output
    assert not (tmp_path / "run").exists()
