"""Keras baseline rows for ``vitaledge bench --keras RUN_DIR``: the source model called
plainly and as a compiled ``tf.function``, on the same inputs, timed the same way.

TensorFlow's thread pools are fixed once it has run anything, so one process can time the
Keras model at one thread count only: the first of ``threads`` if TensorFlow has not run
yet (the row says so), otherwise its default, reported as threads 0."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from vitaledge.device.bench.latency import OK, BenchRow, record_timing
from vitaledge.device.eval.metrics import classification_metrics
from vitaledge.device.io.aami import CLASSES
from vitaledge.device.model.timing import time_calls


def pick_inputs(model, candidates: list[tuple], run_dir: Path) -> tuple:
    """The first (inputs, labels) of ``candidates`` that is one array of windows the size of
    ``model``'s input."""
    want = int(np.prod(model.input_shape[1:]))
    for X, y in candidates:
        if not isinstance(X, list | tuple) and int(np.prod(np.shape(X)[1:])) == want:
            return X, y
    raise ValueError(f"{run_dir}: no artifact benchmarked beside it takes this model's "
                     f"input ({want} samples); give an artifact converted from this run")


def keras_rows(run_dir: str | Path, candidates: list[tuple], threads: list[int],
               warmup: int, runs: int | None, min_seconds: float) -> list[BenchRow]:
    """The two rows of ``run_dir``'s model, timed on the first of ``candidates`` ((inputs,
    labels) of the artifacts benchmarked beside it) whose windows its one input takes;
    ValueError when it has several inputs or none of them fits."""
    from .backend import keras, tf
    from .run_files import file_task

    run_dir = Path(run_dir)
    rows = []
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads[0])
        tf.config.threading.set_inter_op_parallelism_threads(1)
        n_threads = threads[0]
    except RuntimeError:  # already initialised by an earlier run in this process
        n_threads = tf.config.threading.get_intra_op_parallelism_threads()
    t = time.perf_counter()
    model = keras.models.load_model(str(run_dir / "model.keras"))
    load_ms = (time.perf_counter() - t) * 1e3
    if len(model.inputs) != 1:
        raise ValueError(f"{run_dir}: the Keras baseline times single-input models only")
    X, y = pick_inputs(model, candidates, run_dir)
    labels = list(CLASSES)
    cfg = run_dir / "config.json"
    if cfg.exists() and file_task(cfg) != "beat":
        labels = list(json.loads(cfg.read_text())["labels"])
    shape = (1, *model.input_shape[1:])
    inputs = [tf.constant(x.reshape(shape).astype(np.float32)) for x in X[:512]]
    accuracy = macro_f1 = None
    if y is not None:
        pred = model.predict(X.reshape((-1, *shape[1:])), verbose=0, batch_size=512).argmax(1)
        m = classification_metrics(y, pred, labels)
        accuracy, macro_f1 = round(m["accuracy"], 5), round(m["macro"]["f1"], 5)
    compiled = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    for name, fn in ((f"{run_dir.name}/keras call", lambda x: model(x, training=False)),
                     (f"{run_dir.name}/keras tf.function", compiled)):
        row = BenchRow(str(run_dir), name, "tf", n_threads, 1, status=OK,
                       size_bytes=(run_dir / "model.keras").stat().st_size,
                       load_ms=round(load_ms, 2), accuracy=accuracy, macro_f1=macro_f1)
        t = time.perf_counter()
        fn(inputs[0])
        row.first_ms = round((time.perf_counter() - t) * 1e3, 3)
        times = time_calls(lambda i, fn=fn: fn(inputs[i % len(inputs)]).numpy(), warmup,
                           runs, min_seconds)
        record_timing(row, times, 1)
        rows.append(row)
    return rows
