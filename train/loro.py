"""Leave-one-record-out evaluation: one model per held-out record, pooled and per record."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from vitaledge.device.eval.metrics import classification_metrics, format_confusion, format_report
from vitaledge.device.io.aami import CLASSES
from vitaledge.device.io.beats import beats_from_dir

from .config import BeatTrainConfig
from .fit import train_beat
from .splits import loro_splits


def run_loro(cfg: BeatTrainConfig, run_dir: Path) -> dict:
    """Train one model per fold in ``run_dir/fold-REC``; write ``loro.json`` and a report."""
    if not cfg.records:
        raise ValueError("leave-one-record-out needs WFDB records (--records)")
    run_dir = Path(run_dir)
    beats = beats_from_dir(cfg.records, cfg.window, cfg.record_list, cfg.lead)
    folds, cm_total = {}, np.zeros((len(CLASSES), len(CLASSES)), np.int64)
    for rec, _ in loro_splits(beats):
        fold_cfg = dataclasses.replace(cfg, split="record", test_records=[rec])
        print(f"\n=== fold: test record {rec} ===")
        m = train_beat(fold_cfg, run_dir / f"fold-{rec}")
        folds[rec] = {k: m[k] for k in ("n", "accuracy", "macro", "per_class",
                                          "confusion_matrix")}
        cm_total += np.asarray(m["confusion_matrix"])
    y_true = np.repeat(np.arange(len(CLASSES)), cm_total.sum(1))
    y_pred = np.concatenate([np.repeat(np.arange(len(CLASSES)), row) for row in cm_total])
    pooled = classification_metrics(y_true, y_pred, list(CLASSES))
    out = {"pooled": pooled, "folds": folds, "config": cfg.to_dict()}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "loro.json").write_text(json.dumps(out, indent=2) + "\n")
    text = loro_table(out)
    (run_dir / "loro_report.txt").write_text(text)
    print(text)
    return out


def loro_table(result: dict) -> str:
    """Per-record accuracy and per-class recall (support), then the pooled report."""
    head = f"{'record':>8}{'beats':>7}{'acc':>8}{'macroF1':>9}" + "".join(
        f"{'rec ' + c + ' (n)':>15}" for c in CLASSES)
    lines = ["leave-one-record-out: recall per class, (support)", head]
    for rec, f in result["folds"].items():
        cells = "".join(
            f"{f['per_class'][c]['recall']:>8.3f} ({f['per_class'][c]['support']:>4d})"
            if f["per_class"][c]["support"] else f"{'-':>8} ({0:>4d})" for c in CLASSES)
        lines.append(f"{rec:>8}{f['n']:>7d}{f['accuracy']:>8.4f}{f['macro']['f1']:>9.4f}"
                     + cells)
    lines += ["", "pooled over all folds:", format_report(result["pooled"]), "",
              format_confusion(result["pooled"])]
    return "\n".join(lines) + "\n"
