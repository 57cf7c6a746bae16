"""kill -9 while writing: the daemon (its CLI, in a subprocess) replays a record into a
JSONL and a SQLite sink and is killed at random moments; what it acknowledged on its API
must survive every kill, unchanged and once."""

from __future__ import annotations

import http.client
import json
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from vitaledge.device.bench.reliability.events import read_jsonl_events, read_sqlite_events
from vitaledge.device.bench.reliability.host import free_port, last_error_line


def check_inputs(model: str, record: str, speed: str) -> None:
    """Refuse, before the first run, what would make every run fail: a replay speed the
    daemon does not take (named ``--speed``, as the command's flag), a record it cannot
    replay (the source opener's own checks), a model directory that is not an artifact
    (manifest, model file, size and sha256). Each a ``ValueError`` naming what is wrong."""
    from vitaledge.device.model.manifest import load_manifest
    from vitaledge.device.stream.daemon_config import DaemonConfig
    from vitaledge.device.stream.sources import open_source

    try:
        DaemonConfig(speed=speed)
    except ValueError as exc:  # "speed 'abc': expected 'max' or a factor ..."
        raise ValueError(f"--{exc}") from exc
    open_source(f"replay:{record}", None, speed).stop()
    load_manifest(model)


def poll_acks(port: int, acked: dict[int, dict], stop: threading.Event, since: int) -> None:
    """Collect acknowledged events until ``stop``: the API's ``/events`` lists only events
    every sink has taken (JSONL fsync'd, SQLite committed)."""
    while not stop.is_set():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/events?since={since}"
                                        "&limit=10000", timeout=2) as r:
                for e in json.loads(r.read())["events"]:
                    acked[e["seq"]] = e
                    since = max(since, e["seq"])
        except (OSError, ValueError, http.client.HTTPException):  # killed mid-answer
            pass
        stop.wait(0.02)


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Until the daemon's API answers (model loaded, sinks open) or it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return
        except OSError:
            time.sleep(0.05)


def crash_campaign(model: str, record: str, workdir: Path, kills: int = 50,
                   seed: int = 0, min_s: float = 0.3, max_s: float = 3.0,
                   max_jsonl_bytes: int = 2_000_000, speed: str = "100") -> dict:
    """Start the daemon (replay at ``speed`` into a JSONL sink with ``fsync=batch`` and a
    SQLite sink, small rotation size), kill -9 it ``min_s``..``max_s`` seconds after its
    API answers (it is writing by then), check the sinks,
    restart; ``kills`` times, then one clean run. Acknowledged events are read from the
    API while it runs; at the end every one must be in both sinks, byte-for-byte equal,
    and ``seq`` must be unique and increasing in both.

    The inputs are checked first (:func:`check_inputs`); a run that fails on its own (an
    exit other than 0 or the kill) ends the campaign with a ``RuntimeError`` carrying the
    daemon's last error line, not a report of what was never measured."""
    check_inputs(model, record, speed)  # before anything in ``workdir`` is removed
    workdir.mkdir(parents=True, exist_ok=True)
    jl, db = workdir / "events.jsonl", workdir / "events.db"
    log = workdir / "daemon.log"  # the current run's stderr (a file: a pipe could fill)
    for f in workdir.glob("events.*"):
        f.unlink()
    rng = random.Random(seed)
    acked: dict[int, dict] = {}
    per_kill = []
    for k in range(kills + 1):
        port = free_port()
        cfg = workdir / "device.toml"
        q = json.dumps  # a TOML basic string: a path with " or \\ in it stays one value
        cfg.write_text(f"model = {q(model)}\nsource = {q('replay:' + record)}\n"
                       f"speed = {q(str(speed))}\nout = [{q(str(jl))}, {q(str(db))}]\n"
                       f'append = true\nfsync = "batch"\napi_port = {port}\n'
                       f"api_rate = 0.0\nmax_jsonl_bytes = {max_jsonl_bytes}\n")
        torn = 0
        if jl.exists():
            data = jl.read_bytes()
            torn = len(data) - (data.rfind(b"\n") + 1)
        with log.open("wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "vitaledge.cli", "device", "run",
                                     "--config", str(cfg), "--log-level", "WARNING"],
                                    stdout=subprocess.DEVNULL, stderr=err)
        stop = threading.Event()
        poller = threading.Thread(target=poll_acks, args=(port, acked, stop,
                                                          max(acked, default=0)))
        poller.start()
        final = k == kills
        delay = rng.uniform(min_s, max_s)
        try:
            if final:
                proc.wait(timeout=600)
            else:
                wait_ready(port, proc)
                try:
                    proc.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
        finally:
            stop.set()
            poller.join()
            if proc.poll() is None:  # an error or an interrupt above: leave no daemon
                proc.kill()
                proc.wait()
        events, bad = read_jsonl_events(jl)
        rows, check = read_sqlite_events(db)
        per_kill.append({"kill": k, "delay_s": round(delay, 3), "returncode": proc.returncode,
                         "torn_tail_bytes_before_start": torn,
                         "jsonl_events": len(events), "jsonl_bad_lines": len(bad),
                         "sqlite_events": len(rows), "sqlite_integrity": check,
                         "acked": len(acked)})
        if proc.returncode not in (0, -signal.SIGKILL):  # failed on its own: say why
            raise RuntimeError(f"run {k + 1} of {kills + 1}: the daemon exited with code "
                               f"{proc.returncode}: {last_error_line(log)}")
    events, bad = read_jsonl_events(jl)
    rows, check = read_sqlite_events(db)
    jseq = [e["seq"] for e in events]
    sseq = [e["seq"] for e in rows]
    jby, sby = {e["seq"]: e for e in events}, {e["seq"]: e for e in rows}
    # rotation keeps 5 files: events older than the oldest kept line left by policy
    oldest = jseq[0] if jseq else 0
    rotated_out = sum(1 for q in acked if q < oldest)
    lost_j = sorted(q for q in acked if q >= oldest and jby.get(q) != acked[q])
    lost_s = sorted(q for q in acked if sby.get(q) != acked[q])
    killed = sum(1 for r in per_kill if r["returncode"] == -signal.SIGKILL)
    return {"kills": killed, "runs": len(per_kill),
            "jsonl_files": sorted(f.name for f in workdir.glob("events.jsonl*")),
            "finished_before_kill": sum(1 for r in per_kill[:-1] if r["returncode"] == 0),
            "acknowledged_events": len(acked),
            "jsonl_events": len(events), "sqlite_events": len(rows),
            "jsonl_corrupt_lines": len(bad), "jsonl_corrupt_examples": bad[:3],
            "sqlite_integrity_failures": sum(1 for r in per_kill
                                             if r["sqlite_integrity"] != "ok"),
            "jsonl_duplicate_seq": len(jseq) - len(set(jseq)),
            "sqlite_duplicate_seq": len(sseq) - len(set(sseq)),
            "jsonl_seq_increasing": all(a < b for a, b in zip(jseq, jseq[1:], strict=False)),
            "acked_rotated_out_of_jsonl_by_retention": rotated_out,
            "acked_lost_or_changed_jsonl": len(lost_j),
            "acked_lost_examples": (lost_j[:5], sorted(set(lost_s))[:5]),
            "acked_lost_or_changed_sqlite": len(lost_s),
            "torn_tails_repaired": sum(1 for r in per_kill if r["torn_tail_bytes_before_start"]),
            "unacked_in_jsonl_not_in_sqlite": len(set(jseq) - set(sseq)),
            "final_returncode": per_kill[-1]["returncode"], "per_kill": per_kill}
