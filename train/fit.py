"""Training a beat classifier: data -> model -> fit -> best checkpoint -> evaluation.

Writes a run directory with ``model.keras``, ``config.json``, ``splits.npz``,
``history.csv``, ``metrics.json``, ``classification_report.txt``, ``training_history.png``,
``confusion_matrix.png``, ``confusion_matrix_normalized.png`` and TensorBoard ``logs/``; an
ensemble (``ensemble`` > 1) keeps each member's ``model-member{i}.keras``,
``history-member{i}.csv`` and ``logs-member{i}/`` instead of the history and logs, and
``model.keras`` is their merged model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitaledge.device.eval.metrics import classification_metrics
from vitaledge.device.io.aami import CLASSES

from . import zoo
from .backend import check_converged, fit_verbosity, keras, set_seed, tf
from .config import BeatTrainConfig
from .data import Prepared, prepare, save_split_ids
from .decide import decide_beats
from .ensemble import merge
from .evaluate import score, write_report
from .plots import plot_history
from .predict import predict
from .premature import describe as describe_rule
from .premature import fit_premature
from .report import write_ec57
from .run_dir import chief_task
from .splits import BY_PATIENT
from .weight_average import WeightAverage, input_batches


def distribution_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirrored when TF_CONFIG describes a cluster, Mirrored when several local
    GPUs are visible, otherwise TensorFlow's default (single-device) strategy."""
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run directory: always, except in a multi-worker
    cluster, where only the chief does (task ``chief``, or ``worker`` 0 when the cluster
    names no chief). The other workers run the same steps into a temporary directory."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return chief_task(resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict())


def selection_f1(metrics: dict, min_support: int) -> float:
    """The validation figure that picks the epoch: the mean F1 over the classes with at
    least ``min_support`` validation beats (over the classes present, when fewer than two
    have that many). A class that a few validation patients hold a handful of beats of,
    or none (predicted once, it counts with F1 0 in the plain macro average), makes that
    average jump by 0.1 from one epoch to the next on nothing; the epoch kept was then
    decided by noise (docs/results.md, "The epoch choice")."""
    per = [c for c in metrics["per_class"].values() if c["support"] > 0]
    big = [c for c in per if c["support"] >= min_support]
    use = big if len(big) >= 2 else per
    return float(np.mean([c["f1"] for c in use])) if use else 0.0


class ValMacroF1(keras.callbacks.Callback):
    """Adds ``val_macro_f1`` (:func:`selection_f1`) to the epoch logs so checkpointing and
    early stopping can use the metric that matters under class imbalance. Must precede
    those callbacks. Classes are decided as the device decides them (``decide(probs)``,
    default the argmax)."""

    def __init__(self, X, y: np.ndarray, decide=None, min_support: int = 20):
        super().__init__()
        self.X, self.y = X, y
        self.decide = decide or (lambda probs: probs.argmax(1))
        self.min_support = min_support

    def on_epoch_end(self, epoch, logs=None):
        probs = self.model.predict(self.X, batch_size=512, verbose=0)
        m = classification_metrics(self.y, self.decide(probs), list(CLASSES))
        if logs is not None:
            logs["val_macro_f1"] = selection_f1(m, self.min_support)


def check_inputs(cfg: BeatTrainConfig, arch: zoo.Arch) -> None:
    """A model with an "rr" input gets the default RR spec unless one is given; a
    window-only model refuses one (it could not use it)."""
    from vitaledge.device.dsp.rr import RRSpec
    from vitaledge.device.dsp.template import TemplateSpec

    for name, field, default in (("rr", "rr", RRSpec), ("template", "template", TemplateSpec)):
        if name in arch.inputs and getattr(cfg, field) is None:
            setattr(cfg, field, default().to_dict())
        if name not in arch.inputs and getattr(cfg, field) is not None:
            raise ValueError(f"architecture {arch.name!r} takes no {name!r} input; choose one "
                             f"of {[a for a in zoo.names('beat') if name in zoo.get(a).inputs]}")


def check_buildable(cfg: BeatTrainConfig, arch: zoo.Arch) -> None:
    """Build ``arch`` once on the configured inputs before anything is read or written: a
    window its layers shrink below one sample is a one-line ValueError, not TensorFlow's
    seven lines after the run folder was begun."""
    try:
        arch.build(input_shapes(cfg, arch), len(CLASSES))
    except ValueError as exc:
        raise ValueError(f"architecture {arch.name!r} cannot take a window of "
                         f"{cfg.window.length} samples ({cfg.window.fs:g} Hz): its layers "
                         "shrink it below one sample; widen the window (--before/--after) "
                         "or raise --fs") from exc
    finally:
        keras.backend.clear_session()


def input_shapes(cfg: BeatTrainConfig, arch: zoo.Arch):
    """The builder's input shape(s): the window, and the RR features for "rr" models."""
    from vitaledge.device.dsp.rr import FEATURES

    beat = (cfg.window.length, 1)
    if arch.inputs == ("beat",):
        return beat
    rr = cfg.rr_spec()
    shapes = {"beat": beat, "rr": (len(rr.features if rr else FEATURES),), "template": beat}
    return {k: shapes[k] for k in arch.inputs}


@dataclass
class Fit:
    """One network's training: where its kept weights are, its history and figures."""

    path: Path
    history: dict
    best_epoch: int
    averaged: int | None
    parameters: int
    seconds: float


def _fit_network(cfg: BeatTrainConfig, arch: zoo.Arch, p: Prepared, signal, run_dir: Path,
                 tag: str, strategy: tf.distribute.Strategy, verbose: int) -> Fit:
    """Build, train and keep (``run_dir/model{tag}.keras``) one network of ``arch``; its
    epochs are logged to ``history{tag}.csv``."""
    with strategy.scope():
        model = arch.build(input_shapes(cfg, arch), len(CLASSES))
        model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    n_params = int(model.count_params())
    print(f"model {cfg.arch}: {n_params:,} parameters")
    ckpt = run_dir / f"model{tag}.keras"
    average = (WeightAverage(cfg.epochs // 2 + 1, input_batches(p.X_fit, cfg.batch_size))
               if cfg.checkpoint == "average" else None)
    keep = [average] if average is not None else [
        keras.callbacks.ModelCheckpoint(str(ckpt), monitor="val_macro_f1", mode="max",
                                        save_best_only=True),
        keras.callbacks.EarlyStopping(monitor="val_macro_f1", mode="max",
                                      patience=cfg.patience)]
    callbacks = [
        ValMacroF1(p.val.inputs(), p.val.y, lambda probs: decide_beats(signal, probs, p.val),
                   cfg.val_min_support),
        *keep,
        keras.callbacks.CSVLogger(str(run_dir / f"history{tag}.csv")),
        keras.callbacks.TensorBoard(log_dir=str(run_dir / f"logs{tag}"), histogram_freq=0),
    ]
    t0 = time.time()
    hist = model.fit(p.X_fit, p.y_fit, validation_data=(p.val.inputs(), p.val.y),
                     epochs=cfg.epochs, batch_size=cfg.batch_size, class_weight=p.class_weight,
                     callbacks=callbacks, shuffle=True, verbose=verbose)
    check_converged(hist.history, ckpt)
    seconds = time.time() - t0
    if average is not None and is_chief(strategy):
        model.save(str(ckpt))  # the averaged weights
    return Fit(ckpt, hist.history, int(np.argmax(hist.history["val_macro_f1"])) + 1,
               average.span if average is not None else None, n_params, seconds)


def train_beat(cfg: BeatTrainConfig, run_dir: Path, verbose: int | None = None,
               data: Prepared | None = None) -> dict:
    """Train ``cfg.arch`` on the configured beats, write the run directory, return metrics.
    Under a multi-worker strategy every worker trains (the global batch is ``batch_size``,
    split between the workers); only the chief writes ``run_dir``."""
    strategy = distribution_strategy()  # first: MultiWorkerMirrored must precede other ops
    if not is_chief(strategy):
        scratch = Path(tempfile.mkdtemp(prefix="vitaledge-worker-"))
        try:
            return _train_beat(cfg, scratch, verbose, data, strategy)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return _train_beat(cfg, Path(run_dir), verbose, data, strategy)


def network_seed(cfg: BeatTrainConfig) -> int:
    """The first network's seed: ``network_seed`` when given, else ``seed``."""
    return cfg.seed if cfg.network_seed is None else cfg.network_seed


def _train_beat(cfg: BeatTrainConfig, run_dir: Path, verbose: int | None,
                data: Prepared | None, strategy: tf.distribute.Strategy) -> dict:
    verbose = fit_verbosity(verbose)
    arch = zoo.get(cfg.arch, "beat")
    check_inputs(cfg, arch)
    check_buildable(cfg, arch)  # before the seed: its random weights draw nothing after it
    set_seed(cfg.seed)
    p = data if data is not None else prepare(cfg)
    if len(p.y_fit) == 0 or len(p.val) == 0:
        raise ValueError("not enough beats to train and validate")
    run_dir.mkdir(parents=True, exist_ok=True)  # only once the data is known to be good
    if cfg.s_rule == "timing":
        rule = fit_premature(p.train, cfg.s_rule_threshold,
                             max_irregularity=cfg.s_rule_irregularity)
        cfg.premature = rule.to_dict()
        print(describe_rule(rule))
    if cfg.v_rule == "template":
        from vitaledge.device.dsp.dominant import DominantRule

        cfg.dominant = DominantRule().to_dict()
    if cfg.f_rule == "normal":
        from vitaledge.device.dsp.fusion import FusionRule

        cfg.fusion = FusionRule().to_dict()
    if cfg.vote == "similar":
        from vitaledge.device.dsp.similar_beats import SimilarBeatVote

        cfg.similar = SimilarBeatVote().to_dict()
    signal = cfg.beat_signal()
    cfg.save(run_dir / "config.json")
    save_split_ids(run_dir / "splits.npz", p)

    print("training beats per class:", p.description["counts"]["fit_after_balance"])
    fits = []
    first_seed = network_seed(cfg)
    for member in range(cfg.ensemble):
        # member 0 is exactly the single network a run without an ensemble trains
        if member or cfg.network_seed is not None:
            set_seed(first_seed + member)
        tag = "" if cfg.ensemble == 1 else f"-member{member}"
        fits.append(_fit_network(cfg, arch, p, signal, run_dir, tag, strategy, verbose))
        if cfg.ensemble > 1:
            print(f"member {member + 1}/{cfg.ensemble}: kept epoch {fits[-1].best_epoch}")
    first = fits[0]
    train_s = sum(f.seconds for f in fits)
    plot_history(first.history, run_dir / "training_history.png")
    if not is_chief(strategy):  # ModelCheckpoint saved nothing here; the chief evaluates
        return {"chief": False, "epochs_run": len(first.history["loss"]),
                "history": first.history}
    ckpt = run_dir / "model.keras"
    members = ([keras.models.load_model(str(f.path)) for f in fits] if cfg.ensemble > 1
               else [])
    if members:
        merge(members, name=f"{cfg.arch}_x{cfg.ensemble}").save(str(ckpt))

    best = keras.models.load_model(str(ckpt))
    eval_set, eval_name = (p.test, "test") if len(p.test) else (p.val, "validation")
    probs = predict(best, eval_set.inputs())
    pred = decide_beats(signal, probs, eval_set)
    metrics = classification_metrics(eval_set.y, pred, list(CLASSES))
    if signal.premature or signal.dominant or signal.similar:  # what the network alone says
        metrics["network_only"] = score(probs, eval_set.y)
    if len(p.test):
        np.savez_compressed(run_dir / "test_predictions.npz", record=p.test.record.astype(str),
                            sample=p.test.sample, y=p.test.y, probs=probs, pred=pred)
    if cfg.split in BY_PATIENT and len(p.test):
        write_ec57(p.test, pred, run_dir,
                   f"{cfg.arch}, trained on {len(set(p.train.record))} patients "
                   f"(split {cfg.split}); tested on {', '.join(sorted(set(p.test.record)))}")
    metrics.update({
        "evaluated_on": eval_name,
        "arch": cfg.arch,
        "parameters": first.parameters * cfg.ensemble,
        "epochs_run": len(first.history["loss"]),  # member 0's; each one's under "members"
        "best_epoch": first.best_epoch,
        "checkpoint": cfg.checkpoint,
        "averaged_epochs": first.averaged,
        "train_seconds": round(train_s, 1),
        "data": p.description,
    })
    if members:  # each member alone on the same beats, beside the ensemble
        metrics["ensemble"] = cfg.ensemble
        metrics["members"] = []
        for i, (f, m) in enumerate(zip(fits, members, strict=True)):
            alone = classification_metrics(
                eval_set.y, decide_beats(signal, predict(m, eval_set.inputs()), eval_set),
                list(CLASSES))
            metrics["members"].append({"seed": first_seed + i, "best_epoch": f.best_epoch,
                                       "epochs_run": len(f.history["loss"]),
                                       "accuracy": alone["accuracy"],
                                       "macro_f1": alone["macro"]["f1"]})
    text = write_report(metrics, run_dir)
    print(f"\nheld-out {eval_name} beats: {metrics['n']}")
    print(text)
    return metrics
