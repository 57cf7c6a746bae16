"""Training the speech-emotion model (seed 004): clips -> log-mel images -> fit -> report.

The ``seed`` recipe is the seed's: SGD at 0.01, early stopping with patience 15 on
validation accuracy and the best checkpoint on it, noise-injection copies of the training
clips. The ``robust`` recipe (and each of its levers as its own option) adds per-utterance
feature normalization, Adam with a cosine schedule, SpecAugment-style masks, gain jitter and
class weights, speed perturbation (``speed_perturb``: training waveforms played faster or
slower) and keeps the best epoch of the second half of its schedule; ``mixup`` (pairs of
training inputs and their labels blended) and ``freq_warp`` (the mel axis stretched) are
levers that neither recipe sets. Splits:
``actor`` (given test speakers), ``actors`` (leave-speakers-out K-fold,
:mod:`.speech_folds`), ``none`` (every speaker trains; validation speakers carved out),
``random``. Log-mel spectrograms are cached on disk (:mod:`.speech_cache`).

A run directory: ``model.keras``, ``config.json``, ``data.npz`` (``calib_mel``,
``test_mel``, ``test_y``), ``metrics.json`` (accuracy, UAR, macro F1, per class, confusion,
epoch and run times), ``classification_report.txt``, ``history.csv``,
``training_history.png`` and confusion matrix plots.
"""

from __future__ import annotations

import inspect
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from vitaledge.device.eval.metrics import classification_metrics

from . import ensemble, zoo
from .backend import check_converged, fit_verbosity, keras, set_seed
from .calibration import CALIBRATION_SIZE, calibration_pick
from .evaluate import with_uar, write_report
from .plots import plot_history
from .speech_cache import MelCache
from .speech_config import SPEECH_SPLITS, TASK, SpeechTrainConfig
from .speech_data import (
    Clip,
    clip_inputs,
    describe,
    find_clips,
    speaker_genders,
    speaker_split,
    split_clips,
    synthetic_clips,
)
from .weight_average import WeightAverage, input_batches


class TimeBudget(keras.callbacks.Callback):
    """Stops training once ``minutes`` of wall-clock time have passed (checked per epoch),
    so a run on a shared machine ends on time with its best checkpoint."""

    def __init__(self, minutes: float):
        super().__init__()
        self.seconds = minutes * 60.0
        self.t0 = time.time()
        self.stopped_epoch: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        if time.time() - self.t0 > self.seconds:
            self.stopped_epoch = epoch + 1
            self.model.stop_training = True


class LateCheckpoint(keras.callbacks.Callback):
    """Saves the model at the epoch of best validation accuracy from epoch ``first`` (1-based)
    on; ``epoch`` is the one saved (None: none yet)."""

    def __init__(self, path: Path, first: int):
        super().__init__()
        self.path, self.first = str(path), first
        self.best, self.epoch = -np.inf, None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("val_accuracy")
        if epoch + 1 >= self.first and value is not None and value > self.best:
            self.best, self.epoch = float(value), epoch + 1
            self.model.save(self.path)


class EpochTimer(keras.callbacks.Callback):
    """Wall-clock seconds of each epoch (validation included)."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.time()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.time() - self._t)


def warp_mel(x: np.ndarray, factor: float) -> np.ndarray:
    """``x`` (images, n_mels, frames, 1) with its mel-band axis stretched by ``factor``
    about band 0: band m takes the value at band m / factor (linear interpolation, the top
    band held beyond the edge). A factor above 1 moves spectral structure up, like a
    shorter vocal tract: an approximation on the mel image of vocal tract length
    perturbation (Jaitly & Hinton, ICML 2013 workshop), a speaker-variation augmentation."""
    n_mels = x.shape[1]
    src = np.arange(n_mels) / factor
    lo = np.clip(np.floor(src).astype(int), 0, n_mels - 1)
    hi = np.clip(lo + 1, 0, n_mels - 1)
    w = np.clip(src - lo, 0.0, 1.0).astype(x.dtype)[None, :, None, None]
    return (1 - w) * x[:, lo] + w * x[:, hi]


def spec_augment(x: np.ndarray, cfg: SpeechTrainConfig, rng: np.random.Generator) -> np.ndarray:
    """A training copy of one input (images, n_mels, frames, 1): its mel axis stretched by
    a factor uniform in 1 +- ``freq_warp`` (:func:`warp_mel`), ``freq_masks`` mel-band
    masks (the same bands in every image), ``time_masks`` frame masks per image, each up to
    its width and filled with the input's mean, then a level offset uniform in
    +-``gain_db``. Never applied to validation or test inputs."""
    x = x.copy()
    if cfg.freq_warp > 0:
        x = warp_mel(x, float(rng.uniform(1 - cfg.freq_warp, 1 + cfg.freq_warp)))
    fill = float(x.mean())
    n_img, n_mels, n_frames = x.shape[:3]
    for _ in range(cfg.freq_masks):
        w = int(rng.integers(0, min(cfg.freq_mask_width, n_mels) + 1))
        if w:
            f0 = int(rng.integers(0, n_mels - w + 1))
            x[:, f0:f0 + w] = fill
    for i in range(n_img):
        for _ in range(cfg.time_masks):
            w = int(rng.integers(0, min(cfg.time_mask_width, n_frames) + 1))
            if w:
                t0 = int(rng.integers(0, n_frames - w + 1))
                x[i, :, t0:t0 + w] = fill
    if cfg.gain_db > 0:
        x += np.float32(rng.uniform(-cfg.gain_db, cfg.gain_db))
    return x


def augments(cfg: SpeechTrainConfig) -> bool:
    return bool(cfg.time_masks and cfg.time_mask_width or cfg.freq_masks
                and cfg.freq_mask_width or cfg.gain_db > 0 or cfg.freq_warp > 0)


def speed_factors(cfg: SpeechTrainConfig) -> tuple[float, ...]:
    """The speed-perturbed variants' factors, ``(1 - s, 1 + s)``; none when off."""
    s = float(cfg.speed_perturb)
    return (1.0 - s, 1.0 + s) if s > 0 else ()


def mixup_batch(x: np.ndarray, y: np.ndarray, n_classes: int, alpha: float,
                rng: np.random.Generator, weights: np.ndarray | None = None):
    """Mixup of one training batch: one lambda ~ Beta(alpha, alpha) for the batch, each
    example i blended with example j = perm(i) of the same batch (a random permutation),
    inputs ``lam * x_i + (1 - lam) * x_j`` and targets ``lam * e(y_i) + (1 - lam) * e(y_j)``
    (one-hot e), for a categorical cross-entropy loss.

    Returns ``(x_mixed, targets, sample_weights)``; ``sample_weights`` is None without
    class ``weights``. With them, the loss is the class-weighted cross-entropy of the
    mixed target, ``-sum_c w_c t_c log p_c = lam * w(y_i) * CE(y_i) + (1 - lam) * w(y_j) *
    CE(y_j)``: each label's share of the target keeps its own class weight, as in the
    integer-label loss (one-hot t gives ``w(y) * CE(y)`` exactly), so the classes stay
    balanced. Keras weighs a whole sample, so this is passed as the per-sample weight
    ``s = lam * w(y_i) + (1 - lam) * w(y_j)`` (the mixed weight) with the target
    re-weighted to ``w * t / s`` (still sums to 1): ``s * CE(w * t / s) = -sum_c w_c t_c
    log p_c``. (Weighting the plain mixed target by ``s`` would instead give each label's
    share the other's weight in part, diluting the balance.)"""
    lam = float(rng.beta(alpha, alpha))
    perm = rng.permutation(len(x))
    onehot = np.eye(n_classes, dtype=np.float32)[y]
    xm = (lam * x + (1.0 - lam) * x[perm]).astype(np.float32)
    t = lam * onehot + (1.0 - lam) * onehot[perm]
    if weights is None:
        return xm, t.astype(np.float32), None
    wt = t * weights[None, :]
    s = wt.sum(axis=1)
    safe = np.where(s > 0, s, 1.0)
    return xm, (wt / safe[:, None]).astype(np.float32), s.astype(np.float32)


class SpeechBatches(keras.utils.Sequence):
    """Shuffled training batches with :func:`spec_augment` drawn afresh every epoch,
    with ``cfg.mixup`` > 0 mixed by :func:`mixup_batch` (one-hot/soft targets for a
    categorical cross-entropy; integer labels otherwise) and, when given, per-sample class
    weights. With ``X_speed`` (the inputs at each of :func:`speed_factors`, stacked, row
    for row as ``X``), each example of a batch is drawn from ``X`` or one of them with
    equal odds, afresh every epoch (before :func:`spec_augment`)."""

    def __init__(self, X: np.ndarray, y: np.ndarray, cfg: SpeechTrainConfig,
                 weights: np.ndarray | None, X_speed: np.ndarray | None = None):
        super().__init__()
        self.X, self.y, self.cfg, self.weights = X, y, cfg, weights
        if X_speed is not None and X_speed.shape[1:] != X.shape:
            raise ValueError(f"speed variants {X_speed.shape} do not match inputs {X.shape}")
        self.X_speed = X_speed
        self.rng = np.random.default_rng(cfg.seed + 7)
        self.order = self.rng.permutation(len(X))

    def __len__(self) -> int:
        return -(-len(self.X) // self.cfg.batch_size)

    def __getitem__(self, i: int):
        idx = self.order[i * self.cfg.batch_size:(i + 1) * self.cfg.batch_size]
        xb = self.X[idx]  # a copy (fancy indexing)
        if self.X_speed is not None:
            pick = self.rng.integers(0, 1 + len(self.X_speed), size=len(idx))
            for v in range(len(self.X_speed)):
                xb[pick == v + 1] = self.X_speed[v][idx[pick == v + 1]]
        if augments(self.cfg):
            xb = np.stack([spec_augment(x, self.cfg, self.rng) for x in xb])
        if self.cfg.mixup > 0:
            xb, tb, sw = mixup_batch(xb, self.y[idx], len(self.cfg.labels), self.cfg.mixup,
                                     self.rng, self.weights)
            return (xb, tb) if sw is None else (xb, tb, sw)
        if self.weights is None:
            return xb, self.y[idx]
        return xb, self.y[idx], self.weights[self.y[idx]]

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.X))


def class_weight_vector(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Balanced weights n / (k n_c) for the k classes present (absent classes weigh 0)."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(n_classes)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return w.astype(np.float32)


def make_optimizer(cfg: SpeechTrainConfig, steps_per_epoch: int):
    lr = cfg.learning_rate
    if cfg.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(cfg.learning_rate,
                                                    decay_steps=max(1, cfg.epochs
                                                                    * steps_per_epoch))
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(lr)
    return keras.optimizers.SGD(lr, momentum=cfg.momentum)


def load_clips(cfg: SpeechTrainConfig) -> list[Clip]:
    """The configured corpora merged, or synthetic clips; labels outside cfg.labels dropped."""
    if cfg.synth_per_class > 0:
        clips = synthetic_clips(cfg.synth_per_class, cfg.synth_speakers, cfg.signal, cfg.seed)
    else:
        if not cfg.data:
            raise ValueError("no data: give corpus directories or synthetic clips")
        clips = [c for d in cfg.data for c in find_clips(d, cfg.corpus, cfg.calm)]
    return [c for c in clips if c.label in cfg.labels]


def make_parts(cfg: SpeechTrainConfig, clips: list[Clip]) -> dict[str, np.ndarray]:
    """fit/val/test indices per the configured split (``actors`` folds give their test
    speakers in ``test_actors``; ``none`` has no test part)."""
    if SPEECH_SPLITS[cfg.split].by_speaker:  # test speakers: a fold's (none: no test part)
        return speaker_split(clips, list(cfg.test_actors or []), cfg.val_fraction,
                             cfg.seed + cfg.fold)
    return split_clips(clips, cfg.split, cfg.test_actors, cfg.test_fraction,
                       cfg.val_fraction, cfg.seed)


def split_description(cfg: SpeechTrainConfig, clips: list[Clip],
                      parts: dict[str, np.ndarray]) -> dict:
    speakers = {k: sorted({clips[i].speaker for i in v}) for k, v in parts.items()}
    genders = speaker_genders(clips)
    who = {k: ", ".join(f"{s} ({genders[s][0] if genders[s] != 'unknown' else '?'})"
                        for s in speakers[k]) for k in speakers}
    text = SPEECH_SPLITS[cfg.split].describe(cfg, who)
    return {"method": cfg.split, "description": text, "speakers": speakers,
            "genders": {s: genders[s] for s in sorted(genders)},
            "calm": cfg.calm,
            "counts": {k: describe([clips[i] for i in v]) for k, v in parts.items()}}


@dataclass
class FittedNetwork:
    """One trained network of a run: where its kept weights are and how it got there."""

    path: Path
    history: dict
    kept: int               # the epoch whose weights were kept (the last, when averaged)
    averaged: list[int] | None  # [first, last] epoch averaged (``checkpoint="average"``)
    seconds: float
    epoch_seconds: list[float]
    budget_hit: bool


def fit_network(cfg: SpeechTrainConfig, X_fit: np.ndarray, y_fit: np.ndarray,
                X_speed: np.ndarray | None, X_val: np.ndarray, y_val: np.ndarray,
                path: Path, history_csv: Path, verbose: int) -> FittedNetwork:
    """Build ``cfg.arch``, fit it per ``cfg``'s recipe and checkpoint rule, save the kept
    weights at ``path`` and the epochs' figures at ``history_csv``."""
    sig = cfg.signal
    arch = zoo.get(cfg.arch, TASK)
    knobs = {"width": cfg.width, "lstm_units": cfg.lstm_units, "pools": tuple(cfg.pools)}
    takes = inspect.signature(arch.build).parameters
    model = arch.build(sig.input_shape, len(cfg.labels),
                       **{k: v for k, v in knobs.items() if k in takes})
    steps = -(-len(X_fit) // cfg.batch_size)
    # mixup trains on soft targets: categorical cross-entropy, validation labels one-hot
    # too (same loss and metric); without it, integer labels as ever
    soft = cfg.mixup > 0
    val_target = np.eye(len(cfg.labels), dtype=np.float32)[y_val] if soft else y_val
    model.compile(optimizer=make_optimizer(cfg, steps),
                  loss="categorical_crossentropy" if soft
                  else "sparse_categorical_crossentropy", metrics=["accuracy"])
    n_params = int(model.count_params())
    print(f"model {cfg.arch}: {n_params:,} parameters; recipe {cfg.recipe}: {cfg.optimizer} "
          f"lr {cfg.learning_rate:g} {cfg.schedule}, feature norm {sig.feature_norm}, "
          f"masks t{cfg.time_masks}x{cfg.time_mask_width} f{cfg.freq_masks}x"
          f"{cfg.freq_mask_width}, gain +-{cfg.gain_db:g} dB, class weights "
          f"{cfg.class_weights}" + (f", mixup {cfg.mixup:g}" if soft else "")
          + (f", mel warp +-{cfg.freq_warp:g}" if cfg.freq_warp else "")
          + (f", speed perturbation +-{cfg.speed_perturb:g}" if cfg.speed_perturb else ""))

    ckpt = Path(path)
    budget = TimeBudget(cfg.time_budget_min) if cfg.time_budget_min else None
    timer = EpochTimer()
    second_half = cfg.epochs // 2 + 1
    late = LateCheckpoint(ckpt, second_half) if cfg.checkpoint == "late-best" else None
    # averaging: BatchNorm statistics are gathered again on the clean-speed training inputs
    average = (WeightAverage(second_half, input_batches(X_fit, cfg.batch_size))
               if cfg.checkpoint == "average" else None)
    keep = late or average or keras.callbacks.ModelCheckpoint(
        str(ckpt), monitor="val_accuracy", mode="max", save_best_only=cfg.checkpoint == "best")
    callbacks = [keep, keras.callbacks.CSVLogger(str(history_csv)), timer] + (
        [budget] if budget else [])
    if cfg.checkpoint == "best":  # the others run the whole schedule: no early stop
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max",
                                                       patience=cfg.patience))
    if cfg.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=max(2, cfg.patience // 3)))
    weights = (class_weight_vector(y_fit, len(cfg.labels))
               if cfg.class_weights == "balanced" else None)
    t0 = time.time()
    if weights is None and not augments(cfg) and not soft and X_speed is None:
        # the seed's: Keras shuffles
        hist = model.fit(X_fit, y_fit, validation_data=(X_val, y_val), epochs=cfg.epochs,
                         batch_size=cfg.batch_size, callbacks=callbacks, shuffle=True,
                         verbose=verbose)
    else:
        hist = model.fit(SpeechBatches(X_fit, y_fit, cfg, weights, X_speed),
                         validation_data=(X_val, val_target), epochs=cfg.epochs,
                         callbacks=callbacks, verbose=verbose)
    check_converged(hist.history, ckpt)
    train_s = time.time() - t0
    if average is not None or (late is not None and late.epoch is None):
        model.save(str(ckpt))  # the averaged weights, or a time budget hit before the 2nd half
    epochs_run = len(hist.history["loss"])
    best_epoch = int(np.argmax(hist.history["val_accuracy"])) + 1
    kept = (best_epoch if cfg.checkpoint == "best"
            else late.epoch if late is not None and late.epoch is not None else epochs_run)
    return FittedNetwork(ckpt, hist.history, kept,
                         average.span if average is not None else None, train_s,
                         list(timer.seconds), bool(budget and budget.stopped_epoch))


def train_speech(cfg: SpeechTrainConfig, run_dir: Path, verbose: int | None = None,
                 clips: list[Clip] | None = None, cache: MelCache | None = None) -> dict:
    """Train the speech-emotion model per ``cfg`` (one fold of ``split="actors"``, or any
    other split), write ``run_dir``, return the metrics. The K-fold protocol is
    :func:`.speech_folds.run_speaker_folds`, which calls this once per fold; ``clips`` and
    ``cache`` let it load the corpus once for every fold."""
    cfg.check()
    kind = SPEECH_SPLITS[cfg.split]
    if kind.folds and cfg.fold == 0:
        raise ValueError(f"split {cfg.split!r} runs through speech_folds.run_speaker_folds "
                         "(one train_speech per fold)")
    run_t0 = time.time()
    run_dir = Path(run_dir)
    verbose = fit_verbosity(verbose)
    set_seed(cfg.seed + cfg.fold)
    clips = load_clips(cfg) if clips is None else clips
    cache = cache if cache is not None else MelCache(cfg.cache)
    parts = make_parts(cfg, clips)
    if kind.test_is_val:
        parts["test"] = parts["val"]  # scored on the validation speakers
    if kind.by_speaker:
        cfg = replace(cfg, val_actors=sorted({clips[i].speaker for i in parts["val"]}))
    for k in ("fit", "val", "test"):
        if len(parts[k]) == 0:
            raise ValueError(f"{k} set is empty ({len(clips)} clips); use more data")
    split = split_description(cfg, clips, parts)
    print(split["description"])
    print("clips fit/val/test:", {k: len(v) for k, v in parts.items()})

    t0 = time.time()
    sig = cfg.signal
    X_fit, y_fit, _ = clip_inputs([clips[i] for i in parts["fit"]], sig, cfg.augment,
                                  tuple(cfg.snr_db), cfg.seed, cache)
    # speed perturbation: the training inputs again at each factor (validation and test
    # never), row for row as X_fit; each epoch draws one version per example
    X_speed = np.stack([clip_inputs([clips[i] for i in parts["fit"]], sig, cfg.augment,
                                    tuple(cfg.snr_db), cfg.seed, cache, speed=f)[0]
                        for f in speed_factors(cfg)]) if speed_factors(cfg) else None
    X_val, y_val, _ = clip_inputs([clips[i] for i in parts["val"]], sig, cache=cache)
    X_test, y_test, _ = clip_inputs([clips[i] for i in parts["test"]], sig, cache=cache)
    feature_s = time.time() - t0
    print(f"inputs {X_fit.shape[1:]}: fit {len(X_fit)} (with {cfg.augment} noisy "
          f"cop{'y' if cfg.augment == 1 else 'ies'} per clip"
          + (f"; each also at speed {', '.join(f'{f:g}' for f in speed_factors(cfg))}"
             if X_speed is not None else "") + f"), val {len(X_val)}, "
          f"test {len(X_test)} ({feature_s:.1f} s; log-mel cache "
          f"{'off' if cache.root is None else cache.root}: {cache.hits} hits, "
          f"{cache.misses} computed)")

    run_dir.mkdir(parents=True, exist_ok=True)
    # an earlier run's metrics must not stand beside this run's config if this one stops
    # before it writes its own (a fold table reads the pair)
    (run_dir / "metrics.json").unlink(missing_ok=True)
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    clean = np.arange(len(X_fit)) % (1 + cfg.augment) == 0
    calib = np.flatnonzero(clean)[calibration_pick(y_fit[clean], CALIBRATION_SIZE, cfg.seed)]
    np.savez_compressed(run_dir / "data.npz", calib_mel=X_fit[calib], test_mel=X_test,
                        test_y=y_test, labels=np.array(cfg.labels))

    fits = []
    deadline = time.time() + 60 * cfg.time_budget_min if cfg.time_budget_min else None
    for member in range(cfg.ensemble):
        if member:  # member 0 is exactly the single network a run without an ensemble trains
            set_seed(cfg.seed + member + cfg.fold)
        tag = "" if cfg.ensemble == 1 else f"-member{member}"
        # the time budget is the whole run's: each member gets what the ones before left
        # (at least one epoch)
        left = None if deadline is None else max(1e-3, (deadline - time.time()) / 60)
        fits.append(fit_network(replace(cfg, seed=cfg.seed + member, time_budget_min=left),
                                X_fit, y_fit, X_speed, X_val, y_val,
                                run_dir / f"model{tag}.keras", run_dir / f"history{tag}.csv",
                                verbose))
        if cfg.ensemble > 1:
            print(f"member {member + 1}/{cfg.ensemble}: kept epoch {fits[-1].kept}")
    first = fits[0]
    plot_history(first.history, run_dir / "training_history.png")
    ckpt = run_dir / "model.keras"
    members = ([keras.models.load_model(str(f.path)) for f in fits] if cfg.ensemble > 1
               else [])
    if members:
        ensemble.merge(members, name=f"{cfg.arch}_x{cfg.ensemble}").save(str(ckpt))
    train_s = sum(f.seconds for f in fits)
    epoch_times = [t for f in fits for t in f.epoch_seconds]

    best = keras.models.load_model(str(ckpt))  # what the run leaves, scored as saved
    probs = best.predict(X_test, batch_size=64, verbose=0)
    metrics = with_uar(classification_metrics(y_test, probs.argmax(1), cfg.labels))
    metrics.update({
        "n_test": int(len(y_test)),
        "evaluated_on": (f"validation speakers (split {cfg.split})"
                         if SPEECH_SPLITS[cfg.split].test_is_val else "held-out test"),
        "split": split,
        "arch": cfg.arch,
        "recipe": cfg.recipe,
        "parameters": int(best.count_params()),
        "epochs_run": len(first.history["loss"]),
        "best_epoch": int(np.argmax(first.history["val_accuracy"])) + 1,
        "best_val_accuracy": float(np.max(first.history["val_accuracy"])),
        "checkpoint": cfg.checkpoint,
        "kept_epoch": first.kept,
        "averaged_epochs": first.averaged,
        "stopped_by_time_budget": any(f.budget_hit for f in fits),
        "train_seconds": round(train_s, 1),
        "feature_seconds": round(feature_s, 1),
        "epoch_seconds": round(float(np.mean(epoch_times)), 2) if epoch_times else None,
        "feature_cache": {"dir": None if cache.root is None else str(cache.root),
                          "hits": cache.hits, "computed": cache.misses},
        "run_seconds": round(time.time() - run_t0, 1),
    })
    if members:  # each member alone on the same clips, beside the ensemble
        metrics["members"] = [
            {"seed": cfg.seed + i, "kept_epoch": f.kept,
             "best_val_accuracy": float(np.max(f.history["val_accuracy"])),
             "accuracy": float(np.mean(m.predict(X_test, batch_size=64, verbose=0).argmax(1)
                                       == y_test))}
            for i, (f, m) in enumerate(zip(fits, members, strict=True))]
    text = write_report(metrics, run_dir)
    print(f"\nheld-out clips: {len(y_test)} ({split['description']})")
    print(text)
    print(f"UAR {metrics['uar']:.4f}  macro F1 {metrics['macro_f1']:.4f}  one epoch "
          f"{metrics['epoch_seconds']} s, training {train_s:.1f} s, whole run "
          f"{metrics['run_seconds']} s")
    return metrics
