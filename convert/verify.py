"""Verification of a converted artifact through the device runtime (never TensorFlow).

The artifact is loaded the way the device loads it (manifest, sha256, XNNPACK), run on
the held-out beats, and compared with the Keras model's own predictions on the same beats.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from vitaledge.device.eval.metrics import classification_metrics
from vitaledge.device.model.runtime import Model
from vitaledge.device.model.timing import time_calls


def verify(artifact_dir: Path, X, y: np.ndarray, keras_probs: np.ndarray,
           labels: list[str], threads: int = 1, delegate: str = "xnnpack",
           order: dict | None = None) -> dict:
    """Metrics of the artifact (classes decided as the device decides them; ``order``:
    each row's ``groups`` and ``times`` for decisions over a patient's beats), agreement
    of its argmax with the Keras model's, and a quick latency figure."""
    t0 = time.perf_counter()
    model = Model(artifact_dir, threads=threads, delegate=delegate)
    load_ms = (time.perf_counter() - t0) * 1e3
    probs = model.predict(X)
    pred = model.decide(probs, X, **(order or {}))
    m = classification_metrics(y, pred, labels)
    xs = list(X) if isinstance(X, list | tuple) else [X]
    x1 = [model.quantize_input(np.asarray(a[:1], np.float32).reshape(model.input_shapes[i]), i)
          for i, a in enumerate(xs)]
    one = x1 if len(x1) > 1 else x1[0]
    times = time_calls(lambda _: model.invoke_raw(one), warmup=5, runs=50, min_seconds=0)
    return {
        "n": int(len(y)),
        "accuracy": m["accuracy"],
        "macro_f1": m["macro"]["f1"],
        "per_class": m["per_class"],
        "confusion_matrix": m["confusion_matrix"],
        "agreement_with_keras": float(np.mean(probs.argmax(1) == keras_probs.argmax(1))),
        "max_prob_diff": float(np.max(np.abs(probs - keras_probs))) if len(y) else 0.0,
        "backend": f"{model.backend.name} {model.backend.version}",
        "delegate": delegate,
        "load_ms": round(load_ms, 2),
        "latency_ms_median": round(float(np.median(times)) * 1e3, 4),
    }
