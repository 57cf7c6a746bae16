"""Magnitude pruning with tensorflow-model-optimization.

Each layer tfmot can wrap is wrapped with ``prune_low_magnitude`` and a polynomial-decay
schedule that reaches the requested sparsity one epoch before fine-tuning ends; layers it
cannot wrap (``TimeDistributed``, ``Bidirectional``, ...) are left dense with the reason
printed. After fine-tuning, ``strip_pruning`` removes the wrappers and the sparsity is
measured on the stripped weights, per layer and overall.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitaledge.train.backend import keras


@dataclass
class PruneReport:
    target_sparsity: float
    per_layer: dict[str, float] = field(default_factory=dict)
    overall: float = 0.0
    pruned_weights: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    fine_tune_epochs: int = 0
    fine_tune_steps: int = 0

    def to_dict(self) -> dict:
        return {"target_sparsity": self.target_sparsity, "measured_sparsity": self.overall,
                "per_layer": self.per_layer, "pruned_weights": self.pruned_weights,
                "skipped_layers": self.skipped, "fine_tune_epochs": self.fine_tune_epochs,
                "fine_tune_steps": self.fine_tune_steps}


def _has_kernel(layer) -> bool:
    return any(w.name.split("/")[-1].startswith("kernel") for w in layer.weights)


def wrap_for_pruning(model: keras.Model, schedule) -> tuple[keras.Model, dict[str, str]]:
    """Clone ``model`` with every prunable kernel layer wrapped; return (model, skipped)."""
    import tensorflow_model_optimization as tfmot

    skipped: dict[str, str] = {}

    def clone(layer):
        if not _has_kernel(layer):
            return layer.__class__.from_config(layer.get_config())
        try:
            return tfmot.sparsity.keras.prune_low_magnitude(
                layer.__class__.from_config(layer.get_config()), pruning_schedule=schedule)
        except (ValueError, TypeError) as exc:
            skipped[layer.name] = f"{type(layer).__name__}: {str(exc).splitlines()[0][:160]}"
            return layer.__class__.from_config(layer.get_config())

    pruned = keras.models.clone_model(model, clone_function=clone)
    _copy_weights(model, pruned)
    for name, why in skipped.items():
        print(f"prune: leaving layer {name} dense ({why})")
    return pruned, skipped


def _copy_weights(src: keras.Model, dst: keras.Model) -> None:
    """Copy weights layer by layer; pruning wrappers add mask/threshold variables that the
    source does not have, so whole-model ``set_weights`` cannot be used."""
    for s, d in zip(src.layers, dst.layers, strict=True):
        inner = getattr(d, "layer", d)
        if s.weights:
            inner.set_weights(s.get_weights())


def measure_sparsity(model: keras.Model) -> tuple[dict[str, float], float, int]:
    """(per-layer kernel sparsity, overall kernel sparsity, kernel weight count)."""
    per, zeros, total = {}, 0, 0
    for layer in model.layers:
        for w in layer.weights:
            if w.name.split("/")[-1].startswith("kernel"):
                v = w.numpy()
                per[layer.name] = float(np.mean(v == 0))
                zeros += int(np.sum(v == 0))
                total += v.size
    return per, (zeros / total if total else 0.0), total


def prune(model: keras.Model, X: np.ndarray | dict, y: np.ndarray,
          val: tuple[np.ndarray | dict, np.ndarray], sparsity: float, epochs: int = 4,
          batch_size: int = 64, learning_rate: float = 3e-4,
          class_weight: dict | None = None, log_dir: Path | None = None,
          verbose: int = 2, min_steps: int = 400) -> tuple[keras.Model, PruneReport]:
    """Prune ``model`` to ``sparsity`` while fine-tuning on (X, y); return the stripped model."""
    import tensorflow_model_optimization as tfmot

    if not 0.0 < sparsity < 1.0:
        raise ValueError(f"sparsity must be in (0, 1), got {sparsity}")
    n = len(y)  # not len(X): a multi-input model's X is a dict of its inputs
    repeats = int(np.ceil(np.ceil(min_steps / epochs) * batch_size / n))
    if repeats > 1:
        # Few windows: each epoch goes over them several times, so fine-tuning still takes
        # min_steps steps, with one validation pass per epoch (not one per pass).
        print(f"prune: {n} training windows are few; each of the {epochs} epochs goes over "
              f"them {repeats} times, {min_steps} steps at least")
        X = ({k: np.concatenate([v] * repeats) for k, v in X.items()} if isinstance(X, dict)
             else np.concatenate([X] * repeats))
        y = np.concatenate([y] * repeats)
    steps = int(np.ceil(len(y) / batch_size))
    # Reach the final sparsity after 70% of the steps; the rest recovers at that sparsity.
    end_step = max(1, int(0.7 * steps * epochs))
    schedule = tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.0,
                                                    final_sparsity=sparsity, begin_step=0,
                                                    end_step=end_step,
                                                    frequency=max(1, end_step // 20))
    wrapped, skipped = wrap_for_pruning(model, schedule)
    wrapped.compile(optimizer=keras.optimizers.Adam(learning_rate),
                    loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    callbacks = [tfmot.sparsity.keras.UpdatePruningStep()]
    if log_dir is not None:
        callbacks.append(tfmot.sparsity.keras.PruningSummaries(log_dir=str(log_dir)))
    wrapped.fit(X, y, validation_data=val, epochs=epochs, batch_size=batch_size,
                class_weight=class_weight, callbacks=callbacks, verbose=verbose)
    stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
    per, overall, total = measure_sparsity(stripped)
    report = PruneReport(sparsity, per, overall, total, skipped, epochs, steps * epochs)
    return stripped, report
