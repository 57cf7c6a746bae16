"""Reading back what the sinks wrote: every event and every sign of corruption (the
files are read by :mod:`vitaledge.device.io.event_files`, as scoring reads them)."""

from __future__ import annotations

from pathlib import Path

from vitaledge.device.io.event_files import read_jsonl, read_sqlite


def read_jsonl_events(path: Path) -> tuple[list[dict], list[str]]:
    """Events of a JSONL sink in write order (rotated files oldest first) and the lines
    that do not parse (corruption)."""
    files = read_jsonl(path)
    return ([e for f in files for e in f.rows],
            [f"{f.path.name}: {b.text!r}" for f in files for b in f.bad])


def read_sqlite_events(path: Path) -> tuple[list[dict], str]:
    """Events of a SQLite sink by seq, and ``PRAGMA integrity_check``'s answer."""
    if not path.exists():
        return [], "ok"
    rows, check = read_sqlite(path, integrity=True)
    return rows or [], check or "ok"
