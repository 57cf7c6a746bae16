"""Emotion data sets -> labelled ECG trials (and the synthetic multimodal set).

Layouts relied on (from the data sets' documentation and readers such as torcheeg's):

* AMIGOS, ``Data_Preprocessed_Pxx.mat`` (one per participant, xx = 01..40): a cell
  ``joined_data`` with one matrix per trial, samples x 17 at 128 Hz (14 EEG channels, then
  ECG right arm, ECG left arm, GSR: 1-based columns 15, 16, 17), and a cell
  ``labels_selfassessment`` with one 1 x 12 row per trial, arousal and valence first
  (then dominance, liking, familiarity and seven basic emotions), on a 1-9 scale.
  Participants 9, 12, 21, 22, 23, 24 and 33 are excluded as in the seed. Trials that are
  empty or hold NaN ECG/labels (several do in the release) are skipped and counted.
* DREAMER, ``DREAMER.mat``: a struct ``DREAMER`` with ``ECG_SamplingRate`` (256) and a cell
  ``Data``, one struct per subject with ``ECG.stimuli`` (cell, one samples x 2 matrix per
  film clip; the first lead is used), ``ECG.baseline`` and ``ScoreValence`` /
  ``ScoreArousal`` (1-5 scale, so the default threshold is 3).
* WESAD, ``SX/SX.pkl`` (a Python 2 pickle): ``signal.chest.ECG`` at 700 Hz and ``label``
  (one condition code per sample: 1 baseline, 2 stress, 3 amusement, 4 meditation). Each
  contiguous run of a condition is a trial. WESAD has no per-trial valence/arousal in the
  pickle; the conditions are mapped to quadrants by convention (:data:`WESAD_QUADRANT`).
  Pickle runs code when loaded, so these files are read only when the caller passes
  ``trust_pickle=True`` (``--trust-pickle``).

Quadrant labels: high valence (arousal) when the rating is above the threshold; class
index = 2 * high_valence + high_arousal, names in :data:`QUADRANTS`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitaledge.device.inputs import emotion_ecg
from vitaledge.device.inputs import multimodal as mm
from vitaledge.firmware_sim.patients import emotion as se

QUADRANTS = se.QUADRANTS
AMIGOS_EXCLUDED = (9, 12, 21, 22, 23, 24, 33)
AMIGOS_FS = 128.0
AMIGOS_ECG_COL = 14  # 0-based: ECG right arm (column 15 of 17)
AMIGOS_GSR_COL = 16
#: WESAD condition code -> quadrant (baseline taken as calm/low valence, by convention).
WESAD_QUADRANT = {1: "LV-LA", 2: "LV-HA", 3: "HV-HA", 4: "HV-LA"}


@dataclass
class Trial:
    """One labelled ECG recording of one subject (raw, at its own rate)."""

    subject: str
    trial: str
    ecg: np.ndarray
    fs: float
    label: int
    gsr: np.ndarray | None = None


@dataclass
class TrialSet:
    trials: list[Trial]
    labels: list[str]
    skipped: dict[str, int] = field(default_factory=dict)

    def describe(self) -> dict:
        counts = np.bincount([t.label for t in self.trials], minlength=len(self.labels))
        return {"trials": len(self.trials), "subjects": len({t.subject for t in self.trials}),
                "trials_per_class": dict(zip(self.labels, counts.tolist(), strict=True)),
                "skipped": dict(self.skipped)}


def quadrant(valence: float, arousal: float, threshold: float) -> int:
    """Class index of a (valence, arousal) rating: 2 * (valence > t) + (arousal > t)."""
    return 2 * int(valence > threshold) + int(arousal > threshold)


def _loadmat(path: Path) -> dict:
    from scipy.io import loadmat

    try:
        return loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except Exception as exc:  # noqa: BLE001 - scipy raises several types for bad files
        raise ValueError(f"{path}: not a readable MATLAB file: {exc}") from exc


def _cells(value, path: Path, name: str) -> list:
    if isinstance(value, np.ndarray) and value.dtype == object:
        return list(value.ravel())
    if isinstance(value, np.ndarray) and value.dtype.kind in "fiu":
        return [value]  # a one-element cell, squeezed by loadmat to its content
    raise ValueError(f"{path}: field {name!r} should be a cell array, got "
                     f"{type(value).__name__} {getattr(value, 'shape', '')}")


def load_amigos(data_dir: str | Path, threshold: float = 5.0,
                exclude: tuple[int, ...] = AMIGOS_EXCLUDED, with_gsr: bool = False) -> TrialSet:
    """Trials of every ``Data_Preprocessed_Pxx.mat`` in ``data_dir`` (ECG right arm)."""
    files = sorted(Path(data_dir).glob("Data_Preprocessed_P*.mat"))
    if not files:
        raise FileNotFoundError(f"{data_dir}: no Data_Preprocessed_Pxx.mat files (AMIGOS)")
    trials, skipped = [], {"excluded_participant": 0, "empty": 0, "nan": 0}
    for f in files:
        m = re.search(r"P(\d+)\.mat$", f.name)
        if not m:
            raise ValueError(f"{f}: cannot read the participant number from the file name")
        pid = int(m.group(1))
        if pid in exclude:
            skipped["excluded_participant"] += 1
            continue
        d = _loadmat(f)
        for key in ("joined_data", "labels_selfassessment"):
            if key not in d:
                raise ValueError(f"{f}: missing variable {key!r} (AMIGOS preprocessed layout)")
        data = _cells(d["joined_data"], f, "joined_data")
        labels = _cells(d["labels_selfassessment"], f, "labels_selfassessment")
        if len(data) != len(labels):
            raise ValueError(f"{f}: {len(data)} trials in joined_data but {len(labels)} in "
                             "labels_selfassessment")
        for i, (x, lab) in enumerate(zip(data, labels, strict=True)):
            x = np.asarray(x, dtype=np.float64)
            lab = np.atleast_1d(np.asarray(lab, dtype=np.float64))
            if x.size == 0 or lab.size < 2:
                skipped["empty"] += 1
                continue
            if x.ndim != 2 or x.shape[1] != 17:
                raise ValueError(f"{f}: joined_data trial {i + 1} has shape {x.shape}, "
                                 "expected samples x 17")
            ecg = x[:, AMIGOS_ECG_COL]
            if not np.all(np.isfinite(ecg)) or not np.all(np.isfinite(lab[:2])):
                skipped["nan"] += 1
                continue
            arousal, valence = float(lab[0]), float(lab[1])
            trials.append(Trial(f"P{pid:02d}", f"P{pid:02d}-{i + 1:02d}", ecg, AMIGOS_FS,
                                quadrant(valence, arousal, threshold),
                                x[:, AMIGOS_GSR_COL] if with_gsr else None))
    return TrialSet(trials, list(QUADRANTS), skipped)


def _field(obj, name: str, path: Path, where: str):
    if not hasattr(obj, name):
        raise ValueError(f"{path}: {where} has no field {name!r} (DREAMER layout)")
    return getattr(obj, name)


def load_dreamer(path: str | Path, threshold: float = 3.0) -> TrialSet:
    """Stimulus trials of ``DREAMER.mat`` (first ECG lead, 256 Hz)."""
    path = Path(path)
    if path.is_dir():
        path = path / "DREAMER.mat"
    if not path.exists():
        raise FileNotFoundError(f"{path}: DREAMER.mat not found")
    d = _loadmat(path)
    if "DREAMER" not in d:
        raise ValueError(f"{path}: missing variable 'DREAMER'")
    root = d["DREAMER"]
    try:
        fs = float(_field(root, "ECG_SamplingRate", path, "DREAMER"))
    except (TypeError, ValueError) as exc:  # "could not convert string to float: 'abc'"
        raise ValueError(f"{path}: DREAMER.ECG_SamplingRate is not a number: {exc}") from exc
    subjects = _cells(_field(root, "Data", path, "DREAMER"), path, "DREAMER.Data")
    trials, skipped = [], {"nan": 0, "empty": 0}
    for s, subj in enumerate(subjects, start=1):
        ecg = _field(subj, "ECG", path, f"Data{{{s}}}")
        stimuli = _cells(_field(ecg, "stimuli", path, f"Data{{{s}}}.ECG"), path,
                         f"Data{{{s}}}.ECG.stimuli")
        val = np.atleast_1d(np.asarray(_field(subj, "ScoreValence", path, f"Data{{{s}}}"), float))
        aro = np.atleast_1d(np.asarray(_field(subj, "ScoreArousal", path, f"Data{{{s}}}"), float))
        if not len(val) == len(aro) == len(stimuli):
            raise ValueError(f"{path}: Data{{{s}}} has {len(stimuli)} ECG stimuli but "
                             f"{len(val)} valence and {len(aro)} arousal scores")
        for j, x in enumerate(stimuli):
            x = np.asarray(x, dtype=np.float64)
            if x.size == 0:
                skipped["empty"] += 1
                continue
            lead = x[:, 0] if x.ndim == 2 else x
            if not (np.all(np.isfinite(lead)) and np.isfinite(val[j]) and np.isfinite(aro[j])):
                skipped["nan"] += 1  # a NaN rating is no label (it read as "low")
                continue
            trials.append(Trial(f"S{s:02d}", f"S{s:02d}-{j + 1:02d}", lead, fs,
                                quadrant(val[j], aro[j], threshold)))
    return TrialSet(trials, list(QUADRANTS), skipped)


def load_wesad(data_dir: str | Path, trust_pickle: bool = False) -> TrialSet:
    """Condition runs of every ``SX/SX.pkl`` (chest ECG, 700 Hz) under ``data_dir``.

    Refuses unless ``trust_pickle``: unpickling a file runs whatever code it contains."""
    if not trust_pickle:
        raise ValueError("WESAD .pkl files are Python pickles, which run code when loaded; "
                         "pass --trust-pickle if you trust these files")
    import pickle  # only here, behind the explicit opt-in

    files = sorted(Path(data_dir).glob("S*/S*.pkl")) or sorted(Path(data_dir).glob("S*.pkl"))
    if not files:
        raise FileNotFoundError(f"{data_dir}: no SX/SX.pkl files (WESAD)")
    trials = []
    for f in files:
        with open(f, "rb") as fh:
            try:
                d = pickle.load(fh, encoding="latin1")
            except Exception as exc:  # noqa: BLE001
                raise ValueError(f"{f}: not a readable pickle: {exc}") from exc
        try:
            ecg = np.asarray(d["signal"]["chest"]["ECG"], dtype=np.float64).reshape(-1)
            label = np.asarray(d["label"]).reshape(-1)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{f}: expected keys signal/chest/ECG and label: {exc}") from exc
        if len(ecg) != len(label):
            raise ValueError(f"{f}: signal.chest.ECG has {len(ecg)} samples, label {len(label)}")
        if not np.issubdtype(label.dtype, np.number) or not np.isfinite(label).all():
            raise ValueError(f"{f}: label holds values that are not finite numbers (a "
                             "protocol code per sample)")
        subject = f.stem
        edges = np.flatnonzero(np.diff(label)) + 1
        for k, (a, b) in enumerate(zip(np.r_[0, edges], np.r_[edges, len(label)], strict=True)):
            code = int(label[a])
            if code in WESAD_QUADRANT:
                trials.append(Trial(subject, f"{subject}-{k:02d}-c{code}", ecg[a:b], 700.0,
                                    QUADRANTS.index(WESAD_QUADRANT[code])))
    return TrialSet(trials, list(QUADRANTS), {})


def synth_quadrant_trials(n_subjects: int = 12, trials_per_class: int = 2,
                          seconds: float = 75.0, fs: float = 128.0, seed: int = 0) -> TrialSet:
    """Synthetic trials whose HR/HRV (arousal) and T wave (valence) follow the quadrant."""
    trials = []
    for s in range(n_subjects):
        subj = se.draw_subject(int(np.random.SeedSequence([seed, s]).generate_state(1)[0]))
        for c, q in enumerate(QUADRANTS):
            for k in range(trials_per_class):
                tseed = int(np.random.SeedSequence([seed, s, c, k]).generate_state(1)[0])
                ecg = se.emotion_ecg(seconds, fs, se.QUADRANT_PROFILES[q], subj, tseed)
                trials.append(Trial(f"s{s:02d}", f"s{s:02d}-{q}-{k}", ecg, fs, c))
    return TrialSet(trials, list(QUADRANTS), {})


@dataclass
class Segments:
    """Model inputs of a trial set: X (n, 48, 128, 1), labels, and which trial/subject."""

    X: np.ndarray
    y: np.ndarray
    trial: np.ndarray
    subject: np.ndarray


def ecg_segments(ts: TrialSet, signal: dict) -> Segments:
    """Every trial's segments (every ``hop_s``), through the device's preprocessing."""
    X, y, tr, su = [], [], [], []
    for i, t in enumerate(ts.trials):
        try:
            segs = emotion_ecg.segments(t.ecg, t.fs, signal)
        except ValueError as exc:
            raise ValueError(f"trial {t.trial}: {exc}") from exc
        X.append(segs)
        y += [t.label] * len(segs)
        tr += [i] * len(segs)
        su += [t.subject] * len(segs)
    if not y:
        raise ValueError(f"none of the {len(ts.trials)} trials is long enough for one model "
                         "input")
    return Segments(np.concatenate(X).astype(np.float32), np.asarray(y, np.int64),
                    np.asarray(tr, np.int64), np.asarray(su))


@dataclass
class MultimodalSet:
    """Raw multimodal windows: ECG and GSR (n, window samples) at ``fs``, faces, labels,
    subjects, and each subject's calibration statistics."""

    ecg: np.ndarray
    gsr: np.ndarray
    faces: np.ndarray
    y: np.ndarray
    subject: np.ndarray
    stats: dict[str, dict]
    fs: float
    labels: list[str]


def synth_multimodal(signal: dict, n_subjects: int = 10, per_class: int = 12,
                     seed: int = 0) -> MultimodalSet:
    """Synthetic multimodal windows: per subject a resting calibration recording and
    ``per_class`` windows of each emotion with a face drawn for each."""
    fs, n = signal["fs"], int(round(signal["window_s"] * signal["fs"]))
    ecg, gsr, faces, y, subj, stats = [], [], [], [], [], {}
    for s in range(n_subjects):
        sid = f"s{s:02d}"
        subject = se.draw_subject(int(np.random.SeedSequence([seed, s]).generate_state(1)[0]))
        rest = se.EMOTION_PROFILES["neutral"]
        cal_seed = int(np.random.SeedSequence([seed, s, 99]).generate_state(1)[0])
        stats[sid] = mm.subject_stats(
            se.emotion_ecg(signal["calib_s"], fs, rest, subject, cal_seed),
            se.emotion_gsr(signal["calib_s"], fs, rest, subject, cal_seed), fs, signal)
        for c, emo in enumerate(se.EMOTIONS):
            for k in range(per_class):
                ws = int(np.random.SeedSequence([seed, s, c, k]).generate_state(1)[0])
                prof = se.EMOTION_PROFILES[emo]
                ecg.append(se.emotion_ecg(signal["window_s"], fs, prof, subject, ws)[:n])
                gsr.append(se.emotion_gsr(signal["window_s"], fs, prof, subject, ws + 1)[:n])
                faces.append(se.synth_face(emo, ws + 2))
                y.append(c)
                subj.append(sid)
    return MultimodalSet(np.stack(ecg), np.stack(gsr), np.stack(faces), np.asarray(y, np.int64),
                         np.asarray(subj), stats, float(fs), list(se.EMOTIONS))
