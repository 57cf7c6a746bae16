"""Soak: a day of signal through one daemon as fast as it goes, into rotating JSONL and
SQLite sinks with the API polled; resident memory and open descriptors over the run."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from vitaledge.device.bench.reliability.host import free_port, open_fds
from vitaledge.device.io.records import read_record
from vitaledge.device.model.memory import rss_mb
from vitaledge.device.stream.daemon import Daemon
from vitaledge.device.stream.daemon_config import DaemonConfig
from vitaledge.device.stream.sources import Source


def looped(signals: list[np.ndarray], total: int, chunk: int) -> Iterator[np.ndarray]:
    """``total`` samples: the signals one after another, again and again, in chunks."""
    done = 0
    while done < total:
        for s in signals:
            for i in range(0, len(s), chunk):
                part = s[i:i + chunk][: total - done]
                if not len(part):
                    return
                done += len(part)
                yield part


class LoopedReplayDaemon(Daemon):
    """The daemon replaying ``records`` (same rate) in a loop until ``hours`` of signal
    went through; configured as a replay of the first record, so nothing is dropped."""

    def __init__(self, cfg: DaemonConfig, records: list[str], hours: float):
        super().__init__(replace(cfg, source=f"replay:{records[0]}"))
        fs = self.source.fs
        recs = [read_record(r) for r in records]
        for path, rec in zip(records, recs, strict=True):
            if rec.fs != fs:  # looped at the first one's rate it would be another signal
                raise ValueError(f"{path}: record is {rec.fs:g} Hz, {records[0]} is {fs:g} "
                                 "Hz: a soak loops records of one rate")
            if rec.lead != recs[0].lead:  # the beat check is set for the first one's lead
                raise ValueError(f"{path}: read on {rec.lead}, {records[0]} on "
                                 f"{recs[0].lead}: a soak loops records of one lead")
        sigs = [rec.signal for rec in recs]
        self.source = Source("soak", fs, looped(sigs, int(hours * 3600 * fs), int(10 * fs)))


def soak_campaign(model: str, records: list[str], workdir: Path, hours: float = 24.0,
                  every_s: float = 2.0) -> dict:
    """Replay ``hours`` of signal (the records looped) through the daemon as fast as it
    goes, into rotating JSONL and SQLite sinks with the API polled; sample resident memory
    and open file descriptors every ``every_s`` seconds of wall time."""
    workdir.mkdir(parents=True, exist_ok=True)
    for f in workdir.glob("soak.*"):
        f.unlink()
    port = free_port()
    d = LoopedReplayDaemon(DaemonConfig(model=model,
                                        out=[str(workdir / "soak.jsonl"),
                                             str(workdir / "soak.db")],
                                        max_jsonl_bytes=5_000_000, api_port=port,
                                        api_rate=0.0), records, hours)
    fs = d.source.fs
    samples: list[dict] = []
    finished = threading.Event()

    def sampler():
        t0 = time.monotonic()
        while not finished.is_set():
            h = d.health()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/events?since="
                                            f"{max(0, h['last_seq'] - 5)}", timeout=2) as r:
                    r.read()
            except OSError:
                pass
            samples.append({"t": round(time.monotonic() - t0, 1),
                            "signal_h": round(h["samples_in"] / fs / 3600, 3),
                            "rss_mb": round(rss_mb(), 2), "fds": open_fds(),
                            "threads": threading.active_count(), "events": h["last_seq"]})
            finished.wait(every_s)

    threading.Thread(target=sampler, daemon=True).start()
    summary = d.run(install_signals=False)
    finished.set()
    steady = [s for s in samples if s["signal_h"] >= 0.1 * hours]
    half = len(steady) // 2
    first, second = steady[:half], steady[half:]
    rss = np.array([s["rss_mb"] for s in steady])
    hrs = np.array([s["signal_h"] for s in steady])
    slope = float(np.polyfit(hrs, rss, 1)[0]) if len(steady) > 2 else None
    return {"signal_hours": round(summary["samples"] / fs / 3600, 2),
            "wall_seconds": summary["wall_seconds"], "events": summary["events"],
            "samples_taken": len(samples),
            "rss_mb_first_sample": samples[0]["rss_mb"] if samples else None,
            "rss_mb_max": max(s["rss_mb"] for s in samples),
            "rss_mb_median_first_half": float(np.median([s["rss_mb"] for s in first]))
            if first else None,
            "rss_mb_median_second_half": float(np.median([s["rss_mb"] for s in second]))
            if second else None,
            "rss_mb_slope_per_signal_hour": None if slope is None else round(slope, 4),
            "fds_min": min(s["fds"] for s in samples), "fds_max": max(s["fds"] for s in samples),
            "fds_first": samples[0]["fds"], "fds_last": samples[-1]["fds"],
            "threads_max": max(s["threads"] for s in samples),
            "jsonl_files": sorted(p.name for p in workdir.glob("soak.jsonl*")),
            "samples": samples}
