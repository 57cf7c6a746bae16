"""``vitaledge evaluate`` for emotion runs: a run's held-out inputs (``data.npz``), or other
recordings read by the task's entry of :data:`EMOTION_DATA`.

A new emotion task is one entry there: the ``evaluate`` options its runs read and the
function that makes model inputs from ``--data`` (or, for a task with no loader yet, why
``--data`` is refused). The CLI takes the options it accepts from the entry (beat runs':
:data:`.evaluate.BEAT_EVALUATE_OPTIONS`), and a test holds that every manifest task but
``beat`` has one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitaledge.device.eval.metrics import classification_metrics, format_confusion, format_report
from vitaledge.device.io.heldout import read_npz

from .evaluate import with_uar
from .predictor import resolve_predictor
from .run_files import check_heldout, file_task


@dataclass(frozen=True)
class Ask:
    """What ``evaluate`` was asked besides the model: ``--data`` and the options an emotion
    task may read (``actors`` already split; ``cache`` None for no cache)."""

    data: list[str]
    actors: list[str] | None = None
    calm: str | None = None
    corpus: str = "auto"
    cache: str | None = None


#: ``read(cfg, labels, ask, signal) -> (inputs by name, class indices, source)``: the run's
#: config.json, its labels, the request and the signal spec to make inputs with (the
#: artifact's manifest's, else the run's).
Reader = Callable[[dict, list[str], Ask, dict], tuple[dict, np.ndarray, dict]]


@dataclass(frozen=True)
class EmotionData:
    """How ``evaluate`` scores an emotion task's runs on other recordings: the options
    (besides ``--data``) its runs read, and ``read``; None, with ``why_none``, when the
    task has no loader and only the run's held-out inputs can be scored."""

    options: tuple[str, ...]
    read: Reader | None
    why_none: str = ""


def check_input_shapes(X: dict, takes: dict[str, tuple], where: str) -> None:
    """Each model input ``takes`` (name -> shape of one input) present in ``X`` with that
    shape; else a ValueError naming it (Keras raised 24 lines of its own traceback)."""
    for name, shape in takes.items():
        if name not in X:
            raise ValueError(f"{where}: no {name} inputs; the model takes {name}")
        got = tuple(X[name].shape[1:])
        if got != tuple(shape):
            raise ValueError(f"{where}: {name} inputs are {list(got)}, the model takes "
                             f"{list(shape)}")


def pick_speakers(wanted: list[str], have: list[str], where: str,
                  noun: str = "speakers") -> set[str]:
    """The names in ``have`` (the speakers of a corpus, the subjects of a data set) that
    ``wanted`` (``--actors``) names; an error naming those of ``wanted`` not there."""
    from .speech_data import same_speaker

    missing = [a for a in wanted if not any(same_speaker(a, k) for k in have)]
    if missing:
        raise ValueError(f"actors {missing} not in {where}; {noun} there: {', '.join(have)}")
    return {k for k in have if any(same_speaker(a, k) for a in wanted)}


def read_speech(cfg: dict, labels: list[str], ask: Ask, signal: dict):
    """Speech corpus directories: their clips with the model's labels (of ``actors`` only,
    when given), RAVDESS calm treated as in training unless ``calm`` says otherwise."""
    from vitaledge.device.inputs.mel import SpeechSignal

    from .speech_cache import MelCache
    from .speech_data import clip_inputs, describe, find_clips, labels_for

    calm = ask.calm or cfg.get("calm", "neutral")
    if labels_for(calm) != labels:
        if ask.calm:  # was replaced without a word: calm scored as neutral, or the reverse
            raise ValueError(f"--calm {ask.calm}: this model's classes are {labels}, which "
                             f"--calm {ask.calm} does not give; leave --calm out")
        calm = "neutral" if len(labels) == 7 else "class"
    clips = [c for d in ask.data for c in find_clips(d, ask.corpus, calm)]
    if ask.actors:
        keep = pick_speakers(ask.actors, sorted({c.speaker for c in clips}),
                             ", ".join(ask.data))
        clips = [c for c in clips if c.speaker in keep]
    clips = [c for c in clips if c.label in labels]
    if not clips:
        raise ValueError(f"no clips with the model's labels in {', '.join(ask.data)}")
    # an artifact's inputs are made from its manifest's signal spec, as on the device
    mel, y, _ = clip_inputs(clips, SpeechSignal.from_dict(signal), cache=MelCache(ask.cache))
    source = {"data": list(ask.data), "actors": ask.actors, "calm": calm,
              "clips": describe(clips)}
    return {"mel": mel}, y, source


def read_ecg(cfg: dict, labels: list[str], ask: Ask, signal: dict):
    """The run's ECG data set, its file or directory: every segment (of the subjects in
    ``actors`` when given). Runs on synthetic trials have no data directory."""
    from .emotion_data import TrialSet, ecg_segments
    from .emotion_datasets import ECG_DATASETS, load_trials

    tr = cfg.get("training", {})
    dataset = tr.get("dataset", "synth")
    if dataset in ECG_DATASETS and not ECG_DATASETS[dataset].needs_data:
        raise ValueError(f"emotion-ecg: this run was trained on synthetic trials (dataset "
                         f"{dataset}), which have no data directory; evaluate it without "
                         "--data (its held-out inputs)")
    if len(ask.data) != 1:
        raise ValueError("emotion-ecg: give one --data (the data set's file or directory)")
    ts = load_trials(dataset, ask.data[0], tr.get("threshold"),
                     bool(tr.get("trust_pickle", False)))
    if ask.actors:
        keep = pick_speakers(ask.actors, sorted({t.subject for t in ts.trials}), ask.data[0],
                             "subjects")
        ts = TrialSet([t for t in ts.trials if t.subject in keep], ts.labels, ts.skipped)
    seg = ecg_segments(ts, signal)
    source = {"data": ask.data[0], "dataset": dataset, "actors": ask.actors,
              "subjects": sorted({t.subject for t in ts.trials}),
              "set": "every segment" + (" of these subjects" if ask.actors else "")}
    return {"ecg": seg.X}, seg.y.astype(np.int64), source


#: Each emotion task: the ``evaluate`` options its runs read, and how ``--data`` is read.
EMOTION_DATA: dict[str, EmotionData] = {
    "emotion-speech": EmotionData(("--calm", "--corpus", "--actors", "--cache", "--no-cache"),
                                  read_speech),
    "emotion-ecg": EmotionData(("--actors",), read_ecg),
    "emotion-multimodal": EmotionData((), None, "trained on synthetic windows (no multimodal "
                                                "data set has a loader yet)"),
}


def evaluate_emotion(model_path: Path, ask: Ask | None = None) -> tuple[dict, str]:
    """Score an emotion model (Keras, or a converted artifact through the device runtime)
    on its run's held-out inputs (``data.npz``) or, with ``ask.data``, on other recordings,
    read by the task's :data:`EMOTION_DATA` entry. Metrics as training writes them, with
    UAR."""
    model = resolve_predictor(Path(model_path))
    run_dir, manifest = model.run_dir, model.manifest
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{cfg_path}: missing; the model's run directory is needed")
    task = file_task(cfg_path)
    if task not in EMOTION_DATA or (manifest is not None and manifest.task != task):
        raise ValueError(f"{cfg_path}: its task is {task}, "
                         + (f"the model's manifest says {manifest.task}: convert the run again"
                            if manifest is not None and manifest.task != task
                            else "not an emotion task"))
    cfg = json.loads(cfg_path.read_text())
    labels, signal = cfg.get("labels"), cfg.get("signal")
    if not (isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels)):
        raise ValueError(f"{cfg_path}: labels must be the list of the run's class names, got "
                         f"{json.dumps(labels)[:40]}")
    if not isinstance(signal, dict):  # a config.json edited by hand
        raise ValueError(f"{cfg_path}: signal must be the run's signal spec (an object), got "
                         f"{json.dumps(signal)[:40]}")
    if manifest is not None and list(manifest.labels) != labels:  # the device names the
        # classes from the manifest: a report in the run's order would be another model's
        raise ValueError(f"{model_path}: its manifest's labels {list(manifest.labels)} are not "
                         f"its source run's {labels} ({cfg_path}): convert the run again")
    if ask is None or not ask.data:
        if ask is not None and ask.actors:
            raise ValueError("--actors selects speakers (emotion-ecg: subjects) in --data; "
                             "give --data")
        where = str(run_dir / "data.npz")
        X, y, source = heldout_inputs(run_dir, len(labels))
    else:
        kind = EMOTION_DATA[task]
        if kind.read is None:
            raise ValueError(f"{task}: this run was {kind.why_none}, which have no data "
                             "directory; evaluate it without --data (its held-out inputs)")
        where = ", ".join(ask.data)
        X, y, source = kind.read(cfg, labels, ask,
                                 manifest.signal.to_dict() if manifest is not None else signal)
    if len(y) == 0:
        raise ValueError("nothing to evaluate")
    check_input_shapes(X, model.takes(), where)
    probs = model.predict(X)
    if probs.shape[1] != len(labels):  # a hand-edited config.json: a class made up, or lost
        raise ValueError(f"{cfg_path}: labels {labels} are {len(labels)}; the model gives "
                         f"{probs.shape[1]} outputs")
    metrics = with_uar(classification_metrics(y, np.argmax(probs, axis=1), labels))
    metrics.update({"n_test": int(len(y)), "task": task, "model": model.description,
                    "data": source})
    text = (f"{len(y)} {task} inputs\n" + format_report(metrics) + "\n\n"
            + format_confusion(metrics) + f"\n\nUAR {metrics['uar']:.4f}  macro F1 "
            f"{metrics['macro_f1']:.4f}")
    return metrics, text


def heldout_inputs(run_dir: Path, n_labels: int) -> tuple[dict, np.ndarray, dict]:
    """The run's held-out inputs by name, their class indices and where they came from."""
    path = run_dir / "data.npz"
    data = read_npz(path)  # a ValueError naming the file
    check_heldout(path, data, n_labels)
    X = {k[5:]: v for k, v in data.items() if k.startswith("test_") and k != "test_y"}
    return X, data["test_y"].astype(np.int64), {"run": str(run_dir),
                                                "set": "held-out test (data.npz)"}
