"""Training the speech-emotion model (seed 004): clips -> log-mel images -> fit -> report.

SGD (learning rate 0.01), early stopping with patience 15 on validation accuracy and the
best checkpoint on it, as the seed; noise-injection augmentation of the training clips;
speaker-independent (``actor``) or random split. Writes a run directory: ``model.keras``,
``config.json``, ``data.npz`` (``calib_mel``, ``test_mel``, ``test_y``), ``metrics.json``,
``classification_report.txt``, ``history.csv``, ``training_history.png`` and confusion
matrix plots.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from vitaledge.device.eval.metrics import classification_metrics
from vitaledge.device.inputs.mel import SpeechSignal

from . import zoo
from .backend import keras, set_seed
from .evaluate import write_report
from .plots import plot_history
from .speech_data import (
    EMOTIONS,
    Clip,
    clip_inputs,
    describe,
    find_clips,
    split_clips,
    synthetic_clips,
)

TASK = "emotion-speech"
CALIBRATION_SIZE = 300


@dataclass
class SpeechTrainConfig:
    """One speech-emotion training run, saved as ``config.json`` (unknown keys refused)."""

    data: list[str] = field(default_factory=list)  # corpus directories (merged)
    corpus: str = "auto"
    calm: str = "neutral"
    synth_per_class: int = 0       # > 0: synthetic clips instead of ``data``
    synth_speakers: int = 4
    split: str = "actor"           # actor | random
    test_actors: list[str] | None = None
    test_fraction: float = 0.2
    val_fraction: float = 0.15
    augment: int = 1               # noisy copies per training clip
    snr_db: list[float] = field(default_factory=lambda: [15.0, 30.0])
    epochs: int = 100
    patience: int = 15
    batch_size: int = 32
    learning_rate: float = 0.01
    momentum: float = 0.0
    width: float = 1.0             # filter-count multiplier (1.0 = the seed's network)
    lstm_units: int = 256
    pools: list[int] = field(default_factory=lambda: [4, 4, 4, 2])
    time_budget_min: float | None = None
    seed: int = 0
    arch: str = "tdcnnlstm_speech"
    task: str = TASK
    labels: list[str] = field(default_factory=lambda: list(EMOTIONS))
    signal: SpeechSignal = field(default_factory=SpeechSignal)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["signal"] = self.signal.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SpeechTrainConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"config: unknown keys {sorted(unknown)}")
        d = dict(d)
        if "signal" in d:
            d["signal"] = SpeechSignal.from_dict(d["signal"])
        return cls(**d)

    @classmethod
    def load(cls, path: Path) -> SpeechTrainConfig:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: not a valid speech training config: {exc}") from exc


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


def load_clips(cfg: SpeechTrainConfig) -> list[Clip]:
    """The configured corpora merged, or synthetic clips; labels outside cfg.labels dropped."""
    if cfg.synth_per_class > 0:
        clips = synthetic_clips(cfg.synth_per_class, cfg.synth_speakers, cfg.signal, cfg.seed)
    else:
        if not cfg.data:
            raise ValueError("no data: give corpus directories or synthetic clips")
        clips = [c for d in cfg.data for c in find_clips(d, cfg.corpus, cfg.calm)]
    return [c for c in clips if c.label in cfg.labels]


def calibration_subset(y: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices of up to ``size`` items, as equal per class as the classes allow."""
    rng = np.random.default_rng(seed)
    per_class = {c: list(rng.permutation(np.flatnonzero(y == c))) for c in np.unique(y)}
    chosen: list[int] = []
    while len(chosen) < size and any(per_class.values()):
        for c in per_class:
            if per_class[c] and len(chosen) < size:
                chosen.append(int(per_class[c].pop()))
    return np.sort(np.asarray(chosen, dtype=np.int64))


def split_description(cfg: SpeechTrainConfig, clips: list[Clip],
                      parts: dict[str, np.ndarray]) -> dict:
    speakers = {k: sorted({clips[i].speaker for i in v}) for k, v in parts.items()}
    if cfg.split == "actor":
        text = (f"speaker-independent: test speakers {', '.join(speakers['test'])}; "
                f"fit/validation from {', '.join(speakers['fit'])} "
                f"(validation {cfg.val_fraction:.0%} of their clips, stratified)")
    else:
        text = (f"random stratified: test {cfg.test_fraction:.0%}, validation "
                f"{cfg.val_fraction:.0%} of the rest; speakers mixed")
    return {"method": cfg.split, "description": text, "speakers": speakers,
            "counts": {k: describe([clips[i] for i in v]) for k, v in parts.items()}}


def train_speech(cfg: SpeechTrainConfig, run_dir: Path, verbose: int | None = None) -> dict:
    """Train the speech-emotion model per ``cfg``, write ``run_dir``, return the metrics."""
    run_dir = Path(run_dir)
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    set_seed(cfg.seed)
    clips = load_clips(cfg)
    parts = split_clips(clips, cfg.split, cfg.test_actors, cfg.test_fraction,
                        cfg.val_fraction, cfg.seed)
    for k in ("fit", "val", "test"):
        if len(parts[k]) == 0:
            raise ValueError(f"{k} set is empty ({len(clips)} clips); use more data")
    split = split_description(cfg, clips, parts)
    print(split["description"])
    print("clips fit/val/test:", {k: len(v) for k, v in parts.items()})

    t0 = time.time()
    sig = cfg.signal
    X_fit, y_fit, _ = clip_inputs([clips[i] for i in parts["fit"]], sig, cfg.augment,
                                  tuple(cfg.snr_db), cfg.seed)
    X_val, y_val, _ = clip_inputs([clips[i] for i in parts["val"]], sig)
    X_test, y_test, _ = clip_inputs([clips[i] for i in parts["test"]], sig)
    print(f"inputs {X_fit.shape[1:]}: fit {len(X_fit)} (with {cfg.augment} noisy "
          f"cop{'y' if cfg.augment == 1 else 'ies'} per clip), val {len(X_val)}, "
          f"test {len(X_test)} ({time.time() - t0:.1f} s)")

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    clean = np.arange(len(X_fit)) % (1 + cfg.augment) == 0
    calib = np.flatnonzero(clean)[calibration_subset(y_fit[clean], CALIBRATION_SIZE, cfg.seed)]
    np.savez_compressed(run_dir / "data.npz", calib_mel=X_fit[calib], test_mel=X_test,
                        test_y=y_test, labels=np.array(cfg.labels))

    arch = zoo.get(cfg.arch, TASK)
    model = arch.build(sig.input_shape, len(cfg.labels), width=cfg.width,
                       lstm_units=cfg.lstm_units, pools=tuple(cfg.pools))
    model.compile(optimizer=keras.optimizers.SGD(cfg.learning_rate, momentum=cfg.momentum),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    n_params = int(model.count_params())
    print(f"model {cfg.arch}: {n_params:,} parameters")

    ckpt = run_dir / "model.keras"
    budget = TimeBudget(cfg.time_budget_min) if cfg.time_budget_min else None
    callbacks = [
        keras.callbacks.ModelCheckpoint(str(ckpt), monitor="val_accuracy", mode="max",
                                        save_best_only=True),
        keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max",
                                      patience=cfg.patience),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv")),
    ] + ([budget] if budget else [])
    t0 = time.time()
    hist = model.fit(X_fit, y_fit, validation_data=(X_val, y_val), epochs=cfg.epochs,
                     batch_size=cfg.batch_size, callbacks=callbacks, shuffle=True,
                     verbose=verbose)
    train_s = time.time() - t0
    plot_history(hist.history, run_dir / "training_history.png")

    best = keras.models.load_model(str(ckpt))
    probs = best.predict(X_test, batch_size=64, verbose=0)
    metrics = classification_metrics(y_test, probs.argmax(1), cfg.labels)
    metrics.update({
        "macro_f1": metrics["macro"]["f1"],
        "n_test": int(len(y_test)),
        "split": split,
        "arch": cfg.arch,
        "parameters": n_params,
        "epochs_run": len(hist.history["loss"]),
        "best_epoch": int(np.argmax(hist.history["val_accuracy"])) + 1,
        "best_val_accuracy": float(np.max(hist.history["val_accuracy"])),
        "stopped_by_time_budget": bool(budget and budget.stopped_epoch),
        "train_seconds": round(train_s, 1),
    })
    text = write_report(metrics, run_dir)
    print(f"\nheld-out test clips: {len(y_test)} ({split['description']})")
    print(text)
    return metrics
