"""Speech-emotion clips: corpus loaders (RAVDESS, TESS, SAVEE), splits, model inputs.

Seven emotions, in the seed's order. File names carry the labels:

- RAVDESS ``03-01-05-01-02-01-12.wav``: modality-channel-emotion-intensity-statement-
  repetition-actor; emotion 01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful,
  07 disgust, 08 surprised. "calm" is not one of the seven: ``calm="neutral"`` maps it to
  neutral (what the seed did: its 808 neutral clips are TESS 400 + SAVEE 120 + RAVDESS
  neutral 96 + calm 192), ``calm="drop"`` leaves those clips out. Speaker = actor ("12").
- TESS ``OAF_back_angry.wav``: speaker_word_emotion; emotions angry, disgust, fear, happy,
  neutral, ps (pleasant surprise), sad. Speaker = OAF / YAF.
- SAVEE ``DC_a01.wav`` or ``DC/a01.wav``: a angry, d disgust, f fear, h happy, n neutral,
  sa sad, su surprise. Speaker = DC, JE, JK, KL.

Inputs come from :func:`vitaledge.device.inputs.mel.model_input`, the device's own function.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitaledge.device.inputs.audio import read_wav
from vitaledge.device.inputs.mel import SpeechSignal, model_input

EMOTIONS = ("happy", "sad", "angry", "disgust", "fear", "surprise", "neutral")
CORPORA = ("auto", "ravdess", "tess", "savee")
CALM = ("neutral", "drop")

_RAVDESS = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
_RAVDESS_EMOTION = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
                    "06": "fear", "07": "disgust", "08": "surprise"}
_TESS_EMOTION = {"angry": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy",
                 "neutral": "neutral", "ps": "surprise", "sad": "sad"}
_SAVEE = re.compile(r"^(?:([A-Z]{2})_)?(sa|su|a|d|f|h|n)(\d{2})$")
_SAVEE_EMOTION = {"a": "angry", "d": "disgust", "f": "fear", "h": "happy", "n": "neutral",
                  "sa": "sad", "su": "surprise"}


@dataclass
class Clip:
    """One labelled recording: a file, or an in-memory waveform (synthetic data)."""

    label: str
    speaker: str
    corpus: str
    path: str | None = None
    wave: np.ndarray | None = None
    fs: float | None = None

    @property
    def name(self) -> str:
        return self.path or f"{self.corpus}:{self.speaker}:{self.label}"


def parse_ravdess(path: Path) -> tuple[str, str] | None:
    """(emotion incl. "calm", actor) from a RAVDESS file name, or None."""
    m = _RAVDESS.match(path.stem)
    if not m or m.group(3) not in _RAVDESS_EMOTION:
        return None
    return _RAVDESS_EMOTION[m.group(3)], m.group(7)


def parse_tess(path: Path) -> tuple[str, str] | None:
    """(emotion, speaker) from a TESS file name such as ``OAF_back_angry.wav``."""
    parts = path.stem.split("_")
    if len(parts) < 3 or parts[0].upper() not in ("OAF", "YAF"):
        return None
    emotion = _TESS_EMOTION.get(parts[-1].lower())
    return (emotion, parts[0].upper()) if emotion else None


def parse_savee(path: Path) -> tuple[str, str] | None:
    """(emotion, speaker) from ``DC_a01.wav`` or ``DC/a01.wav`` (speaker from the folder)."""
    m = _SAVEE.match(path.stem)
    if not m:
        return None
    speaker = m.group(1) or path.parent.name.upper()
    if not re.fullmatch(r"[A-Z]{2}", speaker):
        return None
    return _SAVEE_EMOTION[m.group(2)], speaker


PARSERS = {"ravdess": parse_ravdess, "tess": parse_tess, "savee": parse_savee}


def find_clips(root: str | Path, corpus: str = "auto", calm: str = "neutral") -> list[Clip]:
    """Every ``.wav`` under ``root`` with its label and speaker, sorted by path.

    ``corpus="auto"`` recognizes each file by its name. A wav whose name fits no scheme is
    an error naming it, so that a mislabelled corpus is noticed rather than half-loaded.
    """
    if corpus not in CORPORA:
        raise ValueError(f"unknown corpus {corpus!r}; expected one of {CORPORA}")
    if calm not in CALM:
        raise ValueError(f"calm must be one of {CALM}, got {calm!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".wav")
    if not files:
        raise FileNotFoundError(f"{root}: no .wav files")
    names = list(PARSERS) if corpus == "auto" else [corpus]
    clips, unknown = [], []
    for p in files:
        for name in names:
            parsed = PARSERS[name](p)
            if parsed:
                break
        if not parsed:
            unknown.append(p)
            continue
        emotion, speaker = parsed
        if emotion == "calm":
            if calm == "drop":
                continue
            emotion = "neutral"
        clips.append(Clip(emotion, speaker, name, path=str(p)))
    if unknown:
        raise ValueError(f"{len(unknown)} wav file(s) match no {'/'.join(names)} naming "
                         f"scheme, e.g. {unknown[0]}")
    return clips


def synthetic_clips(per_class: int, speakers: int, signal: SpeechSignal,
                    seed: int) -> list[Clip]:
    """In-memory clips from :mod:`vitaledge.firmware_sim.patients.speech`."""
    from vitaledge.firmware_sim.patients.speech import synth_corpus

    seconds = signal.offset_s + signal.duration_s + 0.3
    return [Clip(label, speaker, "synthetic", wave=w, fs=signal.sample_rate)
            for w, label, speaker in synth_corpus(per_class, speakers, signal.sample_rate,
                                                  seconds, seed)]


def _stratified(idx: np.ndarray, y: np.ndarray, frac: float,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split ``idx`` into (rest, held) with about ``frac`` of each class held (>= 1 when
    the class has at least two members)."""
    held = []
    for c in np.unique(y[idx]):
        members = rng.permutation(idx[y[idx] == c])
        k = int(round(frac * len(members)))
        if frac > 0 and len(members) >= 2:
            k = min(max(k, 1), len(members) - 1)
        held.extend(members[:k])
    held = np.sort(np.asarray(held, dtype=np.int64))
    return np.setdiff1d(idx, held), held


def _same_speaker(a: str, b: str) -> bool:
    return a == b or (a.isdigit() and b.isdigit() and int(a) == int(b))


def split_clips(clips: list[Clip], method: str, test_speakers: list[str] | None = None,
                test_fraction: float = 0.2, val_fraction: float = 0.15,
                seed: int = 0) -> dict[str, np.ndarray]:
    """Indices ``fit``, ``val``, ``test`` into ``clips``.

    ``method="actor"``: the test set is every clip of ``test_speakers`` (speaker-
    independent); validation is a stratified ``val_fraction`` of the other speakers' clips.
    ``"random"``: stratified by label, speakers mixed (as the seed's 80/20 split).
    """
    y = np.array([EMOTIONS.index(c.label) for c in clips])
    idx = np.arange(len(clips))
    rng = np.random.default_rng(seed)
    if method == "actor":
        if not test_speakers:
            raise ValueError("actor split: give the test speakers (--test-actors)")
        speakers = sorted({c.speaker for c in clips})
        for s in test_speakers:
            if not any(_same_speaker(s, k) for k in speakers):
                raise ValueError(f"test actor {s!r} not in the data; speakers: "
                                 f"{', '.join(speakers)}")
        is_test = np.array([any(_same_speaker(s, c.speaker) for s in test_speakers)
                            for c in clips])
        if is_test.all():
            raise ValueError("actor split: every clip belongs to a test actor")
        rest, test = idx[~is_test], idx[is_test]
    elif method == "random":
        rest, test = _stratified(idx, y, test_fraction, rng)
    else:
        raise ValueError(f"unknown split {method!r}; expected 'actor' or 'random'")
    fit, val = _stratified(rest, y, val_fraction, rng)
    return {"fit": fit, "val": val, "test": test}


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``x`` plus white Gaussian noise at ``snr_db`` dB below the clip's mean power (the
    seed's noise-injection augmentation)."""
    power = float(np.mean(np.square(x)))
    noise = rng.standard_normal(len(x)) * np.sqrt(power / 10 ** (snr_db / 10))
    return x + noise


def clip_inputs(clips: list[Clip], signal: SpeechSignal, noisy_copies: int = 0,
                snr_db: tuple[float, float] = (15.0, 30.0), seed: int = 0,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs, labels, source clip index) for ``clips``: each clip once as recorded, then
    ``noisy_copies`` times with noise at an SNR drawn uniformly from ``snr_db``. Every input
    is :func:`model_input` of the (noisy) waveform, exactly what the device computes."""
    rng = np.random.default_rng(seed)
    X = np.zeros((len(clips) * (1 + noisy_copies), *signal.input_shape), np.float32)
    y = np.zeros(len(X), np.int64)
    src = np.zeros(len(X), np.int64)
    k = 0
    for i, c in enumerate(clips):
        if c.wave is not None:
            wave, fs = c.wave, float(c.fs)
        else:
            wave, fs = read_wav(c.path, signal.channels)
        for copy in range(1 + noisy_copies):
            w = wave if copy == 0 else add_noise(wave, rng.uniform(*snr_db), rng)
            X[k] = model_input(w, fs, signal, c.name)
            y[k], src[k] = EMOTIONS.index(c.label), i
            k += 1
    return X, y, src


def describe(clips: list[Clip]) -> dict:
    """Counts per label, speaker and corpus (for the run's metrics and printout)."""
    def count(key):
        out: dict[str, int] = {}
        for c in clips:
            out[key(c)] = out.get(key(c), 0) + 1
        return dict(sorted(out.items()))

    return {"n": len(clips), "labels": count(lambda c: c.label),
            "speakers": count(lambda c: c.speaker), "corpora": count(lambda c: c.corpus)}
