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

__all__ = ["tf", "keras", "set_seed"]


def set_seed(seed: int) -> None:
    """Seed Python, numpy and TensorFlow; make TF ops deterministic where it can."""
    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # noqa: BLE001 - older TF builds
        pass
