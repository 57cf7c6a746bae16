"""Fuzzing the decoders and loaders.

A fuzz target takes bytes and must either succeed or raise one of the target's documented
error types (:func:`documented_errors`); anything else is a bug. Inputs are random bytes
and mutations (bit flips, byte edits, insertions, deletions, truncation, splices,
interesting integers) of the seed corpus (``corpus``), seeded so a run can be repeated.
"""

from __future__ import annotations

import os
import random
import resource
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitaledge.device.bench.reliability.corpus import (
    csv_seed,
    kaggle_seed,
    manifest_seed,
    protocol_seed,
    wav_seed,
    wfdb_seed,
)

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
    from vitaledge.device.stream.sources import read_csv_samples, text_samples

    p = _scratch() / "x.csv"
    p.write_bytes(data)
    try:
        read_csv_samples(p)
    finally:
        text = data.decode("utf-8", errors="replace")
        for chunk in text_samples(iter(text.splitlines(keepends=True)), "fuzz", 7):
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


# --------------------------------------------------------------------------- harness


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
