"""Where events go: JSON Lines files (size-based rotation), SQLite (WAL), stdout.

Acknowledged means durable: the JSONL sink fsyncs according to ``fsync`` —
``"batch"`` after every batch of events written (default), ``"interval:S"`` at most every
S seconds, ``"never"`` (leave it to the OS). The SQLite sink commits every batch in one
transaction with WAL journaling and ``synchronous=NORMAL``, durable across process crashes.
Events carry a sequence number ``seq``; a restarted daemon continues after the last one it
finds in its sinks.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from pathlib import Path


class JsonlSink:
    def __init__(self, path: str | Path, max_bytes: int = 50_000_000, keep: int = 5,
                 fsync: str = "batch"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.keep = max_bytes, keep
        if fsync not in ("batch", "never") and not fsync.startswith("interval:"):
            raise ValueError(f"fsync policy {fsync!r}: expected batch, never or interval:S")
        self.fsync = fsync
        self._interval = float(fsync.split(":")[1]) if fsync.startswith("interval:") else 0.0
        self._last_sync = time.monotonic()
        self.repaired_bytes = self._drop_torn_tail()
        self._fh = self.path.open("a", encoding="utf-8")

    def _drop_torn_tail(self) -> int:
        """A crash mid-write can leave a last line without its newline: never fsync'd,
        so never acknowledged. Cut it off, or the next event would be glued to it."""
        if not self.path.exists():
            return 0
        with self.path.open("r+b") as fh:
            size = fh.seek(0, os.SEEK_END)
            pos = size
            while pos > 0:
                step = min(4096, pos)
                fh.seek(pos - step)
                block = fh.read(step)
                nl = block.rfind(b"\n")
                if nl >= 0:
                    pos = pos - step + nl + 1
                    break
                pos -= step
            if pos < size:
                fh.truncate(pos)
                fh.flush()
                os.fsync(fh.fileno())
            return size - pos

    def last_seq(self) -> int:
        """Highest ``seq`` in the current file, or in the newest rotated one when the
        current file has none yet (a crash right after rotating must not restart at 1)."""
        for path in (self.path, self.path.with_name(f"{self.path.name}.1")):
            last = 0
            if path.exists():
                with path.open("rb") as fh:
                    for line in fh:
                        try:
                            last = max(last, int(json.loads(line).get("seq", 0)))
                        except (ValueError, AttributeError):
                            continue
            if last:
                return last
        return 0

    def write(self, events: list[dict]) -> None:
        if not events:
            return
        self._fh.write("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events))
        self._fh.flush()
        now = time.monotonic()
        if self.fsync == "batch" or (self._interval and now - self._last_sync >= self._interval):
            os.fsync(self._fh.fileno())
            self._last_sync = now
        if self._fh.tell() >= self.max_bytes:
            self._rotate()

    def _rotate(self) -> None:
        os.fsync(self._fh.fileno())
        self._fh.close()
        for i in range(self.keep - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                src.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._fh = self.path.open("a", encoding="utf-8")

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()


class SqliteSink:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, "
                         "type TEXT NOT NULL, time REAL, sample INTEGER, class TEXT, "
                         "body TEXT NOT NULL)")
        self._db.commit()

    def last_seq(self) -> int:
        row = self._db.execute("SELECT MAX(seq) FROM events").fetchone()
        return int(row[0] or 0)

    def write(self, events: list[dict]) -> None:
        if not events:
            return
        with self._db:
            self._db.executemany(
                "INSERT OR IGNORE INTO events (seq, type, time, sample, class, body) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(e["seq"], e.get("type"), e.get("time"), e.get("sample"), e.get("class"),
                  json.dumps(e, separators=(",", ":"))) for e in events])

    def close(self) -> None:
        self._db.close()


class StdoutSink:
    def write(self, events: list[dict]) -> None:
        for e in events:
            sys.stdout.write(json.dumps(e, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    def last_seq(self) -> int:
        return 0

    def close(self) -> None:
        sys.stdout.flush()


def open_sink(spec: str, fsync: str = "batch", max_bytes: int = 50_000_000):
    """``PATH.jsonl`` / ``jsonl:PATH``, ``PATH.db`` / ``sqlite:PATH``, or ``stdout``."""
    kind, _, rest = spec.partition(":")
    if spec == "stdout" or spec == "-":
        return StdoutSink()
    if kind == "jsonl" or (not rest and spec.endswith((".jsonl", ".json"))):
        return JsonlSink(rest or spec, max_bytes=max_bytes, fsync=fsync)
    if kind == "sqlite" or (not rest and spec.endswith((".db", ".sqlite", ".sqlite3"))):
        return SqliteSink(rest or spec)
    raise ValueError(f"unknown sink {spec!r}: expected PATH.jsonl, PATH.db, jsonl:PATH, "
                     "sqlite:PATH or stdout")
