"""Load: one live source offered far more than the pipeline can take (overload, then
recovery), and many real-time streams sharing one core."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vitaledge.device.bench.reliability.events import read_jsonl_events
from vitaledge.device.bench.reliability.host import (
    check_cpu,
    cpu_seconds,
    free_port,
    last_error_line,
    stop_all,
)
from vitaledge.device.io.records import read_record
from vitaledge.device.model.manifest import load_manifest
from vitaledge.device.model.memory import rss_mb
from vitaledge.device.stream.daemon import Daemon
from vitaledge.device.stream.daemon_config import DaemonConfig
from vitaledge.device.stream.sources import TEXT_CHUNK_SAMPLES
from vitaledge.device.stream.stages import FanOut


def metric(exposition: bytes, name: str) -> float:
    """The value of the unlabelled sample ``name`` in Prometheus text (``/metrics``)."""
    for line in exposition.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(f"metric {name!r} not in the exposition")


class SlowFanOut(FanOut):
    """The daemon's stages, ``delay_s`` slower per chunk: a heavy model stands in, so the
    pipeline's capacity is known."""

    def __init__(self, stages: list, delay_s: float):
        super().__init__(stages)
        self.delay_s = delay_s

    def process(self, chunk: np.ndarray) -> list[dict]:
        time.sleep(self.delay_s)
        return super().process(chunk)


class SlowDaemon(Daemon):
    """The daemon running its stages in a :class:`SlowFanOut`."""

    def __init__(self, cfg: DaemonConfig, delay_s: float):
        super().__init__(cfg)
        self.pipeline = SlowFanOut(self.pipeline.stages, delay_s)


# --------------------------------------------------------------------------- overload


#: Seconds of signal each paced send carries.
TICK_S = 0.1


def send_paced(sock: socket.socket, lines: list[bytes], fs: float, seconds: float,
               start: int = 0, stop: threading.Event | None = None,
               sent: Callable[[int], None] | None = None, t0: float | None = None) -> int:
    """Send ``lines`` (one sample each, cycled from ``start``) over ``sock`` in real time
    at ``fs`` samples per second, :data:`TICK_S` of signal at a time on a fixed schedule
    from ``t0`` (now), for ``seconds`` or until ``stop``; ``sent`` hears each count.
    Returns the index of the next line."""
    n, per = len(lines), max(1, int(fs * TICK_S))
    t0 = time.monotonic() if t0 is None else t0
    i, tick = start % n, 0
    while time.monotonic() - t0 < seconds and not (stop is not None and stop.is_set()):
        sock.sendall(b"".join(lines[(i + j) % n] for j in range(per)))
        if sent is not None:
            sent(per)
        i, tick = (i + per) % n, tick + 1
        delay = t0 + tick * TICK_S - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return i


def load_campaign(model: str, record: str, workdir: Path, seconds: float = 60.0,
                  chunk_delay_s: float = 0.01, recover_s: float = 10.0,
                  queue_chunks: int = 256, fs: float = 360.0) -> dict:
    """Overload a tcp-source daemon, then let the load fall.

    The pipeline is slowed by ``chunk_delay_s`` per chunk (:class:`SlowDaemon`), so its
    capacity is known and far below what one TCP client sending as fast as it can offers.
    Phase 1 (``seconds``): a client sends the record's samples in a loop as fast as the
    socket takes them. Phase 2 (``recover_s``): the client sends at real time. Checks:
    samples sent = samples processed + samples dropped (exactly), the gap events' missing
    samples = the dropped samples, the queue never holds more than ``queue_chunks``
    chunks, resident memory sampled every 0.5 s, and no drop in phase 2 once the queue
    has drained. Samples received and queue depth are read from the daemon's metrics."""
    workdir.mkdir(parents=True, exist_ok=True)
    for f in workdir.glob("load.*"):
        f.unlink()
    port = free_port()
    d = SlowDaemon(DaemonConfig(model=model, source=f"tcp:127.0.0.1:{port}", fs=fs,
                                out=[str(workdir / "load.jsonl")], queue_chunks=queue_chunks),
                   chunk_delay_s)
    x = read_record(record).signal
    lines = [f"{v:.3f}\n".encode() for v in x]
    samples: list[dict] = []
    state = {"phase": "overload", "sent": 0, "sent_overload": 0}
    done = threading.Event()

    def sampler():
        t0 = time.monotonic()
        while not done.is_set():
            m = d.metrics()
            samples.append({"t": round(time.monotonic() - t0, 2), "phase": state["phase"],
                            "rss_mb": round(rss_mb(), 2),
                            "queue": int(metric(m, "vitaledge_queue_chunks")),
                            "dropped_samples": d.dropped_samples,
                            "processed": int(metric(m, "vitaledge_samples_total"))})
            done.wait(0.5)

    runner = threading.Thread(target=lambda: state.update(summary=d.run(False)))
    runner.start()
    threading.Thread(target=sampler, daemon=True).start()
    block = 3600  # ten seconds of signal per sendall
    with socket.create_connection(("127.0.0.1", port)) as sock:
        t_end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < t_end:
            j = i % len(lines)
            part = lines[j:j + block]
            sock.sendall(b"".join(part))
            state["sent"] += len(part)
            i += len(part)
        state["sent_overload"] = state["sent"]
        state["phase"] = "recover"
        drop_at_recover = d.dropped_samples

        def count(k: int) -> None:
            state["sent"] += k

        send_paced(sock, lines, fs, recover_s, start=i % len(lines), sent=count)
    time.sleep(2.0)
    d.request_stop()
    runner.join()
    done.set()
    summary = state["summary"]
    events, _ = read_jsonl_events(workdir / "load.jsonl")
    gap_missing = sum(e.get("missing_samples", 0) for e in events
                      if e.get("status") == "gap")
    processed = int(metric(d.metrics(), "vitaledge_samples_total"))
    over = [s for s in samples if s["phase"] == "overload"]
    rec = [s for s in samples if s["phase"] == "recover"]
    drained = [s for s in rec if s["queue"] <= 2]
    drops_after_drain = (d.dropped_samples - drained[0]["dropped_samples"]) if drained else None
    capacity = TEXT_CHUNK_SAMPLES / chunk_delay_s
    # what the pipeline really got through while overloaded (the reader's parsing takes
    # its share of the interpreter too), measured from the samples
    done_over = over[-1]["processed"] / over[-1]["t"] if over and over[-1]["t"] else 0.0
    beats_recover = sum(1 for e in events if e.get("type") == "beat"
                        and e["sample"] >= state["sent_overload"] - 1)
    return {"overload_seconds": seconds, "recover_seconds": recover_s,
            "pipeline_nominal_capacity_samples_per_s": round(capacity),
            "processed_samples_per_s_during_overload": round(done_over),
            "offered_samples_per_s": round(state["sent_overload"] / seconds),
            "overload_factor": round(state["sent_overload"] / seconds / max(done_over, 1.0),
                                     1),
            "sent": state["sent"], "processed": processed,
            "dropped_samples": d.dropped_samples, "dropped_chunks": d.dropped_chunks,
            "sent_minus_processed_minus_dropped": state["sent"] - processed
            - d.dropped_samples,
            "gap_event_missing_samples": gap_missing,
            "queue_bound_chunks": queue_chunks,
            "queue_max_chunks": max(s["queue"] for s in samples),
            "rss_mb_start": over[0]["rss_mb"] if over else None,
            "rss_mb_max_overload": max(s["rss_mb"] for s in over) if over else None,
            "rss_mb_last_10s_overload": max(s["rss_mb"] for s in over[-20:]) if over else None,
            "rss_mb_end": samples[-1]["rss_mb"],
            "dropped_during_recover_before_drain": (drained[0]["dropped_samples"]
                                                    - drop_at_recover) if drained else None,
            "queue_drained_after_s": round(drained[0]["t"] - rec[0]["t"], 2)
            if drained and rec else None,
            "dropped_after_drain": drops_after_drain,
            "beat_events_after_overload": beats_recover,
            "summary_dropped_samples": summary["dropped_samples"],
            "rss_samples": samples}


# --------------------------------------------------------------------------- streams


def streams_campaign(model: str, record: str, n: int, seconds: float = 30.0,
                     cpu: int = 0, fs: float = 360.0) -> dict:
    """``n`` daemons (the CLI, each in its own process), each with one tcp source fed at
    real time by its own client, all pinned to one CPU: does every stream get through
    without a drop, and how busy is the core? Returns per-stream sent/processed/dropped
    (from the summary each daemon writes with ``device run --json``) and the CPU time
    used. The CPU, the record and the model are checked before any daemon starts; every
    daemon is stopped on the way out, whatever failed."""
    check_cpu(cpu)
    x = read_record(record).signal
    load_manifest(model)
    lines = [f"{v:.3f}\n".encode() for v in x]
    tmp = Path(tempfile.mkdtemp(prefix="vitaledge-streams-"))
    summaries = [tmp / f"stream-{k}.json" for k in range(n)]
    logs = [tmp / f"stream-{k}.log" for k in range(n)]
    procs: list[subprocess.Popen] = []
    ports: list[int] = []
    sent = [0] * n
    stop = threading.Event()
    feeders: list[threading.Thread] = []

    def feed(k: int, t0: float) -> None:
        for _ in range(200):
            if stop.is_set():
                return
            try:
                sock = socket.create_connection(("127.0.0.1", ports[k]))
                break
            except OSError:
                time.sleep(0.1)
        else:
            return

        def count(m: int) -> None:
            sent[k] += m

        try:
            with sock:  # on the campaign's clock: every stream ends at t0 + seconds
                send_paced(sock, lines, fs, seconds, start=(k * 997) % len(lines), stop=stop,
                           sent=count, t0=t0)
        except OSError:  # the daemon went away: its summary (or its absence) tells why
            pass

    try:
        for k in range(n):
            port = free_port()
            ports.append(port)
            with logs[k].open("wb") as err:  # a file: a full pipe would stall the daemon
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "vitaledge.cli", "device", "run", "--model", model,
                     "--source", f"tcp:127.0.0.1:{port}", "--fs", str(fs), "--sink", "stdout",
                     "--log-level", "WARNING", "--json", str(summaries[k])],
                    stdout=subprocess.DEVNULL, stderr=err))
        # start unpinned (n interpreters loading on one core take long), wait until every
        # daemon listens, then pin them all to ``cpu`` for the measured part
        wait_listening(procs, ports, logs, 120 + 3 * n)
        for k, p in enumerate(procs):
            pin(p, cpu, f"stream daemon {k + 1} of {n}", logs[k])
        time.sleep(2.0)
        cpu0 = [cpu_seconds(p.pid) for p in procs]
        t0 = time.monotonic()
        feeders = [threading.Thread(target=feed, args=(k, t0)) for k in range(n)]
        for t in feeders:
            t.start()
        for t in feeders:
            t.join()
        wall = time.monotonic() - t0
        cpu1 = [cpu_seconds(p.pid) for p in procs]
        time.sleep(1.0)
        stop_all(procs, grace_s=60.0)  # SIGTERM: each drains and writes its summary
        stats = [stream_stats(sent[k], summaries[k], logs[k], procs[k].returncode)
                 for k in range(n)]
    finally:
        stop.set()
        for t in feeders:
            t.join()
        stop_all(procs)
        shutil.rmtree(tmp, ignore_errors=True)
    used = sum(b - a for a, b in zip(cpu0, cpu1, strict=True))
    return {"streams": n, "seconds": round(wall, 1), "cpu": cpu,
            "cpu_seconds": round(used, 2), "core_utilisation": round(used / wall, 3),
            "all_complete": all(s["processed"] == s["sent"] and s["dropped"] == 0
                                and s["error"] is None for s in stats),
            "dropped_total": sum(s["dropped"] or 0 for s in stats),
            "streams_per_core_estimate": round(n / (used / wall), 1) if used else None,
            "per_stream": stats}


def pin(proc: subprocess.Popen, cpu: int, name: str, log: Path) -> None:
    """Pin every thread of ``proc`` to ``cpu`` (affinity is per thread; new threads
    inherit it); a daemon that has exited meanwhile is an error saying why."""
    try:
        tids = os.listdir(f"/proc/{proc.pid}/task")
    except FileNotFoundError:
        tids = []
    for tid in tids:
        with contextlib.suppress(ProcessLookupError):  # a thread that ended
            os.sched_setaffinity(int(tid), {cpu})
    if proc.poll() is not None:
        raise RuntimeError(f"{name} exited (code {proc.returncode}) before the run: "
                           f"{last_error_line(log)}")


def wait_listening(procs: list[subprocess.Popen], ports: list[int], logs: list[Path],
                   timeout: float) -> None:
    """Until every daemon listens on its port; a daemon that exits first, or one not
    listening within ``timeout`` seconds (in all), is an error naming it and why."""
    deadline = time.monotonic() + timeout
    for k, (p, port) in enumerate(zip(procs, ports, strict=True)):
        while True:
            if p.poll() is not None:
                raise RuntimeError(f"stream daemon {k + 1} of {len(procs)} exited "
                                   f"(code {p.returncode}) before it listened: "
                                   f"{last_error_line(logs[k])}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"stream daemon {k + 1} of {len(procs)} was not "
                                       f"listening on port {port} after {timeout:g} s"
                                       ) from None
                time.sleep(0.2)


def stream_stats(sent: int, summary: Path, log: Path, returncode: int | None) -> dict:
    """One stream's sent / processed / dropped samples, from its daemon's summary file;
    when there is none (the daemon failed or was killed), None and why."""
    try:
        s = json.loads(summary.read_text())
        return {"sent": sent, "processed": s["samples"], "dropped": s["dropped_samples"],
                "error": s.get("error")}
    except (OSError, ValueError, TypeError, KeyError):
        why = last_error_line(log)
        return {"sent": sent, "processed": None, "dropped": None,
                "error": f"no summary (exit code {returncode}): {why}"}
