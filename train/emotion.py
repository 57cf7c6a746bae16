"""Training the emotion models: the ECG CNN-LSTM (seed 000) and the multimodal hybrid
(seed 001). Both write the run-directory contract the converter reads:

``model.keras``   tf_keras model, inputs named as the device makes them, softmax output
``config.json``   task, arch, labels (output order), ``signal`` (the device preprocessing
                  spec, taken as is by ``device.emotion_ecg`` / ``device.multimodal``),
                  seed and the training options
``data.npz``      ``calib_<input>`` (<= 300 class-stratified training inputs),
                  ``test_<input>`` (held-out inputs), ``test_y``
``metrics.json``  held-out accuracy, UAR, macro F1, per class, confusion, n_test (+ CV /
                  AUC / baselines), as ``vitaledge evaluate`` writes them, plus
                  ``history.csv`` and figures.

emotion-ecg: trials are split by group (trial or subject) into a held-out test part and a
development part; k-fold cross-validation (grouped, stratified) on the development part
gives the seed's mean +- std; the first fold's model is the run's model, scored on the test
part. Epochs are fixed (no early stopping on the fold being scored).

emotion-multimodal: stratified 70/15/15 split, Adam 1e-3, batch 64, early stopping on
validation accuracy; ``grid`` tries conv layers x LSTM units x dropout and keeps the best on
validation; the CNN-only and RNN-only baselines are trained the same way and compared.
"""

from __future__ import annotations

import csv
import itertools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vitaledge.device.dsp.filters import FilterSpec
from vitaledge.device.eval.metrics import classification_metrics
from vitaledge.device.inputs import emotion_ecg
from vitaledge.device.inputs import multimodal as mm
from vitaledge.device.inputs.face import face_input

from . import zoo
from .backend import check_converged, fit_verbosity, keras, set_seed
from .calibration import CALIBRATION_SIZE, calibration_pick
from .emotion_data import Segments, ecg_segments, synth_multimodal
from .emotion_datasets import load_trials
from .evaluate import with_uar, write_report
from .plots import plot_history, plot_roc


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def _history_csv(history: dict[str, list[float]], path: Path) -> None:
    keys = list(history)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch"] + keys)
        for i in range(len(history[keys[0]]) if keys else 0):
            w.writerow([i] + [history[k][i] for k in keys])


def _compile(model: keras.Model, lr: float) -> keras.Model:
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


# -- emotion-ecg -----------------------------------------------------------------------
@dataclass
class EmotionEcgConfig:
    dataset: str = "synth"  # amigos | dreamer | wesad | synth
    data: str | None = None
    threshold: float | None = None
    trust_pickle: bool = False
    arch: str = "cnnlstm_ecg"
    hop_s: float = 4.0
    filter: dict | None = None
    group: str = "trial"  # trial | subject: what never straddles train and test
    folds: int = 10
    test_fraction: float = 0.2
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-3
    dropout: float = 0.2
    seed: int = 0
    synth_subjects: int = 16
    synth_trials: int = 2
    synth_seconds: float = 75.0
    task: str = field(default="emotion-ecg", init=False)


def group_splits(y: np.ndarray, groups: np.ndarray, k: int, seed: int):
    """Stratified group k-fold (sklearn): (train, test) index pairs."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(np.unique(groups))
    smallest = int(np.bincount(y).min()) if len(y) else 0
    if n_groups < k or smallest < k:
        raise ValueError(f"{k} folds need at least {k} groups and {k} inputs per class; have "
                         f"{n_groups} groups and {smallest} inputs in the smallest class")
    return list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
                .split(np.zeros(len(y)), y, groups))


def split_test(seg: Segments, group: str, test_fraction: float,
               seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(development, test) indices; no trial (or subject) on both sides."""
    if not 0 < test_fraction < 0.5:
        raise ValueError(f"test fraction must be in (0, 0.5), got {test_fraction}")
    groups = seg.trial if group == "trial" else seg.subject
    k = max(2, int(round(1 / test_fraction)))
    try:
        dev, test = group_splits(seg.y, groups, k, seed)[0]
    except ValueError as exc:  # "5 folds need ...": the test split's parts, not --folds
        raise ValueError(f"the held-out test split (test fraction {test_fraction:g}: one "
                         f"{group} group in {k}): {exc}") from exc
    return dev, test


def train_emotion_ecg(cfg: EmotionEcgConfig, run_dir: Path, verbose: int | None = None) -> dict:
    """Cross-validate the ECG emotion model, keep fold 1's model, write the run."""
    run_dir = Path(run_dir)
    verbose = fit_verbosity(verbose)
    if cfg.group not in ("trial", "subject"):
        raise ValueError(f"group must be 'trial' or 'subject', got {cfg.group!r}")
    if cfg.folds == 1 or cfg.folds < 0:
        raise ValueError(f"folds must be >= 2, or 0 for no cross-validation; got {cfg.folds}")
    set_seed(cfg.seed)
    signal = emotion_ecg.default_signal(cfg.hop_s, FilterSpec.from_dict(cfg.filter))
    ts = load_trials(cfg.dataset, cfg.data, cfg.threshold, cfg.trust_pickle,
                     cfg.synth_subjects, cfg.synth_trials, cfg.synth_seconds, cfg.seed)
    labels = ts.labels
    seg = ecg_segments(ts, signal)
    run_dir.mkdir(parents=True, exist_ok=True)  # only once the data is known to be good
    dev, test = split_test(seg, cfg.group, cfg.test_fraction, cfg.seed)
    groups = (seg.trial if cfg.group == "trial" else seg.subject)[dev]
    if cfg.folds:
        folds = group_splits(seg.y[dev], groups, cfg.folds, cfg.seed)
    else:  # no CV: one model on the whole development part
        folds = [(np.arange(len(dev)), np.zeros(0, np.int64))]
    print(f"{ts.describe()}")
    print(f"{len(seg.y)} model inputs {seg.X.shape[1:]}: {len(dev)} development, "
          f"{len(test)} held-out test; " + (f"{cfg.folds}-fold CV" if cfg.folds else "no CV")
          + f", grouped by {cfg.group}")

    cv, final, history, n_params = [], None, {}, 0
    t0 = time.time()
    for k, (tr, va) in enumerate(folds, start=1):
        tr, va = dev[tr], dev[va]
        set_seed(cfg.seed + k)
        model = _compile(zoo.get(cfg.arch, "emotion-ecg").build(seg.X.shape[1:], len(labels),
                                                                dropout=cfg.dropout),
                         cfg.learning_rate)
        n_params = int(model.count_params())
        if k == 1:
            print(f"model {cfg.arch}: {n_params:,} parameters")
        hist = model.fit(seg.X[tr], seg.y[tr],
                         validation_data=(seg.X[va], seg.y[va]) if len(va) else None,
                         epochs=cfg.epochs, batch_size=cfg.batch_size, shuffle=True,
                         verbose=verbose if k == 1 else 0)
        check_converged(hist.history)
        if k == 1:
            final, history = model, hist.history
        if not len(va):
            break
        m = classification_metrics(seg.y[va], model.predict(seg.X[va], verbose=0).argmax(1),
                                   labels)
        cv.append({"fold": k, "n_train": len(tr), "n_val": len(va),
                   "accuracy": m["accuracy"], "macro_f1": m["macro"]["f1"]})
        print(f"fold {k}/{cfg.folds}: accuracy {m['accuracy']:.4f}  macro F1 "
              f"{m['macro']['f1']:.4f}  ({len(va)} inputs)")
    train_s = time.time() - t0
    acc = np.array([c["accuracy"] for c in cv])
    f1 = np.array([c["macro_f1"] for c in cv])
    cv_summary = {"folds": cv, "k": cfg.folds, "group": cfg.group,
                  "accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std()),
                  "macro_f1_mean": float(f1.mean()), "macro_f1_std": float(f1.std())} \
        if cv else None

    assert final is not None
    final.save(str(run_dir / "model.keras"))
    probs = final.predict(seg.X[test], verbose=0)
    metrics = with_uar(classification_metrics(seg.y[test], probs.argmax(1), labels))
    # held out by subject, the test part is every segment of these subjects: `evaluate RUN
    # --data DIR --actors ...` scores it again from the recordings
    test_subjects = ({"test_subjects": sorted(set(seg.subject[test].tolist()))}
                     if cfg.group == "subject" else {})
    metrics.update({"n_test": int(len(test)),
                    "evaluated_on": "held-out test, model of fold 1" if cv else
                    "held-out test, model trained on the development part", "cv": cv_summary,
                    "arch": cfg.arch, "parameters": n_params, "train_seconds": round(train_s, 1),
                    "data": ts.describe() | {"inputs": int(len(seg.y)),
                                             "development": int(len(dev)),
                                             "test": int(len(test))} | test_subjects})
    calib = dev[folds[0][0]][calibration_pick(seg.y[dev[folds[0][0]]], CALIBRATION_SIZE, cfg.seed)]
    np.savez(run_dir / "data.npz", calib_ecg=seg.X[calib], test_ecg=seg.X[test],
             test_y=seg.y[test].astype(np.int64))
    _write_json(run_dir / "config.json", {
        "task": "emotion-ecg", "arch": cfg.arch, "labels": labels, "signal": signal,
        "seed": cfg.seed, "inputs": {"ecg": list(seg.X.shape[1:])},
        "training": {k: v for k, v in asdict(cfg).items() if k not in ("task", "arch", "seed")}})
    _history_csv(history, run_dir / "history.csv")
    plot_history(history, run_dir / "training_history.png")
    text = write_report(metrics, run_dir)  # metrics.json, the text report, the confusions
    if cv:
        print(f"\n{cfg.folds}-fold CV: accuracy {acc.mean():.4f} +- {acc.std():.4f}, "
              f"macro F1 {f1.mean():.4f} +- {f1.std():.4f}")
    print(f"held-out test ({len(test)} inputs, {metrics['evaluated_on']}):")
    print(text)
    return metrics


# -- emotion-multimodal ----------------------------------------------------------------
DEFAULT_GRID = {"conv_layers": [1, 2, 3], "lstm_units": [32, 64], "dropout": [0.2, 0.5]}
#: The values each grid key may take (as the command's own options: --conv-layers ...).
GRID_RANGES = {"conv_layers": (1, 8), "lstm_units": (1, 4096), "dropout": (0.0, 0.999)}


def parse_grid(text: str | None) -> dict[str, list]:
    """``"conv_layers=1,2;lstm_units=32,64;dropout=0.2,0.5"`` -> dict ('' -> default grid).
    Every key once, with at least one value, each within :data:`GRID_RANGES`."""
    if not text:
        return dict(DEFAULT_GRID)
    out: dict[str, list] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        key, _, vals = part.partition("=")
        key = key.strip()
        if key not in DEFAULT_GRID or not vals:
            raise ValueError(f"grid: {part!r}; expected KEY=V1,V2 with KEY one of "
                             f"{sorted(DEFAULT_GRID)}")
        if key in out:
            raise ValueError(f"grid: {key} given twice")
        cast = float if key == "dropout" else int
        items = [v.strip() for v in vals.split(",")]
        if "" in items:
            raise ValueError(f"grid: {key}={vals}: an empty value")
        try:
            out[key] = [cast(v) for v in items]
        except ValueError as exc:
            raise ValueError(f"grid: {key}: {exc}") from exc
        lo, hi = GRID_RANGES[key]
        bad = [v for v in out[key] if not lo <= v <= hi]  # NaN too
        if bad:
            raise ValueError(f"grid: {key}={bad[0]} is outside {lo:g}..{hi:g}")
    if not out:
        raise ValueError(f"grid: {text!r} names no KEY=V1,V2")
    return out


@dataclass
class MultimodalConfig:
    dataset: str = "synth"
    window_s: float = 30.0
    hop_s: float = 5.0
    physio_fs: float = 16.0
    conv_layers: int = 2
    lstm_units: int = 64
    dropout: float = 0.3
    grid: dict | None = None  # None: train the given hyper-parameters only
    baselines: bool = True
    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 1e-3
    patience: int = 8
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    synth_subjects: int = 10
    synth_per_class: int = 12
    task: str = field(default="emotion-multimodal", init=False)


def split_70_15_15(y: np.ndarray, val: float, test: float, seed: int):
    """Stratified random (train, val, test) indices."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    rest, te = train_test_split(idx, test_size=test, stratify=y, random_state=seed)
    tr, va = train_test_split(rest, test_size=val / (1 - test), stratify=y[rest],
                              random_state=seed)
    return np.sort(tr), np.sort(va), np.sort(te)


def multimodal_inputs(ms, signal: dict) -> dict[str, np.ndarray]:
    """Physio sequences, raw feature values and face inputs of every window."""
    physio = np.stack([mm.physio_input(e, g, ms.fs, signal, ms.stats[s])
                       for e, g, s in zip(ms.ecg, ms.gsr, ms.subject, strict=True)])
    raw = np.stack([mm.raw_features(e, g, ms.fs, signal)
                    for e, g in zip(ms.ecg, ms.gsr, strict=True)])
    faces = np.stack([face_input(f, int(signal["face_size"])) for f in ms.faces])
    return {"physio": physio, "raw_features": raw, "face": faces}


def _fit(arch: str, X: dict, y: np.ndarray, tr, va, n_classes: int, hp: dict,
         cfg: MultimodalConfig, verbose: int):
    shapes = {k: v.shape[1:] for k, v in X.items()}
    set_seed(cfg.seed)
    model = _compile(zoo.get(arch, "emotion-multimodal").build(shapes, n_classes, **hp),
                     cfg.learning_rate)
    names = zoo.get(arch).inputs
    stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max",
                                         patience=cfg.patience, restore_best_weights=True)
    hist = model.fit({n: X[n][tr] for n in names}, y[tr],
                     validation_data=({n: X[n][va] for n in names}, y[va]),
                     epochs=cfg.epochs, batch_size=cfg.batch_size, shuffle=True,
                     callbacks=[stop], verbose=verbose)
    check_converged(hist.history)
    return model, hist.history


def _predict(model: keras.Model, arch: str, X: dict, idx: np.ndarray) -> np.ndarray:
    return model.predict({n: X[n][idx] for n in zoo.get(arch).inputs}, batch_size=256, verbose=0)


def roc_auc(y: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict:
    """One-vs-rest ROC curve and AUC per class (sklearn)."""
    from sklearn.metrics import auc, roc_curve

    out = {}
    for c, lab in enumerate(labels):
        if (y == c).all() or not (y == c).any():
            continue
        fpr, tpr, _ = roc_curve(y == c, probs[:, c])
        out[lab] = {"auc": float(auc(fpr, tpr)), "fpr": fpr.tolist(), "tpr": tpr.tolist()}
    return out


def format_comparison(rows: list[dict]) -> str:
    """The seed's Table 3: accuracy (and macro F1) of each model on the same test set."""
    lines = ["| model | inputs | parameters | accuracy (%) | macro F1 (%) |",
             "|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['inputs']} | {r['parameters']:,} | "
                     f"{100 * r['accuracy']:.1f} | {100 * r['macro_f1']:.1f} |")
    return "\n".join(lines)


def train_emotion_multimodal(cfg: MultimodalConfig, run_dir: Path,
                             verbose: int | None = None) -> dict:
    """Train the hybrid (with the grid if asked) and the baselines; write the run."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    verbose = fit_verbosity(verbose)
    if cfg.dataset != "synth":
        raise ValueError(f"emotion-multimodal: dataset {cfg.dataset!r} has no loader yet; "
                         "only 'synth' (ECG+GSR+face recorded together) is supported")
    signal = mm.default_signal(cfg.window_s, cfg.hop_s, cfg.physio_fs)
    ms = synth_multimodal(signal, cfg.synth_subjects, cfg.synth_per_class, cfg.seed)
    labels = ms.labels
    X = multimodal_inputs(ms, signal)
    y = ms.y
    tr, va, te = split_70_15_15(y, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    raw = X.pop("raw_features")
    std = raw[tr].std(axis=0)
    signal["feature_mean"] = raw[tr].mean(axis=0).tolist()
    signal["feature_std"] = np.where(std > 0, std, 1.0).tolist()
    X["features"] = np.stack([mm.features_input(r, signal) for r in raw])
    print(f"{len(y)} windows ({cfg.synth_subjects} synthetic subjects): {len(tr)} train, "
          f"{len(va)} validation, {len(te)} test")

    hp = {"conv_layers": cfg.conv_layers, "lstm_units": cfg.lstm_units, "dropout": cfg.dropout}
    grid_rows = []
    t0 = time.time()
    if cfg.grid:
        keys = list(cfg.grid)
        best = None
        for values in itertools.product(*(cfg.grid[k] for k in keys)):
            trial_hp = hp | dict(zip(keys, values, strict=True))
            model, hist = _fit("hybrid_multimodal", X, y, tr, va, len(labels), trial_hp, cfg, 0)
            val_acc = float(max(hist["val_accuracy"]))
            grid_rows.append(trial_hp | {"val_accuracy": val_acc, "epochs": len(hist["loss"])})
            print(f"grid {trial_hp}: validation accuracy {val_acc:.4f}")
            if best is None or val_acc > best[0]:
                best = (val_acc, trial_hp, model, hist)
        assert best is not None
        _, hp, model, history = best
        print(f"best on validation: {hp}")
    else:
        model, history = _fit("hybrid_multimodal", X, y, tr, va, len(labels), hp, cfg, verbose)
    model.save(str(run_dir / "model.keras"))
    probs = _predict(model, "hybrid_multimodal", X, te)
    metrics = with_uar(classification_metrics(y[te], probs.argmax(1), labels))
    rocs = roc_auc(y[te], probs, labels)
    plot_roc(rocs, run_dir / "roc_curves.png")
    rows = [{"model": "Hybrid CNN-RNN (hybrid_multimodal)", "inputs": "physio+features+face",
             "parameters": int(model.count_params()), "accuracy": metrics["accuracy"],
             "macro_f1": metrics["macro"]["f1"]}]
    if cfg.baselines:
        for arch, name in (("cnn_face", "CNN (facial images)"),
                           ("rnn_physio", "RNN (physiological signals)")):
            b, _ = _fit(arch, X, y, tr, va, len(labels), hp, cfg, 0)
            bm = classification_metrics(y[te], _predict(b, arch, X, te).argmax(1), labels)
            rows.insert(len(rows) - 1, {"model": f"{name} ({arch})",
                                        "inputs": "+".join(zoo.get(arch).inputs),
                                        "parameters": int(b.count_params()),
                                        "accuracy": bm["accuracy"],
                                        "macro_f1": bm["macro"]["f1"]})
    train_s = time.time() - t0
    table = format_comparison(rows)
    (run_dir / "comparison.md").write_text(table + "\n")
    metrics.update({"n_test": int(len(te)),
                    "evaluated_on": "held-out test (15%)",
                    "auc": {k: v["auc"] for k, v in rocs.items()},
                    "comparison": rows, "grid": grid_rows, "hyperparameters": hp,
                    "arch": "hybrid_multimodal", "parameters": int(model.count_params()),
                    "train_seconds": round(train_s, 1),
                    "data": {"windows": int(len(y)), "train": int(len(tr)),
                             "validation": int(len(va)), "test": int(len(te))}})
    calib = tr[calibration_pick(y[tr], CALIBRATION_SIZE, cfg.seed)]
    inputs = zoo.get("hybrid_multimodal").inputs
    np.savez(run_dir / "data.npz",
             **{f"calib_{n}": X[n][calib].astype(np.float32) for n in inputs},
             **{f"test_{n}": X[n][te].astype(np.float32) for n in inputs},
             test_y=y[te].astype(np.int64))
    _write_json(run_dir / "config.json", {
        "task": "emotion-multimodal", "arch": "hybrid_multimodal", "labels": labels,
        "signal": signal, "seed": cfg.seed, "hyperparameters": hp,
        "inputs": {n: list(X[n].shape[1:]) for n in inputs},
        "training": {k: v for k, v in asdict(cfg).items() if k not in ("task", "seed")}})
    _history_csv(history, run_dir / "history.csv")
    plot_history(history, run_dir / "training_history.png")
    text = write_report(metrics, run_dir)  # metrics.json, the text report, the confusions
    print(f"\nheld-out test ({len(te)} windows):")
    print(text)
    print("AUC per class: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics["auc"].items()))
    print("\n" + table)
    return metrics
