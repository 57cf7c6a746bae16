"""The files of a JSON Lines events sink on disk: ``PATH``, and once the sink has rotated
(at its size limit), ``PATH.1`` (the newest full file) to ``PATH.N`` (the oldest kept).
The sink writes them (:mod:`vitaledge.device.stream.sinks`); scoring, the review page and
the reliability bench read them back, oldest first, as one stream of events."""

from __future__ import annotations

import glob
import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path


def rotated(path: str | Path, i: int) -> Path:
    """The ``i``-th rotated file of the sink writing ``path`` (1 the newest)."""
    path = Path(path)
    return path.with_name(f"{path.name}.{i}")


def written_files(path: str | Path) -> list[Path]:
    """The files of the sink writing ``path`` in the order they were written: its rotated
    files that are there (``PATH.N`` ... ``PATH.1``; a crash inside a rotation can leave a
    number missing, so every ``PATH.<number>`` counts), then ``PATH`` itself."""
    path = Path(path)
    tails = (p.name[len(path.name) + 1:] for p in
             path.parent.glob(f"{glob.escape(path.name)}.*") if p.is_file())
    numbers = sorted((int(n) for n in tails if n.isdigit()), reverse=True)
    return [rotated(path, i) for i in numbers] + [path]


@dataclass(frozen=True)
class BadLine:
    """A line of a JSON Lines file that is not JSON: its 1-based number, its first bytes
    and why; ``last`` when it is the file's last line (a write a crash cut off)."""

    number: int
    text: bytes
    error: str
    last: bool


@dataclass
class JsonlFile:
    """What one file of a JSON Lines sink holds: its JSON values and its other lines."""

    path: Path
    rows: list = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)


def read_jsonl(path: str | Path) -> list[JsonlFile]:
    """Each file of the sink writing ``path`` (:func:`written_files`, oldest first; those
    not there are left out) with its JSON values in order and the lines that are not JSON
    (blank lines are skipped). Readers decide what a bad line means: scoring refuses
    all but a torn last line, the crash campaign counts them as corruption."""
    out = []
    for f in written_files(path):
        if not f.exists():
            continue
        got = JsonlFile(f)
        lines = f.read_bytes().split(b"\n")
        while lines and not lines[-1].strip():
            lines.pop()
        for i, raw in enumerate(lines):
            if not raw.strip():
                continue
            try:
                got.rows.append(json.loads(raw.decode("utf-8")))
            except ValueError as exc:  # not UTF-8, or not JSON
                got.bad.append(BadLine(i + 1, raw[:80], str(exc), i == len(lines) - 1))
        out.append(got)
    return out


def read_sqlite(path: str | Path, integrity: bool = False) -> tuple[list | None, str | None]:
    """The events of a SQLite sink's database by ``seq`` (None when it has no events
    table: another program's database, or a sink killed before it made one) and, with
    ``integrity``, ``PRAGMA integrity_check``'s answer. Opened read-only; sqlite3.Error
    for a file that is not a database."""
    uri = Path(path).resolve().as_uri() + "?mode=ro"  # '#', '?', '%' in the path escaped
    with closing(sqlite3.connect(uri, uri=True)) as db:
        check = db.execute("PRAGMA integrity_check").fetchone()[0] if integrity else None
        has = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                         "name = 'events'").fetchone()
        if not has:
            return None, check
        body = db.execute("SELECT body FROM events ORDER BY seq").fetchall()
    return [json.loads(b) for (b,) in body], check
