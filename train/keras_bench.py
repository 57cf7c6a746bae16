"""Keras baseline rows for ``vitaledge bench --keras RUN_DIR``: the source model called
plainly and as a compiled ``tf.function``, on the same inputs, timed the same way.

TensorFlow's thread pools are fixed once it has run anything, so one process can time the
Keras model at one thread count only: the first of ``threads`` if TensorFlow has not run
yet (the row says so), otherwise its default, reported as threads 0."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from vitaledge.device.aami import CLASSES
from vitaledge.device.bench import OK, BenchRow, stats_ms
from vitaledge.device.metrics import classification_metrics


def keras_rows(run_dir: str | Path, X: np.ndarray, y: np.ndarray | None, threads: list[int],
               warmup: int, runs: int | None, min_seconds: float) -> list[BenchRow]:
    from .backend import keras, tf

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
    x1 = tf.constant(X[:1].reshape((1, *model.input_shape[1:])).astype(np.float32))
    compiled = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    for name, fn in ((f"{run_dir.name}/keras call", lambda x: model(x, training=False)),
                     (f"{run_dir.name}/keras tf.function", compiled)):
        for th in [n_threads]:
            row = BenchRow(str(run_dir), name, "tf", th, 1, status=OK,
                           size_bytes=(run_dir / "model.keras").stat().st_size,
                           load_ms=round(load_ms, 2))
            t = time.perf_counter()
            fn(x1)
            row.first_ms = round((time.perf_counter() - t) * 1e3, 3)
            for _ in range(warmup):
                fn(x1)
            times, deadline, i = [], time.perf_counter() + min_seconds, 0
            while (runs is not None and i < runs) or (runs is None and (
                    time.perf_counter() < deadline or i < 10)):
                xi = tf.constant(X[i % len(X)][None].reshape(x1.shape).astype(np.float32))
                t = time.perf_counter()
                fn(xi).numpy()
                times.append(time.perf_counter() - t)
                i += 1
            for k, v in stats_ms(np.asarray(times)).items():
                setattr(row, k, round(v, 5) if isinstance(v, float) else v)
            row.per_window_ms = row.p50_ms
            row.windows_per_s = round(1e3 / row.p50_ms, 1) if row.p50_ms else 0.0
            if y is not None:
                pred = model.predict(X.reshape((-1, *model.input_shape[1:])), verbose=0,
                                     batch_size=512).argmax(1)
                m = classification_metrics(y, pred, list(CLASSES))
                row.accuracy, row.macro_f1 = round(m["accuracy"], 5), round(m["macro"]["f1"], 5)
            rows.append(row)
    return rows
