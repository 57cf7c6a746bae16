"""The one place TensorFlow and Keras 2 are imported for training and conversion.

tensorflow-model-optimization works with Keras 2 only; TensorFlow >= 2.16 defaults to
Keras 3. Setting ``TF_USE_LEGACY_KERAS`` before TensorFlow is first imported makes
``tf.keras`` resolve to ``tf_keras``, so users never export anything themselves.
"""

from __future__ import annotations

import os
import sys


def _setup_env() -> None:
    if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        # Too late to switch tf.keras; tf_keras is still used directly below, which works.
        return
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


_setup_env()

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["tf", "keras", "set_seed", "check_converged"]


def fit_verbosity(verbose: int | None) -> int:
    """Keras's ``verbose`` for a fit: as given, else a progress bar on a terminal and one
    line per epoch in a log (a bar's carriage returns fill a file)."""
    if verbose is not None:
        return verbose
    return 1 if sys.stdout.isatty() else 2


def set_seed(seed: int) -> None:
    """Seed Python, numpy and TensorFlow; make TF ops deterministic where it can."""
    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # noqa: BLE001 - older TF builds
        pass


def check_converged(history: dict, checkpoint=None) -> None:
    """ValueError when a fit's loss became NaN or infinite (a learning rate far too high,
    or inputs that overflow): every weight after that is garbage, so no model of the run
    may be written or reported as trained; a ``checkpoint`` file the fit saved is removed
    (a later ``convert`` would take it for a trained model)."""
    import math
    from pathlib import Path

    for key in ("loss", "val_loss"):
        for epoch, v in enumerate(history.get(key) or [], start=1):
            if not math.isfinite(float(v)):
                if checkpoint is not None:
                    Path(checkpoint).unlink(missing_ok=True)
                raise ValueError(f"training diverged: {key} is {v} at epoch {epoch} (a "
                                 "learning rate too high?); this run's model is not usable")
