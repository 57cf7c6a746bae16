"""Reliability campaigns for the device side (issue 8): fuzzing, kill -9, overload, soak.

Each is a command (``vitaledge device reliability fuzz|crash|load|soak`` or
``python -m vitaledge.device.bench.reliability ...``) that prints its figures as JSON; the
short versions run in the test suite (tests/test_fuzz.py, tests/test_reliability.py).

Fuzz targets take bytes and must either succeed or raise one of the target's documented
error types (:data:`FUZZ_TARGETS`); anything else is a bug. Inputs are random bytes and
mutations (bit flips, byte edits, insertions, deletions, truncation, splices, interesting
integers) of a small valid seed corpus built here, seeded so a run can be repeated.
"""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

# --------------------------------------------------------------------------- seed corpus


def _frame(typ: int, seq: int, payload: bytes, ts: int = 0) -> bytes:
    from vitaledge.device.stream.protocol import CRC, HEADER, SYNC, VERSION, crc16

    head = HEADER.pack(SYNC, VERSION, typ, seq & 0xFFFF, ts & 0xFFFFFFFF, len(payload))
    return head + payload + CRC.pack(crc16(head[2:] + payload))


def protocol_seed(n_frames: int = 6, fs: float = 360.0, per: int = 16) -> bytes:
    """A valid byte stream: hello, sample frames (one lead-off), a status and a lead-off
    frame, built from device/stream/protocol.py's own constants."""
    from vitaledge.device.stream.protocol import (
        HELLO,
        HELLO_PAYLOAD,
        LEAD_OFF,
        LEAD_OFF_PAYLOAD,
        SAMPLES,
        SAMPLES_HEAD,
        STATUS,
        STATUS_PAYLOAD,
    )

    out = [_frame(HELLO, 0, HELLO_PAYLOAD.pack(int(fs * 1000), 1, 12, 200.0, 0, per))]
    for i in range(n_frames):
        counts = (np.sin(np.arange(per) + i) * 300).astype("<i2").tobytes()
        flags = 1 if i == 3 else 0
        out.append(_frame(SAMPLES, i + 1, SAMPLES_HEAD.pack(i * per, 1, flags) + counts,
                          ts=int(i * per / fs * 1e6)))
    out.append(_frame(STATUS, n_frames + 1, STATUS_PAYLOAD.pack(n_frames * per, 2, 3700)))
    out.append(_frame(LEAD_OFF, n_frames + 2, LEAD_OFF_PAYLOAD.pack(n_frames * per, 1)))
    return b"".join(out)


def wfdb_seed(fmt: str = "212", n: int = 64) -> bytes:
    """A two-signal record as one blob: header text, a NUL byte, then the .dat bytes."""
    x = (np.sin(np.arange(2 * n) / 5.0) * 400).astype(np.int32)
    if fmt == "16":
        dat = x.astype("<i2").tobytes()
    else:
        u = (x & 0xFFF).reshape(-1, 2)
        dat = np.stack([u[:, 0] & 0xFF, ((u[:, 0] >> 8) & 0x0F) | ((u[:, 1] >> 4) & 0xF0),
                        u[:, 1] & 0xFF], axis=1).astype(np.uint8).tobytes()
    hea = (f"r 2 360 {n}\nr.dat {fmt} 200 11 1024 0 0 0 MLII\n"
           f"r.dat {fmt} 200 11 1024 0 0 0 V5\n# comment\n")
    return hea.encode() + b"\x00" + dat


def csv_seed() -> bytes:
    return b"ecg\n" + b"".join(f"{v:.3f}\n".encode() for v in np.sin(np.arange(40) / 3))


def kaggle_seed() -> bytes:
    rows = []
    for k in range(4):
        rows.append(",".join(f"{v:.4f}" for v in np.linspace(0, 1, 187) ** (k + 1))
                    + f",{k}.0")
    return ("\n".join(rows) + "\n").encode()


def wav_seed(n: int = 200, fs: int = 8000) -> bytes:
    data = (np.sin(np.arange(n) / 4.0) * 8000).astype("<i2").tobytes()
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, fs, fs * 2, 2, 16) + b"data" +
            struct.pack("<I", len(data)) + data)


def manifest_seed() -> bytes:
    m = {"schema_version": 2, "task": "beat", "labels": ["N", "S", "V", "F", "Q"],
         "model_file": "model.tflite", "sha256": "0" * 64, "size_bytes": 10,
         "target": "cpu", "quantization": "int8",
         "input": {"name": "x", "shape": [1, 187, 1], "dtype": "int8",
                   "quantization": {"scale": 0.0039, "zero_point": -128}},
         "output": {"name": "y", "shape": [1, 5], "dtype": "int8",
                    "quantization": {"scale": 0.0039, "zero_point": -128}},
         "signal": {"kind": "beat", "window": {"convention": "kachuee"}},
         "pruning": None, "source_run": {"dir": "runs/x"}, "metrics": {"accuracy": 0.9},
         "created": "2026-01-01T00:00:00Z", "vitaledge_version": "0.1", "extra": {},
         "extra_inputs": []}
    return json.dumps(m).encode()


# --------------------------------------------------------------------------- targets


def _scratch() -> Path:
    d = Path(tempfile.gettempdir()) / f"vitaledge-fuzz-{os.getpid()}"
    d.mkdir(exist_ok=True)
    return d


def fuzz_protocol(data: bytes) -> None:
    """Feed the decoder in three uneven pieces, then close the link. Never raises."""
    from vitaledge.device.stream.protocol import ProtocolReader

    for fs in (360.0, None):
        r = ProtocolReader(fs)
        a, b = len(data) // 3, (2 * len(data)) // 3 + 1
        for part in (data[:a], data[a:b], data[b:]):
            for item in r.feed(part):
                if isinstance(item, np.ndarray):
                    assert np.all(np.isfinite(item)), "non-finite sample from the decoder"
        r.end()
        r.stats()


def fuzz_wfdb(data: bytes) -> None:
    """Header + .dat from one blob, read through the light reader and read_record."""
    from vitaledge.device.io.records import read_record
    from vitaledge.device.io.wfdb_signals import read_signals

    hea, _, dat = data.partition(b"\x00")
    d = _scratch()
    (d / "r.hea").write_bytes(hea)
    (d / "r.dat").write_bytes(dat)
    read_signals(d / "r")  # None or Signals, never an exception
    read_record(d / "r", annotator=None)


def fuzz_csv(data: bytes) -> None:
    """The replay CSV reader and the live text-sample parser (tcp/stdin lines)."""
    from vitaledge.device.stream.sources import _read_csv_samples, _text_samples

    p = _scratch() / "x.csv"
    p.write_bytes(data)
    try:
        _read_csv_samples(p)
    finally:
        text = data.decode("utf-8", errors="replace")
        for chunk in _text_samples(iter(text.splitlines(keepends=True)), "fuzz", 7):
            assert chunk.dtype == np.float64


def fuzz_kaggle(data: bytes) -> None:
    from vitaledge.device.io.kaggle_csv import load_kaggle_csv

    p = _scratch() / "k.csv"
    p.write_bytes(data)
    load_kaggle_csv(p)


def fuzz_wav(data: bytes) -> None:
    from vitaledge.device.inputs.audio import read_wav

    p = _scratch() / "x.wav"
    p.write_bytes(data)
    x, fs = read_wav(p)
    assert x.ndim == 1 and np.all(np.isfinite(x)) and fs > 0


def fuzz_manifest(data: bytes) -> None:
    """Raw manifest.json bytes through load_manifest (file checks off)."""
    from vitaledge.device.model.manifest import load_manifest

    p = _scratch() / "manifest.json"
    p.write_bytes(data)
    load_manifest(p, verify_file=False)


def _errors() -> dict[str, tuple[type[BaseException], ...]]:
    from vitaledge.device.inputs.audio import AudioError
    from vitaledge.device.io.kaggle_csv import CsvFormatError
    from vitaledge.device.io.records import RecordError
    from vitaledge.device.model.manifest import ManifestError
    from vitaledge.device.stream.sources import SourceError

    return {"protocol": (), "wfdb": (RecordError,), "csv": (SourceError,),
            "kaggle_csv": (CsvFormatError,), "wav": (AudioError,),
            "manifest": (ManifestError,)}


@dataclass(frozen=True)
class FuzzTarget:
    name: str
    run: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]


FUZZ_TARGETS = {
    "protocol": FuzzTarget("protocol", fuzz_protocol, lambda: [protocol_seed(),
                                                               protocol_seed(2, 250.0, 4)]),
    "wfdb": FuzzTarget("wfdb", fuzz_wfdb, lambda: [wfdb_seed("212"), wfdb_seed("16")]),
    "csv": FuzzTarget("csv", fuzz_csv, lambda: [csv_seed()]),
    "kaggle_csv": FuzzTarget("kaggle_csv", fuzz_kaggle, lambda: [kaggle_seed()]),
    "wav": FuzzTarget("wav", fuzz_wav, lambda: [wav_seed()]),
    "manifest": FuzzTarget("manifest", fuzz_manifest, lambda: [manifest_seed()]),
}


def documented_errors(target: str) -> tuple[type[BaseException], ...]:
    """The exception types ``target`` may raise on bad input."""
    return _errors()[target]


# --------------------------------------------------------------------------- mutation

_INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]
_TOKENS = [b"\xa5\x5a", b"NaN", b"nan", b"inf", b"-inf", b"1e308", b"-0", b"\n", b",",
           b'"', b"{", b"}", b"[", b"]", b"null", b"true", b"1e999", b"212", b"16",
           b"data", b"RIFF", b"fmt ", b"\x00", b"\xff" * 4]


def mutate(rng: random.Random, seed: bytes, corpus: list[bytes]) -> bytes:
    """One to four random edits of ``seed``."""
    b = bytearray(seed)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(9)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:  # bit flip
            i = min(pos, len(b) - 1)
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:  # random byte
            b[min(pos, len(b) - 1)] = rng.randrange(256)
        elif op == 2:  # insert random bytes
            b[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif op == 3 and b:  # delete a run
            del b[pos:pos + rng.randint(1, 32)]
        elif op == 4:  # truncate
            del b[pos:]
        elif op == 5:  # interesting integer
            v = rng.choice(_INTERESTING)
            w = rng.choice((1, 2, 4))
            b[pos:pos + w] = (v & ((1 << (8 * w)) - 1)).to_bytes(w, "little")
        elif op == 6:  # token
            b[pos:pos] = rng.choice(_TOKENS)
        elif op == 7:  # splice with another corpus entry
            other = rng.choice(corpus)
            j = rng.randrange(len(other) + 1)
            b = b[:pos] + bytearray(other[j:j + rng.randint(1, 256)]) + b[pos:]
        else:  # duplicate a run
            b[pos:pos] = b[pos:pos + rng.randint(1, 64)]
    return bytes(b[:1 << 16])


def next_input(rng: random.Random, corpus: list[bytes]) -> bytes:
    """Mostly mutations of the seeds; one input in ten is plain random bytes."""
    if rng.random() < 0.1:
        return rng.randbytes(rng.randint(0, 512))
    return mutate(rng, rng.choice(corpus), corpus)


class _Hang(Exception):
    pass


def _alarm(*_):
    raise _Hang()


def run_fuzz(target: str, n: int, seed: int = 0, timeout_s: float = 10.0,
             progress: Callable[[int], None] | None = None) -> dict:
    """Run ``n`` inputs through ``target``. Returns counts of ok / documented errors /
    unexpected exceptions (with the first few reproducers, hex), hangs, the slowest
    input's time and the process's peak RSS."""
    t = FUZZ_TARGETS[target]
    allowed = documented_errors(target)
    rng = random.Random(seed)
    corpus = t.seeds()
    ok = documented = 0
    unexpected: list[dict] = []
    hangs = 0
    slowest = 0.0
    use_alarm = hasattr(signal, "setitimer")
    old = signal.signal(signal.SIGALRM, _alarm) if use_alarm else None
    t0 = time.perf_counter()
    try:
        for i in range(n):
            data = corpus[i] if i < len(corpus) else next_input(rng, corpus)
            s = time.perf_counter()
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, timeout_s)
            try:
                t.run(data)
                ok += 1
            except _Hang:
                hangs += 1
                unexpected.append({"error": f"hang > {timeout_s} s", "input": data.hex()})
            except allowed:
                documented += 1
            except Exception as exc:  # the point of fuzzing: catch what was not expected
                if len(unexpected) < 20:
                    unexpected.append({"error": f"{type(exc).__name__}: {exc}"[:300],
                                       "input": data[:4096].hex()})
                else:
                    unexpected.append({"error": type(exc).__name__})
            finally:
                if use_alarm:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            slowest = max(slowest, time.perf_counter() - s)
            if progress and (i + 1) % 10_000 == 0:
                progress(i + 1)
    finally:
        if use_alarm:
            signal.signal(signal.SIGALRM, old)
    return {"target": target, "inputs": n, "seed": seed, "ok": ok,
            "documented_errors": documented, "unexpected": len(unexpected) - hangs,
            "hangs": hangs, "examples": unexpected[:5],
            "slowest_input_s": round(slowest, 4),
            "seconds": round(time.perf_counter() - t0, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


# --------------------------------------------------------------------------- CLI


@click.group("reliability")
def reliability_group() -> None:
    """Reliability campaigns: fuzz, kill -9 crash consistency, overload, soak."""


@reliability_group.command("fuzz")
@click.option("--target", "targets", default="all", show_default=True,
              help=f"Comma list of {', '.join(FUZZ_TARGETS)} or all.")
@click.option("--inputs", "n", type=int, default=100_000, show_default=True,
              help="Inputs per target.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False))
def fuzz_cmd(targets, n, seed, json_out) -> None:
    """Random and mutated inputs through each decoder/loader; exit 1 on any unexpected
    exception or hang."""
    import logging

    logging.disable(logging.WARNING)  # loaders log every malformed line
    names = list(FUZZ_TARGETS) if targets == "all" else [t.strip() for t in targets.split(",")]
    results = []
    for name in names:
        if name not in FUZZ_TARGETS:
            raise click.BadParameter(f"unknown target {name!r}", param_hint="--target")
        r = run_fuzz(name, n, seed,
                     progress=lambda k, name=name: click.echo(f"  {name}: {k}", err=True))
        click.echo(json.dumps(r))
        results.append(r)
    if json_out:
        Path(json_out).write_text(json.dumps(results, indent=2) + "\n")
    if any(r["unexpected"] or r["hangs"] for r in results):
        sys.exit(1)


# --------------------------------------------------------------------------- kill -9


def read_jsonl_events(path: Path, keep: int = 5) -> tuple[list[dict], list[str]]:
    """Events of a JSONL sink in write order (rotated files oldest first) and the lines
    that do not parse (corruption)."""
    files = [path.with_name(f"{path.name}.{i}") for i in range(keep, 0, -1)] + [path]
    events, bad = [], []
    for f in files:
        if not f.exists():
            continue
        for line in f.read_bytes().split(b"\n"):
            if not line:
                continue
            try:
                events.append(json.loads(line))
            except ValueError:
                bad.append(f"{f.name}: {line[:80]!r}")
    return events, bad


def read_sqlite_events(path: Path) -> tuple[list[dict], str]:
    """Events of a SQLite sink by seq, and ``PRAGMA integrity_check``'s answer."""
    import sqlite3

    if not path.exists():
        return [], "ok"
    db = sqlite3.connect(str(path))
    try:
        check = db.execute("PRAGMA integrity_check").fetchone()[0]
        has = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone()
        rows = db.execute("SELECT seq, body FROM events ORDER BY seq").fetchall() if has \
            else []  # killed before the sink created its table
    finally:
        db.close()
    return [json.loads(b) for _, b in rows], check


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _poll_acks(port: int, acked: dict[int, dict], stop, since: int) -> None:
    """Collect acknowledged events: ``/events`` only lists events every sink has
    taken (JSONL fsync'd, SQLite committed), see Daemon._emit."""
    import http.client
    import urllib.request

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


def _wait_ready(port: int, proc, timeout: float = 120.0) -> None:
    """Until the daemon's API answers (model loaded, sinks open) or it exits."""
    import urllib.request

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
    and ``seq`` must be unique and increasing in both."""
    import subprocess
    import threading

    workdir.mkdir(parents=True, exist_ok=True)
    jl, db = workdir / "events.jsonl", workdir / "events.db"
    for f in workdir.glob("events.*"):
        f.unlink()
    rng = random.Random(seed)
    acked: dict[int, dict] = {}
    per_kill = []
    for k in range(kills + 1):
        port = _free_port()
        cfg = workdir / "device.toml"
        cfg.write_text(f'model = "{model}"\nsource = "replay:{record}"\nspeed = "{speed}"\n'
                       f'out = ["{jl}", "{db}"]\nfsync = "batch"\napi_port = {port}\n'
                       f"api_rate = 0.0\nmax_jsonl_bytes = {max_jsonl_bytes}\n")
        torn = 0
        if jl.exists():
            data = jl.read_bytes()
            torn = len(data) - (data.rfind(b"\n") + 1)
        proc = subprocess.Popen([sys.executable, "-m", "vitaledge.cli", "device", "run",
                                 "--config", str(cfg), "--log-level", "WARNING"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        stop = threading.Event()
        poller = threading.Thread(target=_poll_acks, args=(port, acked, stop,
                                                           max(acked, default=0)))
        poller.start()
        final = k == kills
        delay = rng.uniform(min_s, max_s)
        try:
            if final:
                proc.wait(timeout=600)
            else:
                _wait_ready(port, proc)
                try:
                    proc.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
        finally:
            stop.set()
            poller.join()
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            if proc.stderr:
                proc.stderr.close()
        events, bad = read_jsonl_events(jl)
        rows, check = read_sqlite_events(db)
        per_kill.append({"kill": k, "delay_s": round(delay, 3), "returncode": proc.returncode,
                         "torn_tail_bytes_before_start": torn,
                         "jsonl_events": len(events), "jsonl_bad_lines": len(bad),
                         "sqlite_events": len(rows), "sqlite_integrity": check,
                         "acked": len(acked)})
        if final and proc.returncode != 0:
            per_kill[-1]["stderr"] = err[-1000:]
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


@reliability_group.command("crash")
@click.option("--model", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--record", required=True, help="WFDB record replayed at --speed.")
@click.option("--speed", default="100", show_default=True,
              help="Replay speed (x real time), so that the daemon is writing when killed.")
@click.option("--kills", type=int, default=50, show_default=True)
@click.option("--max-jsonl-bytes", type=int, default=2_000_000, show_default=True,
              help="JSONL rotation size (5 files kept), small so kills hit rotations.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Where the sinks go (default: a temporary directory).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False))
def crash_cmd(model, record, speed, kills, max_jsonl_bytes, seed, workdir, json_out) -> None:
    """kill -9 the daemon at random moments while it writes; check both sinks after
    every kill and that no acknowledged event is lost, changed or duplicated."""
    wd = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="vitaledge-crash-"))
    r = crash_campaign(str(Path(model).resolve()), str(Path(record).resolve()), wd, kills,
                       seed, max_jsonl_bytes=max_jsonl_bytes, speed=speed)
    brief = {k: v for k, v in r.items() if k != "per_kill"}
    click.echo(json.dumps(brief, indent=2))
    if json_out:
        Path(json_out).write_text(json.dumps(r, indent=2) + "\n")
    bad = (r["jsonl_corrupt_lines"] or r["sqlite_integrity_failures"] or
           r["jsonl_duplicate_seq"] or r["sqlite_duplicate_seq"] or
           r["acked_lost_or_changed_jsonl"] or r["acked_lost_or_changed_sqlite"] or
           not r["jsonl_seq_increasing"] or r["final_returncode"] != 0)
    sys.exit(1 if bad else 0)


# --------------------------------------------------------------------------- overload


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def load_campaign(model: str, record: str, workdir: Path, seconds: float = 60.0,
                  chunk_delay_s: float = 0.01, recover_s: float = 10.0,
                  queue_chunks: int = 256, fs: float = 360.0) -> dict:
    """Overload a tcp-source daemon, then let the load fall.

    The pipeline is slowed by ``chunk_delay_s`` per chunk (a heavy model stands in), so its
    capacity is known and far below what one TCP client sending as fast as it can offers.
    Phase 1 (``seconds``): a client sends the record's samples in a loop as fast as the
    socket takes them. Phase 2 (``recover_s``): the client sends at real time. Checks:
    samples sent = samples processed + samples dropped (exactly), the gap events' missing
    samples = the dropped samples, the queue never holds more than ``queue_chunks``
    chunks, resident memory sampled every 0.5 s, and no drop in phase 2 once the queue
    has drained."""
    import socket
    import threading

    from vitaledge.device.io.records import read_record
    from vitaledge.device.model.memory import rss_mb
    from vitaledge.device.stream.daemon import Daemon, DaemonConfig

    workdir.mkdir(parents=True, exist_ok=True)
    for f in workdir.glob("load.*"):
        f.unlink()
    port = _free_port()
    d = Daemon(DaemonConfig(model=model, source=f"tcp:127.0.0.1:{port}", fs=fs,
                            out=[str(workdir / "load.jsonl")], queue_chunks=queue_chunks))
    process = d.pipeline.process

    def heavy(chunk):
        time.sleep(chunk_delay_s)
        return process(chunk)

    d.pipeline.process = heavy
    x = read_record(record).signal
    lines = [f"{v:.3f}\n".encode() for v in x]
    samples: list[dict] = []
    state = {"phase": "overload", "sent": 0, "sent_overload": 0}
    done = threading.Event()

    def sampler():
        t0 = time.monotonic()
        while not done.is_set():
            samples.append({"t": round(time.monotonic() - t0, 2), "phase": state["phase"],
                            "rss_mb": round(rss_mb(), 2), "queue": d.q.qsize(),
                            "dropped_samples": d.dropped_samples,
                            "processed": int(d.m_samples._value.get())})
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
        t_rec = time.monotonic()
        drop_at_recover = d.dropped_samples
        per = int(fs / 10)
        k = 0
        while time.monotonic() - t_rec < recover_s:
            j = i % len(lines)
            part = lines[j:j + per]
            sock.sendall(b"".join(part))
            state["sent"] += len(part)
            i += len(part)
            k += 1
            delay = t_rec + k * 0.1 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    time.sleep(2.0)
    d.request_stop()
    runner.join()
    done.set()
    summary = state["summary"]
    events, _ = read_jsonl_events(workdir / "load.jsonl")
    gap_missing = sum(e.get("missing_samples", 0) for e in events
                      if e.get("status") == "gap")
    processed = int(d.m_samples._value.get())
    over = [s for s in samples if s["phase"] == "overload"]
    rec = [s for s in samples if s["phase"] == "recover"]
    drained = [s for s in rec if s["queue"] <= 2]
    drops_after_drain = (d.dropped_samples - drained[0]["dropped_samples"]) if drained else None
    capacity = 64 / chunk_delay_s
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


@reliability_group.command("load")
@click.option("--model", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--record", required=True, help="WFDB record whose samples are sent.")
@click.option("--seconds", type=float, default=60.0, show_default=True)
@click.option("--chunk-delay", type=float, default=0.01, show_default=True,
              help="Seconds added to every 64-sample chunk (a slow pipeline).")
@click.option("--recover", "recover_s", type=float, default=10.0, show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False))
def load_cmd(model, record, seconds, chunk_delay, recover_s, json_out) -> None:
    """Overload one tcp source at >= 10x the pipeline's capacity, then recover."""
    wd = Path(tempfile.mkdtemp(prefix="vitaledge-load-"))
    r = load_campaign(str(Path(model).resolve()), record, wd, seconds, chunk_delay, recover_s)
    click.echo(json.dumps({k: v for k, v in r.items() if k != "rss_samples"}, indent=2))
    if json_out:
        Path(json_out).write_text(json.dumps(r, indent=2) + "\n")
    ok = (r["sent_minus_processed_minus_dropped"] == 0 and r["overload_factor"] >= 10
          and r["gap_event_missing_samples"] == r["dropped_samples"]
          and r["dropped_after_drain"] == 0)
    sys.exit(0 if ok else 1)


# --------------------------------------------------------------------------- streams


def streams_campaign(model: str, record: str, n: int, seconds: float = 30.0,
                     cpu: int = 0, fs: float = 360.0) -> dict:
    """``n`` daemons, each with one tcp source fed at real time by its own client, all
    pinned to one CPU: does every stream get through without a drop, and how busy is
    the core? Returns per-stream sent/processed/dropped and the CPU time used."""
    import socket
    import subprocess
    import threading

    from vitaledge.device.io.records import read_record

    x = read_record(record).signal
    lines = [f"{v:.3f}\n".encode() for v in x]
    procs = []
    ports = []
    for _ in range(n):
        port = _free_port()
        ports.append(port)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "vitaledge.cli", "device", "run", "--model", model,
             "--source", f"tcp:127.0.0.1:{port}", "--fs", str(fs), "--out", "stdout",
             "--log-level", "WARNING"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    sent = [0] * n

    def feed(k: int, t0: float) -> None:
        for _ in range(200):
            try:
                sock = socket.create_connection(("127.0.0.1", ports[k]))
                break
            except OSError:
                time.sleep(0.1)
        else:
            return
        with sock:
            per, i, tick = int(fs / 10), (k * 997) % len(lines), 0
            while time.monotonic() - t0 < seconds:
                part = lines[i:i + per] if i + per <= len(lines) else lines[:per]
                i = (i + per) % (len(lines) - per)
                sock.sendall(b"".join(part))
                sent[k] += len(part)
                tick += 1
                delay = t0 + tick * 0.1 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)

    # start unpinned (n interpreters loading on one core take long), wait until every
    # daemon listens, then pin them all to ``cpu`` for the measured part
    deadline = time.monotonic() + 120 + 3 * n
    for port in ports:
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
    for p in procs:  # every thread: affinity is per thread, new threads inherit it
        for tid in os.listdir(f"/proc/{p.pid}/task"):
            os.sched_setaffinity(int(tid), {cpu})
    time.sleep(2.0)
    cpu0 = [_cpu_s(p.pid) for p in procs]
    t0 = time.monotonic()
    feeders = [threading.Thread(target=feed, args=(k, t0)) for k in range(n)]
    for t in feeders:
        t.start()
    for t in feeders:
        t.join()
    wall = time.monotonic() - t0
    cpu1 = [_cpu_s(p.pid) for p in procs]
    time.sleep(1.0)
    stats = []
    for k, p in enumerate(procs):
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
        try:
            summ = json.loads(err.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            summ = {}
        stats.append({"sent": sent[k], "processed": summ.get("samples"),
                      "dropped": summ.get("dropped_samples")})
    used = sum(b - a for a, b in zip(cpu0, cpu1, strict=True))
    return {"streams": n, "seconds": round(wall, 1), "cpu": cpu,
            "cpu_seconds": round(used, 2), "core_utilisation": round(used / wall, 3),
            "all_complete": all(s["processed"] == s["sent"] and s["dropped"] == 0
                                for s in stats),
            "dropped_total": sum(s["dropped"] or 0 for s in stats),
            "streams_per_core_estimate": round(n / (used / wall), 1) if used else None,
            "per_stream": stats}


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        parts = fh.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


@reliability_group.command("streams")
@click.option("--model", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--record", required=True)
@click.option("--n", "counts", default="8", show_default=True, help="Comma list of counts.")
@click.option("--seconds", type=float, default=30.0, show_default=True)
@click.option("--cpu", type=int, default=0, show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False))
def streams_cmd(model, record, counts, seconds, cpu, json_out) -> None:
    """Concurrent real-time TCP streams on one core: N daemons pinned to --cpu."""
    res = []
    for n in [int(c) for c in counts.split(",")]:
        r = streams_campaign(str(Path(model).resolve()), record, n, seconds, cpu)
        click.echo(json.dumps({k: v for k, v in r.items() if k != "per_stream"}))
        res.append(r)
    if json_out:
        Path(json_out).write_text(json.dumps(res, indent=2) + "\n")


# --------------------------------------------------------------------------- soak


def soak_campaign(model: str, records: list[str], workdir: Path, hours: float = 24.0,
                  every_s: float = 2.0) -> dict:
    """Replay ``hours`` of signal (the records looped) through the daemon as fast as it
    goes, into rotating JSONL and SQLite sinks with the API polled; sample resident memory
    and open file descriptors every ``every_s`` seconds of wall time."""
    import threading
    import urllib.request

    from vitaledge.device.io.records import read_record
    from vitaledge.device.model.memory import rss_mb
    from vitaledge.device.stream.daemon import Daemon, DaemonConfig
    from vitaledge.device.stream.sources import Source

    workdir.mkdir(parents=True, exist_ok=True)
    for f in workdir.glob("soak.*"):
        f.unlink()
    port = _free_port()
    d = Daemon(DaemonConfig(model=model, source=f"replay:{records[0]}",
                            out=[str(workdir / "soak.jsonl"), str(workdir / "soak.db")],
                            max_jsonl_bytes=5_000_000, api_port=port, api_rate=0.0))
    sigs = [read_record(r).signal for r in records]
    fs = d.source.fs
    total = int(hours * 3600 * fs)
    chunk = int(10 * fs)

    def looped():
        done = 0
        while done < total:
            for s in sigs:
                for i in range(0, len(s), chunk):
                    part = s[i:i + chunk][: total - done]
                    if not len(part):
                        return
                    done += len(part)
                    yield part

    d.source = Source("soak", fs, looped())
    samples: list[dict] = []
    finished = threading.Event()

    def sampler():
        t0 = time.monotonic()
        while not finished.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/events?since="
                                            f"{max(0, d.seq - 5)}", timeout=2) as r:
                    r.read()
            except OSError:
                pass
            samples.append({"t": round(time.monotonic() - t0, 1),
                            "signal_h": round(d.pipeline.samples_in / fs / 3600, 3),
                            "rss_mb": round(rss_mb(), 2), "fds": _fds(),
                            "threads": threading.active_count(), "events": d.seq})
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


@reliability_group.command("soak")
@click.option("--model", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--records", required=True,
              help="Comma list of WFDB records (same rate), looped.")
@click.option("--hours", type=float, default=24.0, show_default=True,
              help="Hours of signal replayed.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False))
def soak_cmd(model, records, hours, json_out) -> None:
    """Replay >= 24 h of signal at max speed; RSS and open fds sampled over the run."""
    wd = Path(tempfile.mkdtemp(prefix="vitaledge-soak-"))
    r = soak_campaign(str(Path(model).resolve()), [x.strip() for x in records.split(",")],
                      wd, hours)
    click.echo(json.dumps({k: v for k, v in r.items() if k != "samples"}, indent=2))
    if json_out:
        Path(json_out).write_text(json.dumps(r, indent=2) + "\n")


if __name__ == "__main__":
    reliability_group()
