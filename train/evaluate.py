"""Scoring a model on beat sets and writing the report files of a run."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from vitaledge.device.eval.metrics import classification_metrics, format_confusion, format_report
from vitaledge.device.io.aami import CLASSES
from vitaledge.device.model.manifest import TASKS
from vitaledge.device.model.runtime import Model

from .plots import plot_confusion


def score(probs: np.ndarray, y: np.ndarray, labels: list[str] | None = None) -> dict:
    """Metrics of class probabilities ``probs`` (n, k) against labels ``y``."""
    labels = list(labels or CLASSES)
    return classification_metrics(y, np.argmax(probs, axis=1), labels)


def with_uar(metrics: dict) -> dict:
    """``metrics`` (from ``classification_metrics``) plus ``macro_f1`` and ``uar``:
    unweighted average recall, the mean recall over the classes that occur (chance is one
    over their number whatever the class balance)."""
    recalls = [pc["recall"] for pc in metrics["per_class"].values() if pc["support"] > 0]
    metrics["macro_f1"] = metrics["macro"]["f1"]
    metrics["uar"] = float(np.mean(recalls)) if recalls else 0.0
    return metrics


def write_report(metrics: dict, out_dir: Path, prefix: str = "") -> str:
    """Write metrics JSON, text report and confusion plots; return the printed text."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{prefix}metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    text = format_report(metrics) + "\n\n" + format_confusion(metrics) + "\n"
    (out_dir / f"{prefix}classification_report.txt").write_text(text)
    cm = np.asarray(metrics["confusion_matrix"])
    plot_confusion(cm, metrics["labels"], out_dir / f"{prefix}confusion_matrix.png", False)
    plot_confusion(cm, metrics["labels"], out_dir / f"{prefix}confusion_matrix_normalized.png",
                   True)
    return text


#: The first bytes of an HDF5 file (the legacy Keras format, which ``load_model`` also reads
#: from a file named ``.keras``).
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def check_keras_file(path: Path) -> None:
    """Refuse, without TensorFlow, a ``model.keras`` that cannot be a Keras model: missing,
    not a file, neither a Keras archive (zip) nor HDF5 (a truncated archive loses the zip
    directory at its end), an archive whose members fail their CRC or that has no
    ``config.json``. The error names the file, so a command fails before any work."""
    path = Path(path)
    if not path.exists():
        folds = sorted(p.name for p in path.parent.glob("fold-*") if p.is_dir())
        if folds:  # a patient-wise K-fold run: each fold is a run of its own
            raise FileNotFoundError(f"{path.parent}: a K-fold run directory ({', '.join(folds)} "
                                    f"here) has no model of its own; give one of its folds, "
                                    f"e.g. {path.parent / folds[0]}")
        raise FileNotFoundError(f"{path}: missing; a run written by 'vitaledge train' has "
                                "its model there")
    if not path.is_file():
        raise ValueError(f"{path}: not a file; expected a Keras model")
    try:
        if not zipfile.is_zipfile(path):
            with path.open("rb") as f:
                if f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                    return
            raise ValueError(f"{path}: not a Keras model (neither a .keras archive nor HDF5; "
                             f"{path.stat().st_size} bytes, truncated or corrupt?)")
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
            names = z.namelist()
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{path}: unreadable Keras model archive: {exc}") from exc
    if bad is not None:
        raise ValueError(f"{path}: corrupt Keras model archive ({bad} fails its CRC check)")
    if "config.json" not in names:
        raise ValueError(f"{path}: not a Keras model archive (no config.json in it)")


def load_keras(path: Path):
    """The Keras model in ``path`` (its callers run :func:`check_keras_file` before reading
    any data); a model Keras cannot load is a ValueError naming the file."""
    from .backend import keras

    try:
        return keras.models.load_model(str(path))
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: cannot load the Keras model: {exc}") from exc


def source_run(artifact: Path, manifest) -> Path:
    """The run ``artifact`` was converted from, as it was then: a run trained again since
    (its ``config.json`` no longer the one the manifest's ``source_run.config_sha256``
    names) would lend the artifact another run's held-out beats and settings (ValueError)."""
    import hashlib

    run_dir = Path(manifest.source_run.get("path", ""))
    want = manifest.source_run.get("config_sha256")
    cfg = run_dir / "config.json"
    if want and cfg.is_file() and hashlib.sha256(cfg.read_bytes()).hexdigest() != want:
        raise ValueError(f"{artifact}: its source run {run_dir} was trained again since it "
                         "was converted (config.json is not the one converted): its held-out "
                         "data is another run's; convert that run again")
    return run_dir


def _resolve_model(model_path: Path):
    """(run directory, predict function, description) for a run directory, its
    ``model.keras``, or a converted artifact (directory with ``manifest.json``, or its
    ``model.tflite``), which is run through the TensorFlow-free device runtime."""
    artifact = model_path if model_path.is_dir() else model_path.parent
    if (artifact / "manifest.json").exists():
        m = Model(artifact)  # TensorFlow-free; a model it refuses is named
        return source_run(artifact, m.manifest), m.predict, f"{artifact} ({m.manifest.target} "\
                                   f"{m.manifest.quantization}, {m.backend.name})"
    run_dir = model_path if model_path.is_dir() else model_path.parent
    model_file = model_path / "model.keras" if model_path.is_dir() else model_path
    check_keras_file(model_file)  # before the data is read

    def keras_predict(X):
        from .predict import predict

        return predict(load_keras(model_file), X)

    return run_dir, keras_predict, str(model_file)


#: The ``evaluate`` options beat runs read (an emotion task's: its
#: :data:`.emotion_evaluate.EMOTION_DATA` entry).
BEAT_EVALUATE_OPTIONS = ("--records", "--csv", "--split")


def evaluate_model(model_path: Path, records: str | None = None,
                   record_list: list[str] | None = None, csv: str | None = None,
                   split: str = "test") -> tuple[dict, str]:
    """Score a trained run's model (Keras, or a converted artifact through the device
    runtime) on the run's own held-out beats or on other data.

    ``split="test"`` rebuilds the run's split (same config and seed) on the given data and
    scores the test part; ``"all"`` scores every beat.
    """
    import dataclasses

    from vitaledge.device.io.beats import beats_from_dir
    from vitaledge.device.io.kaggle_csv import load_kaggle_csv

    from .config import BeatTrainConfig
    from .data import check_split_ids, split_parts
    from .decide import decide_beats

    run_dir, predict_fn, model_desc = _resolve_model(Path(model_path))
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{cfg_path}: missing; MODEL must be a run directory "
                                "written by 'vitaledge train'")
    cfg = BeatTrainConfig.load(cfg_path)
    if csv:
        beats = load_kaggle_csv(csv)
        if beats.description["window"] != cfg.window.to_dict():
            raise ValueError(f"{csv}: Kaggle CSV beats are kachuee windows without filtering; "
                             f"this model was trained on {cfg.window.to_dict()}")
        source = {"csv": csv}
    else:
        own = records is None
        if own and cfg.records and not Path(cfg.records).is_dir():
            raise ValueError(f"{cfg.records}: the run's record directory, as given when it "
                             f"was trained (relative to where that ran), is not a directory "
                             f"here: give --data DIR")
        data_cfg = cfg if own else dataclasses.replace(cfg, records=records,
                                                       record_list=record_list,
                                                       csv_train=None, csv_test=None)
        held = "test"
        if split == "test":
            train, val, beats = split_parts(data_cfg)
            if own and cfg.records:
                check_split_ids(run_dir / "splits.npz", train, val, beats)
            if not len(beats) and len(val):  # --split none: no test beats; training scored
                beats, held = val, "validation"  # its validation beats (evaluated_on)
        elif not data_cfg.records:
            raise ValueError("--split all scores every beat of a WFDB directory, and this run "
                             "was trained on Kaggle CSV rows: give --csv FILE (or --data DIR)")
        else:
            beats = beats_from_dir(data_cfg.records, cfg.window, data_cfg.record_list, cfg.lead,
                                   cfg.anchor, cfg.rr_spec(), cfg.template_spec())
        source = {"records": data_cfg.records, "record_list": data_cfg.record_list,
                  "split": split, **({"set": held} if held != "test" else {})}
    if len(beats) == 0:
        raise ValueError("no beats to evaluate")
    inputs = beats.inputs()
    pred = decide_beats(cfg.beat_signal(), predict_fn(inputs), beats)
    metrics = classification_metrics(beats.y, pred, list(CLASSES))
    metrics["model"] = model_desc
    metrics["data"] = source
    text = f"{len(beats)} beats\n" + format_report(metrics) + "\n\n" + format_confusion(metrics)
    return metrics, text


def file_task(path: Path) -> str:
    """The task a run's ``config.json`` or an artifact's ``manifest.json`` names (``beat``
    when absent: beat runs written before ``task`` existed); a ValueError naming the file
    when it cannot be read, is not a JSON object or names a task no model is trained for."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a JSON object, got {json.dumps(doc)[:40]}")
    task = doc.get("task", "beat")
    if task not in TASKS:
        raise ValueError(f"{path}: task {task!r} is not one of {', '.join(TASKS)}")
    return task


def run_task(model_path: Path) -> str:
    """The task of a run directory, its ``model.keras`` or a converted artifact: the
    manifest's, else ``config.json``'s (beat runs written before ``task`` existed: beat)."""
    model_path = Path(model_path)
    base = model_path if model_path.is_dir() else model_path.parent
    for name in ("manifest.json", "config.json"):
        if (base / name).exists():
            return file_task(base / name)
    folds = sorted(p.name for p in base.glob("fold-*") if p.is_dir())
    if folds:  # a leave-speakers-out K-fold run: as check_keras_file says for beat folds
        raise FileNotFoundError(f"{base}: a K-fold run directory ({', '.join(folds)} here) "
                                f"has no model of its own; give one of its folds, e.g. "
                                f"{base / folds[0]}")
    raise FileNotFoundError(f"{base}: no config.json or manifest.json; MODEL must be a run "
                            "directory written by 'vitaledge train', its model.keras, or a "
                            "converted artifact")


def check_heldout(path: Path, data: dict, n_labels: int) -> None:
    """An emotion run's ``data.npz`` holds what scoring it needs: ``test_y``, class indices
    below ``n_labels``, as many rows in every ``test_`` input, all finite; a ValueError
    naming the file and the array otherwise (a KeyError or IndexError traceback, or numbers
    from NaN inputs, before)."""
    if "test_y" not in data:
        raise ValueError(f"{path}: missing 'test_y'")
    y = data["test_y"]
    if (y.ndim != 1 or not np.issubdtype(y.dtype, np.integer)
            or (len(y) and not (0 <= y.min() and y.max() < n_labels))):
        raise ValueError(f"{path}: test_y is {y.dtype}{list(y.shape)}, expected class indices "
                         f"0 to {n_labels - 1}")
    for k, v in data.items():
        if k.startswith("test_") and k != "test_y":
            if len(v) != len(y):
                raise ValueError(f"{path}: {k} has {len(v)} rows, test_y {len(y)}")
            if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all():
                raise ValueError(f"{path}: {k} holds non-finite values")
