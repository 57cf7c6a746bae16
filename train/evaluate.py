"""Scoring a model on beat sets and writing the report files of a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vitaledge.device.eval.metrics import classification_metrics, format_confusion, format_report
from vitaledge.device.io.aami import CLASSES

from .plots import plot_confusion
from .predictor import resolve_predictor


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

    model = resolve_predictor(Path(model_path))
    run_dir = model.run_dir
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
    pred = decide_beats(cfg.beat_signal(), model.predict(inputs), beats)
    metrics = classification_metrics(beats.y, pred, list(CLASSES))
    metrics["model"] = model.description
    metrics["data"] = source
    text = f"{len(beats)} beats\n" + format_report(metrics) + "\n\n" + format_confusion(metrics)
    return metrics, text
