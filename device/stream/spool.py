"""The on-disk spool of the store-and-forward MQTT sink: events wait here until the broker
has acknowledged them.

SQLite in WAL mode (``synchronous=NORMAL``: a committed batch survives the process being
killed); one row per message in the order written. Rows leave only by :meth:`Spool.ack`
(the broker's PUBACK) or, when the spool is over ``max_bytes``, as the oldest dropped —
counted in ``dropped`` (kept in the file, so it survives restarts). The highest ``seq``
ever spooled is kept too, so a restarted daemon numbers on from it.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

#: The spool's tables and the columns it reads (tables named sqlite_... are SQLite's own:
#: sqlite_sequence of AUTOINCREMENT, sqlite_stat1 of an ANALYZE an operator ran).
SPOOL_TABLES = {"spool": {"id", "seq", "topic", "payload"}, "meta": {"key", "value"}}


class Spool:
    def __init__(self, path: str | Path, max_bytes: int):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False)
        except sqlite3.Error as exc:  # sqlite names no file: the spool's path is the one
            raise sqlite3.OperationalError(f"spool {self.path}: {exc}") from exc
        try:
            self._check_tables()  # before anything is changed in another program's file
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._db:
                self._db.execute("CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY "
                                 "AUTOINCREMENT, seq INTEGER, topic TEXT NOT NULL, "
                                 "payload BLOB NOT NULL)")
                self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, "
                                 "value INTEGER NOT NULL)")
            row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) "
                                   "FROM spool").fetchone()
            self.count, self.bytes = int(row[0]), int(row[1])
            self._meta("last_seq")  # a damaged page shows here, not in the sink's thread
        except sqlite3.Error as exc:
            self._db.close()
            raise sqlite3.OperationalError(f"spool {self.path}: {exc}") from exc
        except ValueError:
            self._db.close()
            raise

    def _check_tables(self) -> None:
        """Refuse (ValueError) a database that holds tables of another program's, or its
        own tables without their columns: the spool would write into it."""
        tables = sorted(r[0] for r in self._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"))
        other = [t for t in tables if t not in SPOOL_TABLES and not t.startswith("sqlite_")]
        if other:
            raise ValueError(f"spool {self.path}: another program's database (tables "
                             f"{', '.join(other[:5])}): not an MQTT spool")
        for table, want in SPOOL_TABLES.items():
            cols = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
            if table in tables and not want <= cols:
                raise ValueError(f"spool {self.path}: its {table} table is not vitaledge's "
                                 f"(no column {', '.join(sorted(want - cols))})")

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    @property
    def dropped(self) -> int:
        with self._lock:
            return self._meta("dropped")

    def last_seq(self) -> int:
        with self._lock:
            return self._meta("last_seq")

    def put(self, rows: list[tuple[int | None, str, bytes]]) -> int:
        """Add (seq, topic, payload) rows in one transaction; returns how many of the oldest
        were dropped to stay within ``max_bytes``."""
        if not rows:
            return 0
        seqs = [s for s, _, _ in rows if s is not None]
        with self._lock, self._db:
            self._db.executemany("INSERT INTO spool (seq, topic, payload) VALUES (?, ?, ?)",
                                 rows)
            if seqs:
                self._db.execute("INSERT INTO meta VALUES ('last_seq', ?) ON CONFLICT(key) "
                                 "DO UPDATE SET value = MAX(value, excluded.value)",
                                 (max(seqs),))
            self.count += len(rows)
            self.bytes += sum(len(p) for _, _, p in rows)
            return self._trim()

    def _trim(self) -> int:
        dropped = 0
        while self.bytes > self.max_bytes and self.count > 0:
            n = max(1, self.count // 20)  # a twentieth at a time: few rounds, little loss
            gone = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM "
                                    "(SELECT payload FROM spool ORDER BY id LIMIT ?)",
                                    (n,)).fetchone()
            self._db.execute("DELETE FROM spool WHERE id IN (SELECT id FROM spool ORDER BY id "
                             "LIMIT ?)", (n,))
            self.count -= int(gone[0])
            self.bytes -= int(gone[1])
            dropped += int(gone[0])
        if dropped:
            self._db.execute("INSERT INTO meta VALUES ('dropped', ?) ON CONFLICT(key) "
                             "DO UPDATE SET value = value + excluded.value", (dropped,))
        return dropped

    def after(self, row_id: int, limit: int) -> list[tuple[int, str, bytes]]:
        """Up to ``limit`` (id, topic, payload) rows after ``row_id``, oldest first."""
        with self._lock:
            return self._db.execute("SELECT id, topic, payload FROM spool WHERE id > ? "
                                    "ORDER BY id LIMIT ?", (row_id, limit)).fetchall()

    def ack(self, ids: list[int]) -> None:
        """The broker has these: they leave the spool."""
        if not ids:
            return
        with self._lock, self._db:
            q = ",".join("?" * len(ids))
            row = self._db.execute(f"SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) "
                                   f"FROM spool WHERE id IN ({q})", ids).fetchone()
            self._db.execute(f"DELETE FROM spool WHERE id IN ({q})", ids)
            self.count -= int(row[0])
            self.bytes -= int(row[1])

    def close(self) -> None:
        with self._lock:
            self._db.close()
