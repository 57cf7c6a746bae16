"""Log-mel spectrogram images: the input of the speech-emotion model, in numpy.

As the seed (004) describes it: frames of 256 samples with a hop of 128, a Hamming window
(symmetric, w(k) = 0.54 - 0.46 cos(2 pi k / (N - 1))), a 512-point FFT of each zero-padded
frame, the periodogram |X|^2 / 512, triangular mel filters on the HTK scale
2595 log10(1 + f / 700) with peak 1 (no area normalization), then decibels. A rolling window
over the spectrogram gives a sequence of overlapping images (6 by default) for the
TimeDistributed CNN + LSTM.

The whole recipe is the ``signal`` dict a run records (``SpeechSignal.to_dict``);
:func:`model_input` turns a waveform at any rate into the model input from that dict alone,
so training and the daemon compute the same numbers. It is two steps, so training can cache
the costly one: :func:`clip_log_mel` (resample, fit, STFT, mel, dB, as float32) and
:func:`images_from_log_mel` (the optional feature normalization, then the rolling images).

``feature_norm`` standardizes each mel band of the log-mel spectrogram (float32 arithmetic):
``"none"`` (the seed), ``"utterance"`` (mean and sd of the clip's own frames) or
``"speaker"`` (mean and sd over the speaker's clips, :func:`mel_stats`, passed as ``stats``;
a device gets them from the speaker's enrolment audio).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from vitaledge.device.dsp.spec_fields import AUDIO_FS_RANGE, construct, read_fields
from vitaledge.device.inputs.audio import AudioError, check_rate, fit_clip
from vitaledge.device.inputs.signal_spec import SignalSpecBase

KIND = "speech_log_mel_images"
FEATURE_NORMS = ("none", "utterance", "speaker")


@dataclass(frozen=True)
class SpeechSignal(SignalSpecBase):
    """Everything that turns raw audio into the speech model's input."""

    kind: str = KIND
    sample_rate: float = 16000.0   # Hz, the model's rate; audio is resampled to it
    offset_s: float = 0.5          # seconds skipped at the start of a clip (the seed's 0.5 s)
    duration_s: float = 3.0        # seconds kept after the offset (truncate / zero-pad)
    min_duration_s: float = 1.0    # a clip with less audio after the offset is refused
    normalization: str = "zscore"  # over the kept audio, before zero-padding
    channels: str = "mix"          # multi-channel files: "mix" (mean) or "error"
    frame: int = 256               # samples per STFT frame
    hop: int = 128                 # samples between frames
    n_fft: int = 512               # FFT length (frames are zero-padded to it)
    window: str = "hamming"        # symmetric Hamming of length ``frame``
    n_mels: int = 64
    fmin: float = 0.0
    fmax: float = 8000.0
    mel_scale: str = "htk"         # 2595 log10(1 + f / 700)
    db_ref: str = "max"            # decibels relative to the clip's largest mel power
    amin: float = 1e-10
    top_db: float = 80.0           # floor at max - top_db
    image_count: int = 6
    image_width: int = 128         # spectrogram frames per image
    image_hop: int = 49            # frames between image starts
    feature_norm: str = "none"     # per-band log-mel standardization: none|utterance|speaker

    def __post_init__(self) -> None:
        checks = [
            (self.kind == KIND, f"kind must be {KIND!r}"),
            (AUDIO_FS_RANGE[0] <= self.sample_rate <= AUDIO_FS_RANGE[1],
             f"sample_rate must be {AUDIO_FS_RANGE[0]:g}-{AUDIO_FS_RANGE[1]:g} Hz"),
            (self.window == "hamming", "window must be 'hamming'"),
            (self.mel_scale == "htk", "mel_scale must be 'htk'"),
            (self.db_ref in ("max", "one"), "db_ref must be 'max' or 'one'"),
            (self.channels in ("mix", "error"), "channels must be 'mix' or 'error'"),
            (self.feature_norm in FEATURE_NORMS, f"feature_norm must be one of {FEATURE_NORMS}"),
            (0 < self.hop and 0 < self.frame <= self.n_fft, "need 0 < frame <= n_fft, hop > 0"),
            (0 <= self.fmin < self.fmax <= self.sample_rate / 2,
             "need 0 <= fmin < fmax <= sample_rate / 2"),
            (self.n_mels > 0 and self.image_count > 0 and self.image_width > 0
             and self.image_hop > 0, "n_mels and image count/width/hop must be positive"),
            (0 < self.min_duration_s <= self.duration_s, "need 0 < min_duration_s <= duration_s"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"speech signal: {msg}")
        need = self.image_width + (self.image_count - 1) * self.image_hop
        if need > self.n_frames:
            raise ValueError(f"speech signal: {self.image_count} images of {self.image_width} "
                             f"frames every {self.image_hop} need {need} frames; "
                             f"{self.duration_s} s gives {self.n_frames}")

    @property
    def n_samples(self) -> int:
        return int(round(self.duration_s * self.sample_rate))

    @property
    def n_frames(self) -> int:
        return 1 + (self.n_samples - self.frame) // self.hop

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """(images, mel bands, frames per image, 1): the model input without batch."""
        return (self.image_count, self.n_mels, self.image_width, 1)

    @classmethod
    def fitted(cls, **kw) -> SpeechSignal:
        """A signal whose ``image_hop`` is the largest that fits the images in the clip."""
        probe = cls(**{**kw, "image_hop": 1, "image_count": 1})
        count = kw.get("image_count", cls.image_count)
        width = kw.get("image_width", cls.image_width)
        hop = (probe.n_frames - width) // max(count - 1, 1)
        return cls(**{**kw, "image_hop": max(hop, 1)})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | SpeechSignal, where: str = "signal") -> SpeechSignal:
        """From a run's or manifest's ``signal`` dict; unknown or missing keys are errors
        (:class:`~vitaledge.device.dsp.spec_fields.SpecError` naming the field)."""
        if isinstance(d, SpeechSignal):
            return d
        if isinstance(d, dict) and "feature_norm" not in d:
            d = {**d, "feature_norm": "none"}  # specs written before the field existed
        return construct(cls, read_fields(cls, d, where, word="keys"), where)


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=16)
def _filterbank(sample_rate: float, n_fft: int, n_mels: int, fmin: float,
                fmax: float) -> np.ndarray:
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    width = np.diff(edges)
    ramps = edges[:, None] - freqs[None, :]
    rising = -ramps[:-2] / width[:-1, None]
    falling = ramps[2:] / width[1:, None]
    fb = np.maximum(0.0, np.minimum(rising, falling))
    fb.setflags(write=False)
    return fb


def mel_filterbank(sample_rate: float, n_fft: int, n_mels: int, fmin: float,
                   fmax: float) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, peak 1 at each centre, edges at the
    neighbouring centres, equally spaced on the HTK mel scale and evaluated at the FFT bin
    frequencies (the same construction as librosa's ``htk=True, norm=None``)."""
    return _filterbank(float(sample_rate), int(n_fft), int(n_mels), float(fmin), float(fmax))


def power_spectrogram(y: np.ndarray, frame: int, hop: int, n_fft: int) -> np.ndarray:
    """(n_fft // 2 + 1, n_frames) periodogram |FFT(w * frame)|^2 / n_fft of frames starting
    at 0, hop, 2 hop, ... (no centring padding), each ``frame`` long, symmetric Hamming."""
    y = np.asarray(y, dtype=np.float64)
    if len(y) < frame:
        raise AudioError(f"waveform of {len(y)} samples is shorter than one frame ({frame})")
    n = 1 + (len(y) - frame) // hop
    frames = np.lib.stride_tricks.sliding_window_view(y, frame)[::hop][:n]
    spec = np.fft.rfft(frames * np.hamming(frame), n=n_fft, axis=1)
    return (np.abs(spec) ** 2 / n_fft).T


def mel_spectrogram(y: np.ndarray, sample_rate: float, frame: int = 256, hop: int = 128,
                    n_fft: int = 512, n_mels: int = 64, fmin: float = 0.0,
                    fmax: float | None = None) -> np.ndarray:
    """(n_mels, n_frames) mel power spectrogram of ``y`` (float64)."""
    fb = mel_filterbank(sample_rate, n_fft, n_mels, fmin,
                        sample_rate / 2 if fmax is None else fmax)
    return fb @ power_spectrogram(y, frame, hop, n_fft)


def power_to_db(s: np.ndarray, ref: str = "max", amin: float = 1e-10,
                top_db: float | None = 80.0) -> np.ndarray:
    """10 log10(max(s, amin) / ref), ``ref`` the largest value (``"max"``) or 1 (``"one"``),
    floored at ``top_db`` below the maximum (as librosa's ``power_to_db``)."""
    s = np.asarray(s, dtype=np.float64)
    ref_value = float(s.max()) if ref == "max" else 1.0
    db = 10.0 * np.log10(np.maximum(s, amin)) - 10.0 * np.log10(max(amin, ref_value))
    if top_db is not None:
        db = np.maximum(db, db.max() - top_db)
    return db


def rolling_images(spec: np.ndarray, count: int, width: int, hop: int) -> np.ndarray:
    """(count, n_mels, width) overlapping slices of a (n_mels, n_frames) spectrogram,
    starting at frames 0, hop, 2 hop, ...; frames past the last image are unused."""
    need = width + (count - 1) * hop
    if spec.shape[1] < need:
        raise ValueError(f"spectrogram has {spec.shape[1]} frames; {count} images of {width} "
                         f"every {hop} need {need}")
    return np.stack([spec[:, i * hop:i * hop + width] for i in range(count)])


def log_mel(clip: np.ndarray, signal: dict | SpeechSignal) -> np.ndarray:
    """(n_mels, n_frames) log-mel spectrogram (dB) of a clip already at the signal's rate
    and length (the output of :func:`fit_clip`)."""
    s = SpeechSignal.from_dict(signal)
    mel = mel_spectrogram(clip, s.sample_rate, s.frame, s.hop, s.n_fft, s.n_mels, s.fmin,
                          s.fmax)
    return power_to_db(mel, s.db_ref, s.amin, s.top_db)


def clip_log_mel(waveform: np.ndarray, fs: float, signal: dict | SpeechSignal,
                 source: str = "waveform") -> np.ndarray:
    """(n_mels, n_frames) float32 log-mel spectrogram of one mono clip at ``fs`` Hz: the
    costly, normalization-free part of :func:`model_input` (what training caches).

    Bad audio (non-finite, too short, a rate below 2 * fmax) raises :class:`AudioError`
    naming ``source``."""
    s = SpeechSignal.from_dict(signal)
    check_rate(fs, 2 * s.fmax, source)
    clip = fit_clip(waveform, fs, s.sample_rate, s.offset_s, s.duration_s, s.min_duration_s,
                    s.normalization, source)
    return log_mel(clip, s).astype(np.float32)


def mel_stats(log_mels) -> tuple[np.ndarray, np.ndarray]:
    """(mean, sd) per mel band, float32, over every frame of the given (n_mels, n_frames)
    log-mel spectrograms (one clip: utterance statistics; a speaker's clips: speaker
    statistics). A band with sd 0 gets sd 1."""
    frames = np.concatenate([np.asarray(m, np.float32) for m in log_mels], axis=1)
    mean = frames.mean(axis=1, dtype=np.float64).astype(np.float32)
    sd = frames.std(axis=1, dtype=np.float64).astype(np.float32)
    return mean, np.where(sd > 0, sd, np.float32(1.0)).astype(np.float32)


def normalize_log_mel(spec: np.ndarray, signal: dict | SpeechSignal,
                      stats: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The signal's ``feature_norm`` applied to a float32 log-mel spectrogram: per band
    (x - mean) / sd with the utterance's own statistics, or the speaker's ``stats``."""
    s = SpeechSignal.from_dict(signal)
    spec = np.asarray(spec, np.float32)
    if s.feature_norm == "none":
        return spec
    if s.feature_norm == "utterance":
        stats = mel_stats([spec])
    elif stats is None:
        raise ValueError("feature_norm 'speaker' needs the speaker's statistics "
                         "(mel_stats of their clips)")
    mean, sd = (np.asarray(a, np.float32).reshape(-1, 1) for a in stats)
    if mean.shape[0] != spec.shape[0] or sd.shape[0] != spec.shape[0]:
        raise ValueError(f"speaker statistics have {mean.shape[0]} bands, the spectrogram "
                         f"{spec.shape[0]}")
    return ((spec - mean) / sd).astype(np.float32)


def images_from_log_mel(spec: np.ndarray, signal: dict | SpeechSignal,
                        stats: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The model input (image_count, n_mels, image_width, 1) float32 from the output of
    :func:`clip_log_mel`: feature normalization, then the rolling images."""
    s = SpeechSignal.from_dict(signal)
    spec = normalize_log_mel(spec, s, stats)
    images = rolling_images(spec, s.image_count, s.image_width, s.image_hop)
    return images[..., None].astype(np.float32)


def model_input(waveform: np.ndarray, fs: float, signal: dict | SpeechSignal,
                source: str = "waveform",
                stats: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The speech model's input for one mono clip at ``fs`` Hz: float32 of shape
    (image_count, n_mels, image_width, 1), computed from the run's ``signal`` dict alone
    (and, with ``feature_norm="speaker"``, the speaker's ``stats`` from :func:`mel_stats`).

    Bad audio (non-finite, too short, a rate below 2 * fmax) raises :class:`AudioError`
    naming ``source``."""
    s = SpeechSignal.from_dict(signal)
    return images_from_log_mel(clip_log_mel(waveform, fs, s, source), s, stats)


def file_input(path, signal: dict | SpeechSignal,
               stats: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """:func:`model_input` of an audio file (errors name the file)."""
    from vitaledge.device.inputs.audio import read_wav

    s = SpeechSignal.from_dict(signal)
    x, fs = read_wav(path, s.channels)
    return model_input(x, fs, s, str(path), stats)
