"""The one timing loop: warm-up calls apart from timed ones, then latency statistics in ms.
After TFLite's ``benchmark_model``; the bench, convert's verification and the Keras baseline
all time with it."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def time_calls(call: Callable[[int], object], warmup: int, runs: int | None,
               min_seconds: float) -> np.ndarray:
    """Seconds taken by ``call(i)`` for i = 0, 1, ...: ``warmup`` untimed calls first, then
    ``runs`` timed calls, or as many as fit in ``min_seconds`` (10 at least)."""
    for i in range(warmup):
        call(i)
    times = []
    deadline = time.perf_counter() + min_seconds
    i = 0
    while (runs is not None and i < runs) or (runs is None and (
            time.perf_counter() < deadline or i < 10)):
        t = time.perf_counter()
        call(i)
        times.append(time.perf_counter() - t)
        i += 1
    return np.asarray(times)


def stats_ms(times: np.ndarray) -> dict:
    """count, mean, std, min, p50, p90, p99 and max of ``times`` (seconds) in ms."""
    ms = times * 1e3
    return {"count": int(len(ms)), "mean_ms": float(ms.mean()), "std_ms": float(ms.std()),
            "min_ms": float(ms.min()), "p50_ms": float(np.percentile(ms, 50)),
            "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99)),
            "max_ms": float(ms.max())}
