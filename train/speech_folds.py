"""Leave-speakers-out K-fold cross-validation of the speech-emotion model
(``train emotion-speech --split actors --folds K``).

Speakers, not clips, are dealt to folds, balanced by gender
(:func:`.speech_data.speaker_folds`); each fold's model is tested on speakers it never
heard and validated (early stopping, best checkpoint) on other held-out speakers carved
from its training speakers. Each fold is an ordinary run directory (``fold-K``), so
``vitaledge evaluate`` and ``vitaledge convert`` work on it. The summary, ``folds.json``
and ``folds.md``, gives per fold and mean ± sd accuracy, unweighted average recall (UAR) and
macro F1, the confusion matrix of every fold's test clips pooled, and the times.

``--fold N`` trains fold N alone (the same deal of speakers, the same ``fold-N``
directory) and writes the summary over every fold of the run its ``--out`` holds, so the
K single-fold runs into one directory give the table of the whole run.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from vitaledge.device.eval.metrics import classification_metrics

from .evaluate import with_uar
from .speech_cache import MelCache
from .speech_data import describe, speaker_folds, speaker_genders

KEYS = ("accuracy", "uar", "macro_f1")


def run_speaker_folds(cfg, run_dir: Path, verbose: int | None = None,
                      only: int | None = None) -> dict:
    """Train the ``cfg.folds`` fold models under ``run_dir/fold-K`` (with ``only``, fold
    ``only`` alone, 1-based: the same speakers as in the whole run, the same ``fold-K``
    directory); write ``folds.json`` and ``folds.md`` over every fold ``run_dir`` holds;
    return the summary."""
    from .speech import load_clips, train_speech

    t0 = time.time()
    run_dir = Path(run_dir)
    clips = load_clips(cfg)
    folds = speaker_folds(clips, cfg.folds, cfg.seed)
    if only is not None and not 1 <= only <= len(folds):
        raise ValueError(f"fold {only}: a {len(folds)}-fold run has folds 1 to {len(folds)}")
    todo = range(1, len(folds) + 1) if only is None else [only]
    fold_metrics(cfg, run_dir, folds, todo)  # the folds left as they are must be this run's
    cache = MelCache(cfg.cache)
    for k, test in enumerate(folds, start=1):
        if k not in todo:
            continue
        print(f"\n=== fold {k}/{len(folds)}: test speakers {', '.join(test)} ===")
        fold_cfg = dataclasses.replace(cfg, fold=k, test_actors=test)
        train_speech(fold_cfg, run_dir / f"fold-{k}", verbose, clips=clips, cache=cache)
    done = fold_metrics(cfg, run_dir, folds)
    per_fold, cms = [], []
    for k, m in done.items():
        cms.append(np.asarray(m["confusion_matrix"]))
        per_fold.append({"fold": k, "test_speakers": folds[k - 1],
                         "val_speakers": m["split"]["speakers"]["val"],
                         "n_test": m["n_test"], **{key: m[key] for key in KEYS},
                         "confusion_matrix": m["confusion_matrix"],
                         "epochs_run": m["epochs_run"], "best_epoch": m["best_epoch"],
                         "epoch_seconds": m["epoch_seconds"],
                         "train_seconds": m["train_seconds"],
                         "feature_seconds": m["feature_seconds"]})
    pooled_cm = np.sum(cms, axis=0)
    y_true = np.repeat(np.arange(len(cfg.labels)), pooled_cm.sum(axis=1))
    y_pred = np.concatenate([np.repeat(np.arange(len(cfg.labels)), row) for row in pooled_cm])
    pooled = with_uar(classification_metrics(y_true, y_pred, cfg.labels))
    epochs = [f["epoch_seconds"] for f in per_fold if f["epoch_seconds"] is not None]
    genders = speaker_genders(clips)
    summary = {
        "task": "emotion-speech", "protocol": f"leave-speakers-out {len(folds)}-fold",
        "calm": cfg.calm, "recipe": cfg.recipe,
        "speakers": {s: genders[s] for s in sorted(genders)},
        "data": describe(clips),
        "folds_run": list(done), "complete": len(done) == len(folds),
        "folds": per_fold, "spread": spread(per_fold),
        "pooled": {key: pooled[key] for key in ("accuracy", "uar", "macro_f1", "n")}
        | {"labels": pooled["labels"], "confusion_matrix": pooled["confusion_matrix"],
           "per_class": pooled["per_class"]},
        "epoch_seconds": round(float(np.mean(epochs)), 2) if epochs else None,
        # one run of every fold: its wall time; single-fold runs: the sum of theirs
        "run_seconds": round(time.time() - t0, 1) if only is None
        else round(sum(m["run_seconds"] for m in done.values()), 1),
        "feature_cache": {"dir": None if cache.root is None else str(cache.root),
                          "hits": cache.hits, "computed": cache.misses},
        "config": cfg.to_dict(),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "folds.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = folds_markdown(summary)
    (run_dir / "folds.md").write_text(text)
    print(text)
    return summary


#: Config fields that may differ between the folds of one K-fold run.
PER_FOLD = ("fold", "test_actors", "val_actors", "cache")


def fold_metrics(cfg, run_dir: Path, folds: list[list[str]],
                 retrain=()) -> dict[int, dict]:
    """{fold number: metrics} of the folds ``run_dir`` holds (``fold-K/metrics.json``),
    each checked to be a fold of ``cfg``'s run: the same options (but the log-mel cache
    directory) and the test speakers the deal ``folds`` gives it. Folds in ``retrain``
    (about to be trained again) are not read."""
    want = json.loads(json.dumps({k: v for k, v in cfg.to_dict().items()
                                  if k not in PER_FOLD}))
    out = {}
    for path in sorted(Path(run_dir).glob("fold-*/metrics.json")):
        name = path.parent.name
        k = int(name[5:]) if name[5:].isdigit() else 0
        if not 1 <= k <= len(folds):
            raise ValueError(f"{path.parent}: not a fold of this {len(folds)}-fold run "
                             f"(folds 1 to {len(folds)}); use another --out")
        if k in retrain:
            continue
        try:
            have = json.loads((path.parent / "config.json").read_text())
            m = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path.parent}: unreadable fold: {exc}") from exc
        other = sorted(key for key in set(want) | set(have)
                       if key not in PER_FOLD and want.get(key) != have.get(key))
        if other:
            raise ValueError(f"{path.parent}: trained with other {', '.join(other)} than "
                             "this run; a fold table takes folds of one run (use another "
                             "--out)")
        if m["split"]["speakers"]["test"] != folds[k - 1]:
            raise ValueError(f"{path.parent}: test speakers "
                             f"{', '.join(m['split']['speakers']['test'])}, but fold {k} of "
                             f"the deal is {', '.join(folds[k - 1])} (did the data change?)")
        out[k] = m
    return dict(sorted(out.items()))


def spread(per_fold: list[dict]) -> dict:
    """Mean and sample standard deviation over folds of accuracy, UAR and macro F1."""
    out = {}
    for key in KEYS:
        v = np.array([f[key] for f in per_fold], float)
        out[key] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
    return out


def confusion_markdown(labels: list[str], cm) -> str:
    """A Markdown confusion matrix, rows true class, columns predicted."""
    lines = ["| true \\ predicted | " + " | ".join(labels) + " |",
             "|" + "---|" * (len(labels) + 1)]
    for lab, row in zip(labels, cm, strict=True):
        lines.append(f"| {lab} | " + " | ".join(str(int(v)) for v in row) + " |")
    return "\n".join(lines)


def folds_markdown(summary: dict) -> str:
    """Per-fold rows and mean ± sd of accuracy, UAR, macro F1 (%), then the pooled
    confusion matrix, the calm treatment and the times."""
    def pct(v):
        return f"{100 * v:.1f}"

    lines = [f"# Speech emotion, {summary['protocol']} ({summary['recipe']} recipe)", ""]
    if not summary.get("complete", True):
        lines += [f"Folds run so far: {', '.join(map(str, summary['folds_run']))}; the mean "
                  "and pooled rows are over these only.", ""]
    lines += ["| fold | test speakers | clips | Acc | UAR | macro F1 | epochs | s/epoch |",
              "|---|---|---|---|---|---|---|---|"]
    for f in summary["folds"]:
        lines.append(f"| {f['fold']} | {' '.join(f['test_speakers'])} | {f['n_test']} | "
                     f"{pct(f['accuracy'])} | {pct(f['uar'])} | {pct(f['macro_f1'])} | "
                     f"{f['epochs_run']} | {f['epoch_seconds']} |")
    sp = summary["spread"]
    lines.append("| mean ± sd | | | " + " | ".join(
        f"{pct(sp[k]['mean'])} ± {pct(sp[k]['sd'])}" for k in KEYS) + " | | |")
    p = summary["pooled"]
    lines.append(f"| pooled | | {p['n']} | {pct(p['accuracy'])} | {pct(p['uar'])} | "
                 f"{pct(p['macro_f1'])} | | |")
    calm = {"neutral": "merged into neutral (as the seed)",
            "drop": "dropped"}.get(summary["calm"], summary["calm"])
    lines += ["", "Confusion matrix, all folds' test clips pooled:", "",
              confusion_markdown(p["labels"], p["confusion_matrix"]), "",
              f"RAVDESS calm: {calm}. Mean epoch {summary['epoch_seconds']} s; whole run "
              f"{summary['run_seconds']} s."]
    return "\n".join(lines) + "\n"
