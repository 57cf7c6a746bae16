"""Speech-emotion clips: corpus loaders (RAVDESS, TESS, SAVEE), splits, model inputs.

Seven emotions, in the seed's order. File names carry the labels:

- RAVDESS ``03-01-05-01-02-01-12.wav``: modality-channel-emotion-intensity-statement-
  repetition-actor; emotion 01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful,
  07 disgust, 08 surprised. "calm" is not one of the seven: ``calm="neutral"`` maps it to
  neutral (what the seed did: its 808 neutral clips are TESS 400 + SAVEE 120 + RAVDESS
  neutral 96 + calm 192), ``calm="drop"`` leaves those clips out, ``calm="class"`` keeps
  it as an eighth class (``LABELS_WITH_CALM``). Speaker = actor ("12").
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

from vitaledge.device.inputs.mel import SpeechSignal, images_from_log_mel, mel_stats

from .speech_cache import MelCache, add_noise

__all__ = ["add_noise"]  # re-exported: the seed's noise injection lives with the cache

EMOTIONS = ("happy", "sad", "angry", "disgust", "fear", "surprise", "neutral")
CORPORA = ("auto", "ravdess", "tess", "savee")
CALM = ("neutral", "drop", "class")
#: The labels with RAVDESS calm as its own class (``calm="class"``): the seven, then calm.
LABELS_WITH_CALM = EMOTIONS + ("calm",)


def labels_for(calm: str) -> list[str]:
    """The model's labels (output order) for a calm treatment."""
    return list(LABELS_WITH_CALM if calm == "class" else EMOTIONS)

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
    folders = [p for p in files if not p.is_file()]
    if folders:  # read as a clip, it was an IsADirectoryError traceback
        raise ValueError(f"{folders[0]}: a directory (or not a regular file), not a .wav "
                         "file")
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
        if emotion == "calm" and calm != "class":
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


def same_speaker(a: str, b: str) -> bool:
    """Whether speaker (or subject) names ``a`` and ``b`` are one: equal, or both numbers of
    the same value ("4" is "04")."""
    return a == b or (a.isdigit() and b.isdigit() and int(a) == int(b))


def split_clips(clips: list[Clip], method: str, test_speakers: list[str] | None = None,
                test_fraction: float = 0.2, val_fraction: float = 0.15,
                seed: int = 0) -> dict[str, np.ndarray]:
    """Indices ``fit``, ``val``, ``test`` into ``clips``.

    ``method="actor"``: the test set is every clip of ``test_speakers`` (speaker-
    independent); validation is a stratified ``val_fraction`` of the other speakers' clips.
    ``"random"``: stratified by label, speakers mixed (as the seed's 80/20 split).
    """
    y = np.array([LABELS_WITH_CALM.index(c.label) for c in clips])
    idx = np.arange(len(clips))
    rng = np.random.default_rng(seed)
    if method == "actor":
        if not test_speakers:
            raise ValueError("actor split: give the test speakers (--test-actors)")
        speakers = sorted({c.speaker for c in clips})
        for s in test_speakers:
            if not any(same_speaker(s, k) for k in speakers):
                raise ValueError(f"test actor {s!r} not in the data; speakers: "
                                 f"{', '.join(speakers)}")
        is_test = np.array([any(same_speaker(s, c.speaker) for s in test_speakers)
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


def speaker_gender(clip: Clip) -> str:
    """"male", "female" or "unknown": RAVDESS (and the numbered synthetic speakers) odd
    actors are male, even female; TESS speakers are female, SAVEE speakers male."""
    if clip.corpus in ("ravdess", "synthetic") and clip.speaker.isdigit():
        return "male" if int(clip.speaker) % 2 else "female"
    return {"tess": "female", "savee": "male"}.get(clip.corpus, "unknown")


def speaker_genders(clips: list[Clip]) -> dict[str, str]:
    """{speaker: gender} over ``clips``."""
    return {c.speaker: speaker_gender(c) for c in clips}


def speaker_folds(clips: list[Clip], k: int, seed: int = 0) -> list[list[str]]:
    """``k`` disjoint lists of test speakers covering every speaker once, balanced by
    gender: speakers of each gender (shuffled with ``seed``) go one by one to the fold with
    the fewest of that gender, then the fewest speakers, so fold sizes differ by at most
    one and, on a gender-balanced corpus, each fold's men and women by at most one."""
    genders = speaker_genders(clips)
    if k < 2:
        raise ValueError(f"need at least 2 folds, got {k}")
    if k > len(genders):
        raise ValueError(f"{k} folds but only {len(genders)} speakers")
    rng = np.random.default_rng(seed)
    folds: list[list[str]] = [[] for _ in range(k)]
    for g in sorted(set(genders.values())):
        group = sorted(s for s, gg in genders.items() if gg == g)
        for s in rng.permutation(group):
            f = min(range(k), key=lambda i: (sum(genders[x] == g for x in folds[i]),
                                             len(folds[i]), i))
            folds[f].append(str(s))
    return [sorted(f) for f in folds]


def val_speakers(clips: list[Clip], candidates: list[str], fraction: float,
                 seed: int = 0) -> list[str]:
    """About ``fraction`` of ``candidates`` (at least one, never all) as validation
    speakers, alternating genders so validation is as gender-balanced as they allow."""
    if len(candidates) < 2:
        raise ValueError(f"validation is carved by speaker: need at least 2 training "
                         f"speakers, have {len(candidates)}")
    genders = speaker_genders(clips)
    n = min(max(1, int(round(fraction * len(candidates)))), len(candidates) - 1)
    rng = np.random.default_rng(seed)
    pools = {g: [str(s) for s in rng.permutation(sorted(c for c in candidates
                                                        if genders[c] == g))]
             for g in sorted({genders[c] for c in candidates})}
    order = sorted(pools, key=lambda g: -len(pools[g]))
    chosen: list[str] = []
    while len(chosen) < n:
        for g in order:
            if pools[g] and len(chosen) < n:
                chosen.append(pools[g].pop())
    return sorted(chosen)


def speaker_split(clips: list[Clip], test: list[str], val_fraction: float,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """``fit``/``val``/``test`` indices with every split by speaker: ``test`` speakers'
    clips, validation speakers carved from the rest (:func:`val_speakers`), the others."""
    speakers = sorted({c.speaker for c in clips})
    rest = [s for s in speakers if s not in set(test)]
    val = val_speakers(clips, rest, val_fraction, seed)
    where = np.array(["test" if c.speaker in set(test) else
                      "val" if c.speaker in set(val) else "fit" for c in clips])
    return {k: np.flatnonzero(where == k) for k in ("fit", "val", "test")}


def clip_inputs(clips: list[Clip], signal: SpeechSignal, noisy_copies: int = 0,
                snr_db: tuple[float, float] = (15.0, 30.0), seed: int = 0,
                cache: MelCache | None = None, speed: float = 1.0,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs, labels, source clip index) for ``clips``: each clip once as recorded, then
    ``noisy_copies`` times with noise at an SNR drawn uniformly from ``snr_db`` (per clip
    and copy, from the clip's content and ``seed``). Every input is the device's
    :func:`~vitaledge.device.inputs.mel.model_input` of the (noisy) waveform; the log-mel
    spectrograms come from ``cache`` when given. With ``feature_norm="speaker"`` each
    speaker's statistics are those of their clean clips among ``clips``. A ``speed`` other
    than 1 (training only) first plays every waveform that many times as fast
    (:func:`.speech_cache.speed_perturb`); the speaker statistics are then those of the
    perturbed clean clips."""
    cache = cache or MelCache(None)
    per = 1 + noisy_copies
    mels = [cache.log_mels(c.path, c.wave, c.fs, signal, noisy_copies, snr_db, seed, c.name,
                           speed) for c in clips]
    stats = speaker_stats(clips, [m[0] for m in mels]) \
        if signal.feature_norm == "speaker" else {}
    X = np.zeros((len(clips) * per, *signal.input_shape), np.float32)
    y = np.zeros(len(X), np.int64)
    src = np.zeros(len(X), np.int64)
    for i, (c, ms) in enumerate(zip(clips, mels, strict=True)):
        for copy, m in enumerate(ms):
            k = i * per + copy
            X[k] = images_from_log_mel(m, signal, stats.get(c.speaker))
            y[k], src[k] = LABELS_WITH_CALM.index(c.label), i
    return X, y, src


def speaker_stats(clips: list[Clip], log_mels: list[np.ndarray]) -> dict[str, tuple]:
    """{speaker: (mean, sd) per mel band} over each speaker's clean log-mel spectrograms."""
    by: dict[str, list[np.ndarray]] = {}
    for c, m in zip(clips, log_mels, strict=True):
        by.setdefault(c.speaker, []).append(m)
    return {s: mel_stats(ms) for s, ms in by.items()}


def describe(clips: list[Clip]) -> dict:
    """Counts per label, speaker and corpus (for the run's metrics and printout)."""
    def count(key):
        out: dict[str, int] = {}
        for c in clips:
            out[key(c)] = out.get(key(c), 0) + 1
        return dict(sorted(out.items()))

    return {"n": len(clips), "labels": count(lambda c: c.label),
            "speakers": count(lambda c: c.speaker), "corpora": count(lambda c: c.corpus)}
