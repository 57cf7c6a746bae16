"""Speech preprocessing on the device side: audio clips, mel spectrogram, rolling images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from conftest import unavailable

from vitaledge.device.inputs.audio import AudioError, fit_clip, read_wav
from vitaledge.device.inputs.mel import (
    SpeechSignal,
    file_input,
    hz_to_mel,
    mel_filterbank,
    mel_spectrogram,
    mel_to_hz,
    model_input,
    power_to_db,
    rolling_images,
)
from vitaledge.firmware_sim.patients.speech import synth_clip

librosa = pytest.importorskip("librosa")


def _librosa_mel(y: np.ndarray, sr: float, window, n_mels: int = 64,
                 fmax: float = 8000.0) -> np.ndarray:
    """librosa with the seed's parameters. librosa frames are n_fft (512) long with the
    256-sample window centred in them, so frame t covers samples [t*hop + 128, +256):
    padding 128 zeros in front aligns its frames with ours (frame t at t*hop)."""
    s = librosa.feature.melspectrogram(
        y=np.pad(y, (128, 128)), sr=sr, n_fft=512, hop_length=128, win_length=256,
        window=window, center=False, power=2.0, n_mels=n_mels, fmin=0.0, fmax=fmax,
        htk=True, norm=None, dtype=np.float64)
    return s / 512  # the seed's periodogram divides |X|^2 by N


@pytest.mark.parametrize("kind", ["noise", "speech"])
def test_mel_matches_librosa(kind):
    rng = np.random.default_rng(3)
    sr = 16000
    y = rng.standard_normal(48000) if kind == "noise" else synth_clip("angry", sr, 3.0, rng)
    ours = mel_spectrogram(y, sr, frame=256, hop=128, n_fft=512, n_mels=64, fmax=8000)
    ref = _librosa_mel(y, sr, np.hamming(256))  # symmetric: the seed's equation (1)
    assert ours.shape == ref.shape == (64, 1 + (48000 - 256) // 128)
    rel = np.max(np.abs(ours - ref)) / np.max(np.abs(ref))
    assert rel <= 1e-4
    big = ref > 1e-6 * ref.max()
    assert np.max(np.abs(ours[big] - ref[big]) / ref[big]) <= 1e-4
    db_ref = librosa.power_to_db(ref, ref=np.max, amin=1e-10, top_db=80.0)
    assert np.max(np.abs(power_to_db(ours, "max", 1e-10, 80.0) - db_ref)) <= 1e-4


def test_librosa_default_periodic_window_differs():
    """librosa's 'hamming' is periodic (fftbins=True); the seed's is symmetric. The parity
    above holds only because the test passes the symmetric window explicitly."""
    y = np.random.default_rng(4).standard_normal(16000)
    ours = mel_spectrogram(y, 16000, n_mels=64, fmax=8000)
    periodic = _librosa_mel(y, 16000, "hamming")
    assert np.max(np.abs(ours - periodic)) / np.max(periodic) > 1e-3


def test_filterbank_triangles():
    fb = mel_filterbank(16000, 512, 64, 0.0, 8000.0)
    assert fb.shape == (64, 257)
    assert np.all(fb >= 0) and np.all(fb <= 1)
    assert np.all(fb.max(axis=1) > 0.3)  # no empty filter with 64 bands on 512 points
    centres = mel_to_hz(np.linspace(0, hz_to_mel(8000.0), 66))[1:-1]
    peaks = np.fft.rfftfreq(512, 1 / 16000)[fb.argmax(axis=1)]
    assert np.all(np.abs(peaks - centres) <= 16000 / 512)  # peak at the nearest bin
    assert hz_to_mel(700.0) == pytest.approx(2595 * np.log10(2))
    assert mel_to_hz(hz_to_mel(1234.5)) == pytest.approx(1234.5)


def test_rolling_images_are_overlapping_slices():
    spec = np.arange(4 * 374, dtype=float).reshape(4, 374)
    imgs = rolling_images(spec, 6, 128, 49)
    assert imgs.shape == (6, 4, 128)
    for i in range(6):
        np.testing.assert_array_equal(imgs[i], spec[:, 49 * i:49 * i + 128])
    np.testing.assert_array_equal(imgs[1][:, :79], imgs[0][:, 49:])  # 79 frames shared
    with pytest.raises(ValueError, match="372 frames; 6 images of 128 every 49 need 373"):
        rolling_images(spec[:, :372], 6, 128, 49)


def test_signal_dict_is_complete_and_strict():
    s = SpeechSignal()
    assert s.n_frames == 374 and s.image_hop == 49
    assert s.input_shape == (6, 64, 128, 1)
    d = json.loads(json.dumps(s.to_dict()))
    assert SpeechSignal.from_dict(d) == s
    assert SpeechSignal.fitted(sample_rate=8000.0, duration_s=1.0, n_mels=32, fmax=4000.0,
                               image_width=16).image_hop == (61 - 16) // 5
    with pytest.raises(ValueError, match="unknown keys \\['extra'\\]"):
        SpeechSignal.from_dict({**d, "extra": 1})
    with pytest.raises(ValueError, match="missing keys \\['n_mels'\\]"):
        SpeechSignal.from_dict({k: v for k, v in d.items() if k != "n_mels"})
    with pytest.raises(ValueError, match="need"):
        SpeechSignal(duration_s=2.0)  # 6 images of 128 every 49 do not fit in 2 s


def test_fit_clip_offset_truncate_zscore_pad():
    fs = 1000.0
    x = np.r_[np.full(500, 9.0), np.sin(np.arange(1200) * 0.3)]
    y = fit_clip(x, fs, fs, offset_s=0.5, duration_s=2.0, min_duration_s=1.0)
    assert len(y) == 2000
    kept = y[:1200]
    assert kept.mean() == pytest.approx(0, abs=1e-12) and kept.std() == pytest.approx(1)
    np.testing.assert_array_equal(y[1200:], 0)  # zero-padded after normalization
    np.testing.assert_allclose(kept, (x[500:] - x[500:].mean()) / x[500:].std())
    long = fit_clip(np.r_[x, x], fs, fs, 0.5, 1.0, 0.5)
    np.testing.assert_allclose(long, (np.r_[x, x][500:1500] - np.r_[x, x][500:1500].mean())
                               / np.r_[x, x][500:1500].std())


def test_model_input_resamples_to_the_signal_rate():
    rng = np.random.default_rng(5)
    s = SpeechSignal()
    x48 = synth_clip("happy", 48000, 3.6, rng)
    a = model_input(x48, 48000, s.to_dict())
    assert a.shape == (6, 64, 128, 1) and a.dtype == np.float32
    assert a.max() == 0.0 and a.min() >= -80.0  # dB relative to the clip's maximum
    x16 = x48[::3]  # naive decimation: close in the bands below 8 kHz, not identical
    b = model_input(x16, 16000, s)
    assert 0 < np.mean(np.abs(a - b)) < 3.0


def test_bad_audio_is_refused_with_the_source_named(tmp_path):
    s = SpeechSignal()
    x = np.zeros(48000)
    x[100] = np.nan
    with pytest.raises(AudioError, match="clip.wav: 1 non-finite samples.*sample 100"):
        model_input(x, 16000, s, "clip.wav")
    with pytest.raises(AudioError, match="short.wav: too short: 1.000 s.*1.5 s"):
        model_input(np.ones(16000), 16000, s, "short.wav")
    with pytest.raises(AudioError, match="phone.wav: sample rate 8000 Hz is below the 16000"):
        model_input(np.ones(80000), 8000, s, "phone.wav")
    bad = tmp_path / "garbage.wav"
    bad.write_bytes(b"RIFF not really a wav")
    with pytest.raises(AudioError, match="garbage.wav: cannot read audio"):
        file_input(bad, s)


def test_stereo_is_mixed_down_or_refused(tmp_path):
    rng = np.random.default_rng(6)
    left, right = rng.uniform(-0.5, 0.5, 8000), rng.uniform(-0.5, 0.5, 8000)
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.c_[left, right], 16000, subtype="FLOAT")
    mono, fs = read_wav(path)
    assert fs == 16000
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-7)
    with pytest.raises(AudioError, match="stereo.wav: 2 channels; a mono recording"):
        read_wav(path, channels="error")


def test_a_truncated_wav_is_refused_not_half_read(tmp_path):
    """libsndfile reads a WAV cut short without a word (478 of 8,000 frames replayed)."""
    path = tmp_path / "whole.wav"
    sf.write(str(path), np.zeros(8000), 16000)
    assert len(read_wav(path)[0]) == 8000
    cut = tmp_path / "cut.wav"
    cut.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(AudioError, match=r"cut\.wav: truncated WAV: its data chunk declares "
                                         r"16,000 bytes, the file holds 956"):
        read_wav(cut)


def test_real_ravdess_files(data_dir):
    d = data_dir / "ravdess"
    if not d.is_dir():
        unavailable(f"RAVDESS not found in {d}")
    s = SpeechSignal()
    mono = file_input(d / "Actor_02" / "03-01-05-02-01-01-02.wav", s)
    stereo = file_input(d / "Actor_01" / "03-01-08-01-02-02-01.wav", s)  # one of two stereo
    for a in (mono, stereo):
        assert a.shape == s.input_shape and np.isfinite(a).all()
        assert a.max() == 0.0 and a.min() < -40.0  # speech has a wide dynamic range
