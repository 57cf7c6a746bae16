"""Speech-like audio whose pitch, energy and tempo depend on an emotion class.

Voiced "syllables" (harmonic series on a gliding fundamental, each under a Hann envelope)
at a class-dependent rate, over a fixed noise floor. Each class has its own mean pitch,
pitch movement, syllable rate, loudness relative to the noise floor and spectral tilt
(louder is brighter), so a model that reads pitch, tempo and energy from a mel spectrogram
can learn the labels; per-clip jitter and per-speaker pitch offsets keep it from being
trivial. Used for fast tests and demos, never as a stand-in for real results.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Prosody:
    f0: float        # mean fundamental, Hz
    glide: float     # pitch movement across a syllable, fraction of f0 (+ rising)
    rate: float      # syllables per second
    level: float     # voice amplitude relative to the noise floor
    tilt: float      # harmonic k has amplitude k ** -tilt (smaller = brighter)


PROSODY: dict[str, Prosody] = {
    "happy": Prosody(230.0, 0.15, 4.5, 30.0, 1.0),
    "sad": Prosody(120.0, -0.10, 2.0, 6.0, 2.2),
    "angry": Prosody(190.0, 0.0, 5.5, 60.0, 0.6),
    "disgust": Prosody(140.0, -0.25, 2.8, 15.0, 1.4),
    "fear": Prosody(280.0, 0.05, 6.5, 12.0, 1.2),
    "surprise": Prosody(260.0, 0.45, 3.5, 35.0, 0.9),
    "neutral": Prosody(160.0, 0.0, 3.5, 15.0, 1.6),
}

EMOTIONS = tuple(PROSODY)


def synth_clip(emotion: str, fs: float = 16000.0, seconds: float = 3.5,
               rng: np.random.Generator | None = None, speaker_shift: float = 1.0,
               ) -> np.ndarray:
    """One clip (float64, peak about 0.5) of ``emotion``; ``speaker_shift`` scales pitch."""
    if emotion not in PROSODY:
        raise ValueError(f"unknown emotion {emotion!r}; known: {', '.join(EMOTIONS)}")
    rng = rng or np.random.default_rng()
    p = PROSODY[emotion]
    n = int(round(seconds * fs))
    x = rng.standard_normal(n) * 0.01
    rate = p.rate * rng.uniform(0.9, 1.1)
    t = rng.uniform(0.1, 0.4)
    while t < seconds - 0.1:
        dur = min(rng.uniform(0.5, 0.8) / rate, seconds - t)
        m = int(dur * fs)
        start = int(t * fs)
        tt = np.arange(m) / fs
        f0 = p.f0 * speaker_shift * rng.uniform(0.93, 1.07)
        f = f0 * (1.0 + p.glide * (tt / max(dur, 1e-3) - 0.5))
        phase = 2 * np.pi * np.cumsum(f) / fs
        harmonics = np.arange(1, int(min(fs / 2 * 0.9 / f.max(), 40)) + 1)
        voice = sum(k ** -p.tilt * np.sin(k * phase) for k in harmonics)
        amp = 0.01 * p.level * rng.uniform(0.8, 1.25)
        x[start:start + m] += amp * voice * np.hanning(m)
        t += 1.0 / rate * rng.uniform(0.85, 1.15)
    return 0.5 * x / np.max(np.abs(x))


def synth_corpus(per_class: int, speakers: int = 4, fs: float = 16000.0,
                 seconds: float = 3.5, seed: int = 0,
                 emotions: tuple[str, ...] = EMOTIONS) -> list[tuple[np.ndarray, str, str]]:
    """``per_class`` clips of each emotion as (waveform, emotion, speaker id), spread over
    ``speakers`` speakers ("01", "02", ...), each with its own pitch offset."""
    rng = np.random.default_rng(seed)
    shifts = rng.uniform(0.85, 1.15, size=speakers)
    out = []
    for emotion in emotions:
        for i in range(per_class):
            s = i % speakers
            out.append((synth_clip(emotion, fs, seconds, rng, shifts[s]), emotion,
                        f"{s + 1:02d}"))
    return out


RAVDESS_CODES = {"neutral": "01", "happy": "03", "sad": "04", "angry": "05", "fear": "06",
                 "disgust": "07", "surprise": "08"}


def write_ravdess_like(out_dir: str | Path, per_class: int, speakers: int = 4,
                       fs: float = 16000.0, seconds: float = 3.5, seed: int = 0) -> list[Path]:
    """Write :func:`synth_corpus` as 16-bit wavs named and foldered like RAVDESS
    (``Actor_01/03-01-05-01-01-01-01.wav``), so the corpus loaders and the daemon's wav
    replay read them like the real thing."""
    import soundfile as sf

    out_dir = Path(out_dir)
    paths = []
    counts: dict[tuple[str, str], int] = {}
    for wave, emotion, speaker in synth_corpus(per_class, speakers, fs, seconds, seed):
        k = counts[(emotion, speaker)] = counts.get((emotion, speaker), 0) + 1
        stmt, rep = (k - 1) % 2 + 1, (k - 1) // 2 + 1
        d = out_dir / f"Actor_{speaker}"
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"03-01-{RAVDESS_CODES[emotion]}-01-{stmt:02d}-{rep:02d}-{speaker}.wav"
        sf.write(str(p), wave, int(fs), subtype="PCM_16")
        paths.append(p)
    return paths
