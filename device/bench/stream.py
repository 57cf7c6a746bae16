"""``vitaledge bench stream``: records replayed through the real daemon pipeline in small
chunks, as fast as possible, on one core.

Reported per record: real-time factor (signal seconds per wall second); the decision
latency of each beat event, from the arrival of the chunk holding the sample that completes
its window to the event (the compute time of that pipeline call: window -> event); and, for
context, the signal time from the R peak to that sample (detector look-ahead + the window
after the R peak + chunking) plus the compute time (R -> event). One core sustains about
``real-time factor`` concurrent streams of that rate (the pipeline is single-threaded and
streams are independent), which is what the ``streams/core`` column states.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vitaledge.device.io.records import list_records, read_record, select_records
from vitaledge.device.model.runtime import Model
from vitaledge.device.stream.pipeline import BeatPipeline


def bench_stream(artifact: str | Path, records: str | Path, chunk_s: float = 0.1,
                 names: list[str] | None = None,
                 progress: Callable[[int, int, str], None] | None = None) -> dict:
    """One row per record of ``records`` (only ``names`` when given); ``progress`` is
    called with (records done, records in all, the record now replayed)."""
    model = Model(artifact, threads=1)
    paths = select_records(list_records(records), names)
    rows = []
    for i, p in enumerate(paths):
        if progress is not None:
            progress(i, len(paths), p.name)
        rec = read_record(p, annotator=None)
        pipe = BeatPipeline(model, rec.fs)
        chunk = max(1, int(round(chunk_s * rec.fs)))
        algo, compute = [], []
        wall = 0.0
        for i in range(0, len(rec.signal), chunk):
            t = time.perf_counter()
            events = pipe.process(rec.signal[i:i + chunk])
            dt = time.perf_counter() - t
            wall += dt
            for e in events:
                if e.get("type") != "beat":
                    continue  # quality status events (gating) carry no beat
                algo.append((pipe.samples_in - e["sample"]) / rec.fs * 1e3)
                compute.append(dt * 1e3)
        t = time.perf_counter()
        pipe.flush()
        wall += time.perf_counter() - t
        a, c = np.asarray(algo), np.asarray(compute)
        rtf = len(rec.signal) / rec.fs / wall
        rows.append({"record": rec.name, "fs": rec.fs, "seconds": round(len(rec.signal) /
                                                                         rec.fs, 1),
                     "beats": len(a), "wall_s": round(wall, 3), "realtime_factor": round(rtf, 1),
                     "streams_per_core": int(rtf),
                     "decision_ms_p50": round(float(np.percentile(a + c, 50)), 1),
                     "decision_ms_p95": round(float(np.percentile(a + c, 95)), 1),
                     "decision_ms_p99": round(float(np.percentile(a + c, 99)), 1),
                     "compute_ms_p50": round(float(np.percentile(c, 50)), 3),
                     "compute_ms_p99": round(float(np.percentile(c, 99)), 3)})
    return {"artifact": str(artifact), "chunk_s": chunk_s, "rows": rows}


def format_stream(res: dict) -> str:
    head = (f"{'record':<8}{'seconds':>8}{'beats':>7}{'wall s':>8}{'x real':>8}"
            f"{'streams/core':>13}{'R->event p50':>13}{'p95 ms':>8}{'p99 ms':>8}"
            f"{'window->event p50':>18}"
            f"{'p99 ms':>8}")
    lines = [f"{res['artifact']} · chunks of {res['chunk_s']} s", head]
    for r in res["rows"]:
        lines.append(f"{r['record']:<8}{r['seconds']:>8}{r['beats']:>7}{r['wall_s']:>8}"
                     f"{r['realtime_factor']:>8}{r['streams_per_core']:>13}"
                     f"{r['decision_ms_p50']:>13}{r['decision_ms_p95']:>8}"
                     f"{r.get('decision_ms_p99', '-'):>8}"
                     f"{r['compute_ms_p50']:>18}{r['compute_ms_p99']:>8}")
    return "\n".join(lines)
