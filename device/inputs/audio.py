"""Audio clips for the speech models: read a wav, bring it to the model's rate and length.

One implementation for training and device: ``read_wav`` (soundfile, mono mixdown, checks)
and ``fit_clip`` (resample, skip the leading offset, truncate, z-normalize, zero-pad), in
the order the seed's reference pipeline uses (load with offset and duration, z-score, pad).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vitaledge.device.dsp.normalize import normalize
from vitaledge.device.dsp.resample import resample

CHANNEL_POLICIES = ("mix", "error")


class AudioError(ValueError):
    """A clip that cannot be used: unreadable, wrong shape or rate, NaN, too short."""


def check_waveform(x: np.ndarray, source: str) -> np.ndarray:
    """``x`` as a finite 1-D float64 array; ``source`` names it in the error message."""
    x = np.asarray(x)
    if x.ndim != 1:
        raise AudioError(f"{source}: expected a mono 1-D waveform, got shape {x.shape}")
    if x.size == 0:
        raise AudioError(f"{source}: empty waveform")
    x = x.astype(np.float64, copy=False)
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise AudioError(f"{source}: {bad.size} non-finite samples (NaN/inf), first at "
                         f"sample {int(bad[0])}")
    return x


def mixdown(x: np.ndarray, source: str, channels: str = "mix") -> np.ndarray:
    """Mono from a (samples,) or (samples, channels) array: the mean of the channels, or an
    error when ``channels="error"`` and there is more than one."""
    if channels not in CHANNEL_POLICIES:
        raise ValueError(f"channels must be one of {CHANNEL_POLICIES}, got {channels!r}")
    x = np.asarray(x)
    if x.ndim == 2:
        if x.shape[1] > 1 and channels == "error":
            raise AudioError(f"{source}: {x.shape[1]} channels; a mono recording is required")
        x = x.mean(axis=1)
    return check_waveform(x, source)


def read_wav(path: str | Path, channels: str = "mix") -> tuple[np.ndarray, float]:
    """(mono waveform as float64 in [-1, 1], sample rate) of an audio file.

    Multi-channel files are mixed down to their mean (``channels="mix"``) or refused
    (``"error"``); unreadable files, empty files and NaN samples are errors naming the file.
    """
    import soundfile as sf

    path = Path(path)
    cut = wav_truncated(path)
    if cut:
        raise AudioError(f"{path}: {cut}")
    try:
        data, fs = sf.read(str(path), dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(f"{path}: cannot read audio: {exc}") from exc
    return mixdown(data, str(path), channels), float(fs)


def wav_truncated(path: Path) -> str | None:
    """Why a RIFF/WAVE file is cut short (its ``data`` chunk declares more bytes than the
    file holds), else None. libsndfile reads such a file without a word, as much as is
    there; a size of 0 or 0xFFFFFFFF (a writer that could not seek back) is not checked."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            size = path.stat().st_size
            pos = 12
            while pos + 8 <= size:
                fh.seek(pos)
                hdr = fh.read(8)
                n = int.from_bytes(hdr[4:8], "little")
                if hdr[:4] == b"data":
                    have = size - pos - 8
                    if 0 < n < 0xFFFFFFFF and have < n:
                        return (f"truncated WAV: its data chunk declares {n:,} bytes, the "
                                f"file holds {have:,}")
                    return None
                pos += 8 + n + (n & 1)
    except OSError:
        return None  # soundfile's own read names it
    return None


def check_rate(fs: float, min_fs: float, source: str) -> float:
    """``fs`` if it is a usable sample rate of at least ``min_fs`` Hz, else an error."""
    if not np.isfinite(fs) or fs <= 0:
        raise AudioError(f"{source}: invalid sample rate {fs!r}")
    if fs < min_fs:
        raise AudioError(f"{source}: sample rate {fs:g} Hz is below the {min_fs:g} Hz this "
                         "model needs (its mel bands reach half that frequency)")
    return float(fs)


def fit_clip(x: np.ndarray, fs: float, sample_rate: float, offset_s: float,
             duration_s: float, min_duration_s: float, normalization: str = "zscore",
             source: str = "waveform") -> np.ndarray:
    """A clip at ``sample_rate`` of exactly ``duration_s`` seconds, float64.

    Resample, drop the first ``offset_s`` seconds, truncate to ``duration_s``, normalize
    (z-score over the kept audio), then zero-pad at the end. A clip with less than
    ``min_duration_s`` seconds left after the offset is refused as too short.
    """
    x = check_waveform(x, source)
    y = resample(x, fs, sample_rate)
    start = int(round(offset_s * sample_rate))
    n = int(round(duration_s * sample_rate))
    y = y[start:start + n]
    have = len(y) / sample_rate
    if have < min_duration_s:
        raise AudioError(f"{source}: too short: {len(x) / fs:.3f} s; needs at least "
                         f"{offset_s + min_duration_s:g} s ({offset_s:g} s offset + "
                         f"{min_duration_s:g} s)")
    out = np.zeros(n, dtype=np.float64)
    out[:len(y)] = normalize(y, normalization)
    return out
