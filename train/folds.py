"""Patient-wise K-fold cross-validation (``train beat --split patients --folds K``): one
model per fold, each tested on patients it never saw; per-fold figures, their mean and
spread, and the EC57 report of all folds' predictions pooled.

Every fold's run directory is an ordinary run (a ``record`` split naming its test
records), so ``vitaledge evaluate`` and ``vitaledge convert`` work on each.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from vitaledge.device.eval import ec57
from vitaledge.device.io.beats import BeatSet

from .config import BeatTrainConfig
from .data import load_all, prepare
from .fit import check_inputs, train_beat
from .report import write_ec57
from .splits import patient_folds
from .zoo import get as get_arch

STATS = ("se", "ppv", "f1")


def run_patient_folds(cfg: BeatTrainConfig, run_dir: Path) -> dict:
    """Train ``cfg.folds`` fold models under ``run_dir/fold-K``; write ``folds.json``,
    ``folds.md`` and the pooled ``ec57.*``; return the summary."""
    if not cfg.records:
        raise ValueError("patient-wise folds need WFDB records (--data)")
    run_dir = Path(run_dir)
    check_inputs(cfg, get_arch(cfg.arch, "beat"))
    beats, _ = load_all(cfg)
    folds = patient_folds(beats, cfg.folds, cfg.seed)
    per_fold, pooled = [], []
    for k, split in enumerate(folds, start=1):
        test_records = sorted(set(beats.record[split.test]))
        fold_cfg = dataclasses.replace(cfg, split="record", test_records=test_records)
        print(f"\n=== fold {k}/{len(folds)}: test patients {', '.join(test_records)} ===")
        fold_dir = run_dir / f"fold-{k}"
        m = train_beat(fold_cfg, fold_dir, data=prepare(fold_cfg, beats))
        rep = json.loads((fold_dir / "ec57.json").read_text())
        # accuracy and macro F1 as the class columns and the pooled row: EC57's, Q
        # references left out (the fold's metrics.json counts them)
        per_fold.append({"fold": k, "test_records": test_records,
                         "accuracy": rep["gross"]["accuracy"],
                         "macro_f1": macro_f1(rep["gross"]), "best_epoch": m["best_epoch"],
                         "gross": rep["gross"]})
        with np.load(fold_dir / "test_predictions.npz", allow_pickle=False) as z:
            pooled.append({key: z[key] for key in z.files})
    cat = {key: np.concatenate([p[key] for p in pooled]) for key in pooled[0]}
    pooled_beats = BeatSet(np.zeros((len(cat["y"]), 0), np.float32), cat["y"],
                           cat["record"].astype(object), cat["sample"])
    title = (f"{cfg.arch}, patient-wise {len(folds)}-fold over "
             f"{len(set(beats.record))} patients, all folds pooled")
    rep = write_ec57(pooled_beats, cat["pred"], run_dir, title)
    summary = {"config": cfg.to_dict(), "folds": per_fold, "spread": spread(per_fold),
               "pooled": rep["gross"]}
    if cfg.s_rule != "network" or cfg.v_rule != "network" or cfg.vote != "none":  # argmax alone
        summary["pooled_network_only"] = ec57.table(pooled_beats.y, cat["probs"].argmax(1))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "folds.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = folds_markdown(summary)
    (run_dir / "folds.md").write_text(text)
    print(text)
    return summary


def macro_f1(gross: dict) -> float | None:
    """The mean F1 of the EC57-scored classes (N, S, V, F) an EC57 table defines one for."""
    f1 = [c["f1"] for c in gross["classes"].values() if c["f1"] is not None]
    return float(np.mean(f1)) if f1 else None


def spread(per_fold: list[dict]) -> dict:
    """Mean and standard deviation over folds of accuracy, macro F1 and per-class Se, +P,
    F1 (a fold without beats of a class, or without any beat but Q, leaves those figures
    out)."""
    out = {key: _mean_sd([f[key] for f in per_fold]) for key in ("accuracy", "macro_f1")}
    for c in ec57.SCORED:
        for s in STATS:
            values = [f["gross"]["classes"][c][s] for f in per_fold]
            d = _mean_sd(values)
            out[f"{c}_{s}"] = (None if d is None
                               else {**d, "folds": sum(v is not None for v in values)})
    return out


def _mean_sd(values: list) -> dict | None:
    """Mean and sample standard deviation (0 for one value) of the values that are not
    None; None when none is."""
    v = np.array([x for x in values if x is not None], float)
    if not len(v):
        return None
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def folds_markdown(summary: dict) -> str:
    """Per-fold rows, then mean ± sd, of accuracy and per-class Se / +P / F1 (%)."""
    cols = [f"{c} {s}" for c in ec57.SCORED for s in ("Se", "+P", "F1")]
    lines = ["| fold | test patients | Acc | " + " | ".join(cols) + " |",
             "|" + "---|" * (3 + len(cols))]

    def pct(v):
        return "—" if v is None else f"{100 * v:.1f}"

    for f in summary["folds"]:
        cells = [pct(f["gross"]["classes"][c][s]) for c in ec57.SCORED for s in STATS]
        lines.append(f"| {f['fold']} | {' '.join(f['test_records'])} | {pct(f['accuracy'])} | "
                     + " | ".join(cells) + " |")
    sp = summary["spread"]

    def ms(d):
        return "—" if d is None else f"{100 * d['mean']:.1f} ± {100 * d['sd']:.1f}"

    lines.append("| mean ± sd | | " + ms(sp["accuracy"]) + " | "
                 + " | ".join(ms(sp[f"{c}_{s}"]) for c in ec57.SCORED for s in STATS) + " |")
    for key, name in (("pooled", "pooled"), ("pooled_network_only",
                                              "pooled, network argmax (no decision rules)")):
        if key in summary:
            g = summary[key]
            lines.append(f"| {name} | | " + pct(g["accuracy"]) + " | "
                         + " | ".join(pct(g["classes"][c][s]) for c in ec57.SCORED
                                      for s in STATS) + " |")
    lines.append("\nEvery row as EC57: beats whose reference is Q are left out (counted apart "
                 "in ec57.json).")
    return "\n".join(lines) + "\n"
