"""Reading back what the sinks wrote: every event and every sign of corruption."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from vitaledge.device.io.event_files import written_files


def read_jsonl_events(path: Path) -> tuple[list[dict], list[str]]:
    """Events of a JSONL sink in write order (rotated files oldest first) and the lines
    that do not parse (corruption)."""
    events, bad = [], []
    for f in written_files(path):
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
