"""On-disk cache of speech clips' log-mel spectrograms, so each is computed once.

A clip's entry is keyed by the sha256 of its content (the file's bytes, or an in-memory
waveform's samples and rate), the part of the signal spec that shapes the log-mel
spectrogram (everything but ``feature_norm`` and the image fields, which act after it) and,
for a noisy training copy, the copy's noise seed and SNR, and for a speed-perturbed
training copy, its speed factor. The value is exactly
:func:`vitaledge.device.inputs.mel.clip_log_mel` of the clip (float32; of the clip as
:func:`speed_perturb` changes it, for a speed factor other than 1), so a cached run sees
what an uncached one (and the device) computes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from vitaledge.device.dsp.resample import resample
from vitaledge.device.inputs.audio import read_wav
from vitaledge.device.inputs.mel import SpeechSignal, clip_log_mel
from vitaledge.device.io.atomic import write_atomic

#: Signal fields applied after the log-mel spectrogram: not part of the cache key.
AFTER_LOG_MEL = ("feature_norm", "image_count", "image_width", "image_hop")


def default_cache_dir() -> Path:
    """``$VITALEDGE_CACHE/speech-mel``, else ``~/.cache/vitaledge/speech-mel``."""
    root = os.environ.get("VITALEDGE_CACHE") or Path.home() / ".cache" / "vitaledge"
    return Path(root) / "speech-mel"


def signal_key(signal: SpeechSignal) -> str:
    """sha256 of the signal fields that shape the log-mel spectrogram."""
    d = {k: v for k, v in signal.to_dict().items() if k not in AFTER_LOG_MEL}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def content_hash(path: str | None = None, wave: np.ndarray | None = None,
                 fs: float | None = None) -> str:
    """sha256 of a file's bytes, or of an in-memory waveform (float64 samples + rate)."""
    h = hashlib.sha256()
    if path is not None:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    else:
        h.update(np.asarray(wave, np.float64).tobytes())
        h.update(repr(float(fs)).encode())
    return h.hexdigest()


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``x`` plus white Gaussian noise at ``snr_db`` dB below the clip's mean power (the
    seed's noise-injection augmentation)."""
    power = float(np.mean(np.square(x)))
    noise = rng.standard_normal(len(x)) * np.sqrt(power / 10 ** (snr_db / 10))
    return x + noise


def speed_perturb(x: np.ndarray, fs: float, factor: float) -> np.ndarray:
    """``x`` (at ``fs`` Hz) played ``factor`` times as fast, still at ``fs`` Hz: tempo and
    pitch both scaled by ``factor`` (speed perturbation, Ko et al., Interspeech 2015). The
    device's resampler takes the samples as if recorded at ``fs * factor`` to ``fs``, so
    the result has ``len(x) / factor`` samples (rounded up); a factor of 1 returns ``x``."""
    if factor == 1:
        return x
    return resample(x, fs * factor, fs)


def noise_params(clip_hash: str, copy: int, snr_db: tuple[float, float],
                 seed: int) -> tuple[float, int]:
    """(SNR in dB, noise seed) of noisy copy ``copy`` of a clip: derived from the clip's
    content hash, the copy and the run seed, so it does not depend on clip order."""
    s = int(hashlib.sha256(f"{clip_hash}:{copy}:{seed}".encode()).hexdigest()[:15], 16)
    rng = np.random.default_rng(s)
    return float(rng.uniform(*snr_db)), s


class MelCache:
    """Log-mel spectrograms on disk (``root/<signal key>/<ab>/<key>.npy``); ``root=None``
    computes every time (no cache). Counts ``hits`` and ``misses``."""

    def __init__(self, root: str | Path | None):
        self.root = Path(root) if root else None
        self.hits = 0
        self.misses = 0

    def _path(self, signal: SpeechSignal, key: str) -> Path:
        assert self.root is not None
        return self.root / signal_key(signal)[:16] / key[:2] / f"{key}.npy"

    def log_mels(self, path: str | None, wave: np.ndarray | None, fs: float | None,
                 signal: SpeechSignal, noisy_copies: int = 0,
                 snr_db: tuple[float, float] = (15.0, 30.0), seed: int = 0,
                 source: str = "clip", speed: float = 1.0) -> list[np.ndarray]:
        """The clean clip's log-mel, then ``noisy_copies`` noisy copies' (each cached).
        With ``speed`` other than 1, those of the clip after :func:`speed_perturb` by that
        factor (each noisy copy: the same noise draw as unperturbed, added after it)."""
        h = content_hash(path, wave, fs)
        base = h if speed == 1 else f"{h}-sp{float(speed)!r}"
        keys = [base] + [f"{base}-n{c}-{noise_params(h, c, snr_db, seed)}".replace(" ", "")
                         for c in range(1, noisy_copies + 1)]
        out: list[np.ndarray | None] = [None] * len(keys)
        if self.root is not None:
            for i, k in enumerate(keys):
                p = self._path(signal, hashlib.sha256(k.encode()).hexdigest())
                if p.exists():
                    try:
                        out[i] = np.load(p, allow_pickle=False)
                        self.hits += 1
                    except (OSError, ValueError):
                        out[i] = None  # a damaged entry is recomputed
        if all(o is not None for o in out):
            return out  # type: ignore[return-value]
        if wave is None:
            wave, fs = read_wav(path, signal.channels)
        wave = speed_perturb(wave, float(fs), speed)
        for i, k in enumerate(keys):
            if out[i] is not None:
                continue
            w = wave
            if i > 0:
                snr, s = noise_params(h, i, snr_db, seed)
                w = add_noise(wave, snr, np.random.default_rng(s))
            out[i] = clip_log_mel(w, float(fs), signal, source)
            self.misses += 1
            if self.root is not None:
                p = self._path(signal, hashlib.sha256(k.encode()).hexdigest())
                p.parent.mkdir(parents=True, exist_ok=True)
                buf = io.BytesIO()
                np.save(buf, out[i])
                write_atomic(p, buf.getvalue())  # a concurrent reader never sees half a file
        return out  # type: ignore[return-value]
