"""Where events go: JSON Lines files (size-based rotation), SQLite (WAL), stdout.

Acknowledged means durable: the JSONL sink fsyncs according to ``fsync`` —
``"batch"`` after every batch of events written (default), ``"interval:S"`` at most every
S seconds, ``"never"`` (leave it to the OS). The SQLite sink commits every batch in one
transaction with WAL journaling and ``synchronous=NORMAL``, durable across process crashes.
Events carry a sequence number ``seq``; a restarted daemon continues after the last one it
finds in its sinks.

Reusing a file is explicit: a JSONL or SQLite sink that already holds events is refused
unless ``append`` is set (``--append``, config ``append = true``); the daemon marks every
event with the ``run`` it belongs to, so ``device score`` can tell appended runs apart.

A failing sink stays the daemon's problem alone: :class:`GuardedSink` keeps the events it
could not take (bounded) and retries with backoff (:data:`SINK_RETRY_S`), while the other
sinks go on.

:data:`SINKS` maps each scheme to its kind (its opener, and whether it writes a local file
or forwards to a broker): ``jsonl:PATH``, ``sqlite:PATH``, ``stdout``,
``mqtt://HOST:PORT/PREFIX`` and ``mqtts://HOST:PORT/PREFIX`` (TLS): store and forward to an
MQTT broker, :mod:`.mqtt_sink`; a bare path picks its scheme by suffix (:data:`SUFFIXES`:
``PATH.jsonl``, ``PATH.db`` ...) and ``-`` is stdout.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from vitaledge.device.io.event_files import rotated


def fsync_interval(policy: str) -> float:
    """The seconds between fsyncs of an ``interval:S`` policy, 0 for ``batch`` and
    ``never``; ValueError naming the policy for anything else (S must be finite and > 0)."""
    if policy in ("batch", "never"):
        return 0.0
    seconds = math.nan
    if isinstance(policy, str) and policy.startswith("interval:"):
        try:
            seconds = float(policy.split(":", 1)[1])
        except ValueError:
            pass
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"fsync policy {policy!r}: expected batch, never or interval:S "
                         "(S seconds > 0)")
    return seconds


class LocalSink:
    """A sink that writes on the device: it has nothing to announce, no delivery to
    report and no trouble beyond its own write errors (which :class:`GuardedSink` keeps)."""

    def announce(self) -> None:
        """Nothing to say again when the model changes."""

    def trouble(self) -> str | None:
        return None

    def delivery(self) -> dict | None:
        return None


class JsonlSink(LocalSink):
    def __init__(self, path: str | Path, max_bytes: int = 50_000_000, keep: int = 5,
                 fsync: str = "batch"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.keep = max_bytes, keep
        self.fsync = fsync
        self._interval = fsync_interval(fsync)
        self._last_sync = time.monotonic()
        self.repaired_bytes = self._drop_torn_tail()
        self._fh = self.path.open("ab", buffering=0)  # unbuffered: what failed is not retried

    def _drop_torn_tail(self) -> int:
        """A crash mid-write can leave a last line without its newline: never fsync'd,
        so never acknowledged. Cut it off, or the next event would be glued to it."""
        if not self.path.is_file():
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
        for path in (self.path, rotated(self.path, 1)):
            last = 0
            if path.is_file():  # not a device (/dev/full reads zeros without end)
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
        """Append ``events`` as lines, all or none: a write that fails part-way (a full
        disk) is cut back to where it began, so the retry of the same events (the sink's
        backlog) does not write the lines that did get through a second time."""
        if not events:
            return
        data = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events).encode()
        fd = self._fh.fileno()
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            try:
                os.ftruncate(fd, start)
            except OSError:  # rare (shrinking frees space): the lines written stay
                pass
            raise
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
            src = rotated(self.path, i)
            if src.exists():
                src.replace(rotated(self.path, i + 1))
        self.path.replace(rotated(self.path, 1))
        self._fh = self.path.open("ab", buffering=0)

    def close(self) -> None:
        if not self._fh.closed:
            try:
                os.fsync(self._fh.fileno())
            finally:  # closed even when the flush fails (disk full): no leaked descriptor
                self._fh.close()


#: The columns of the SQLite sink's ``events`` table.
EVENT_COLUMNS = ("seq", "type", "time", "sample", "class", "body")


class SqliteSink(LocalSink):
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False)
        try:
            tables = sorted(r[0] for r in self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"))
            # another program's database is refused before anything is changed in it (its
            # journal mode included)
            if tables and "events" not in tables:
                self._db.close()
                raise ValueError(f"{self.path}: another program's database (tables "
                                 f"{', '.join(tables[:5])}): not an events database")
            cols = {r[1] for r in self._db.execute("PRAGMA table_info(events)")}
            missing = sorted(set(EVENT_COLUMNS) - cols) if tables else []
            if missing:  # another program's table of that name
                self._db.close()
                raise ValueError(f"{self.path}: its events table is not vitaledge's (no "
                                 f"column {', '.join(missing)})")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, "
                             "type TEXT NOT NULL, time REAL, sample INTEGER, class TEXT, "
                             "body TEXT NOT NULL)")
            self._db.commit()
        except sqlite3.DatabaseError as exc:  # an existing file that is not a database
            self._db.close()
            raise ValueError(f"{self.path}: cannot be an events database ({exc})") from None

    def last_seq(self) -> int:
        try:
            row = self._db.execute("SELECT MAX(seq) FROM events").fetchone()
        except sqlite3.DatabaseError as exc:  # a damaged page, met by --append
            raise ValueError(f"sink {self.path}: cannot read its events ({exc})") from None
        return int(row[0] or 0)

    def count(self) -> int:
        """How many events the database holds."""
        return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

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


class StdoutSink(LocalSink):
    path = "stdout"

    def write(self, events: list[dict]) -> None:
        for e in events:
            sys.stdout.write(json.dumps(e, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    def last_seq(self) -> int:
        return 0

    def close(self) -> None:
        sys.stdout.flush()


class Sink(Protocol):
    """What the daemon calls on a sink. ``path`` names where events go (a file, a broker's
    URL, ``stdout``); ``announce`` says again who the daemon is (its model changed);
    ``trouble`` is why a sink that writes is not delivering, for ``/health`` (None: it
    is); ``delivery`` is a forwarding sink's figures for the run's summary (None for a
    local sink)."""

    path: str | Path

    def write(self, events: list[dict]) -> None: ...

    def last_seq(self) -> int: ...

    def close(self) -> None: ...

    def announce(self) -> None: ...

    def trouble(self) -> str | None: ...

    def delivery(self) -> dict | None: ...


@dataclass(frozen=True)
class SinkOptions:
    """The daemon's sink settings; each sink takes what applies to it."""

    fsync: str = "batch"
    max_bytes: int = 50_000_000
    append: bool = False  # add to a sink file that already holds events
    mqtt: dict | None = None  # the config's [mqtt] table (device/stream/mqtt.py)
    # what the daemon serves (model, counters), for the MQTT birth and stats messages
    context: Callable[[], dict] | None = None


def _refuse_reuse(path: str, what: str) -> None:
    raise ValueError(f"{path}: already holds {what}; give --append (config append = true) "
                     "to add this run to them (each event carries its run id), or choose "
                     "another file")


def check_events_file(path: Path) -> None:
    """A non-empty file ``--append`` is to add to must hold events: its first line one (a
    torn first event, cut off by a crash, starts like one). Anything else is refused
    before it is touched: the sink would cut its last line (a torn tail) and glue events
    to a file of other things."""
    with path.open("rb") as fh:
        first = fh.readline(65536)
    if not first.endswith(b"\n"):
        if first.startswith(b'{"'):
            return
        why = "its first line is not an event"
    else:
        try:
            ev = json.loads(first)
            why = None if isinstance(ev, dict) and isinstance(ev.get("type"), str) and \
                isinstance(ev.get("seq"), int) else "its first line is not an event"
        except (ValueError, RecursionError):
            why = "its first line is not JSON"
    if why:
        raise ValueError(f"{path}: holds no vitaledge events ({why}); --append adds a run to "
                         "an events file: choose another file")


def open_jsonl(path: str, opts: SinkOptions) -> JsonlSink:
    """``jsonl:PATH``; a non-empty file (or its rotated ``.1``) only with ``append``, and
    then only a file of events."""
    if not path:
        raise ValueError("jsonl sink needs a path: jsonl:PATH")
    p = Path(path)
    for f in (p, rotated(p, 1)):
        if f.is_file() and f.stat().st_size > 0:
            if not opts.append:
                _refuse_reuse(path, f"events ({f.stat().st_size} bytes in {f.name})")
            check_events_file(f)
    return JsonlSink(path, max_bytes=opts.max_bytes, fsync=opts.fsync)


def open_sqlite(path: str, opts: SinkOptions) -> SqliteSink:
    """``sqlite:PATH``; a database holding events only with ``append``."""
    if not path:
        raise ValueError("sqlite sink needs a path: sqlite:PATH")
    sink = SqliteSink(path)
    if not opts.append:
        n = sink.count()
        if n:
            sink.close()
            _refuse_reuse(path, f"{n} events")
    return sink


def open_stdout(path: str, opts: SinkOptions) -> StdoutSink:
    """``stdout``."""
    if path:
        raise ValueError(f"stdout sink takes no path, got {path!r}")
    return StdoutSink()


def open_mqtt(path: str, opts: SinkOptions, scheme: str = "mqtt") -> Sink:
    """``mqtt://HOST:PORT/PREFIX`` (``mqtts://`` for TLS): store and forward to a broker
    (device/stream/mqtt_sink.py; paho-mqtt, from the ``device`` extra)."""
    from vitaledge.device.stream.mqtt_sink import open_mqtt as _open

    return _open(f"{scheme}:{path}", opts.mqtt, opts.context)


@dataclass(frozen=True)
class SinkKind:
    """One sink scheme: ``open(path, options)``, and what the daemon checks of it: ``file``,
    its path is a local file (no input read and no other sink may be it); ``broker``, it
    forwards to an MQTT broker through its own spool file (two such sinks may not share
    one) and carries over-the-air updates."""

    open: Callable[[str, SinkOptions], Sink]
    #: how ``--sink`` spells it, for the help
    usage: str
    file: bool = False
    broker: bool = False


#: Scheme -> its kind; a new sink is one entry here plus its opener.
SINKS: dict[str, SinkKind] = {
    "jsonl": SinkKind(open_jsonl, "jsonl:PATH", file=True),
    "sqlite": SinkKind(open_sqlite, "sqlite:PATH", file=True),
    "stdout": SinkKind(open_stdout, "stdout (or -)"),
    "mqtt": SinkKind(open_mqtt, "mqtt://HOST:PORT/PREFIX", broker=True),
    "mqtts": SinkKind(lambda path, opts: open_mqtt(path, opts, "mqtts"),
                      "mqtts://HOST:PORT/PREFIX", broker=True),
}
#: A bare path's suffix -> its scheme.
SUFFIXES = {".jsonl": "jsonl", ".json": "jsonl", ".db": "sqlite", ".sqlite": "sqlite",
            ".sqlite3": "sqlite"}


def sinks_help() -> str:
    """``--sink``'s help: a bare path by its suffix, then every scheme."""
    return ", ".join([*(f"PATH{suffix}" for suffix in SUFFIXES),
                      *(k.usage for k in SINKS.values())])


def open_sink(spec: str, fsync: str = "batch", max_bytes: int = 50_000_000,
              append: bool = False, mqtt: dict | None = None,
              context: Callable[[], dict] | None = None) -> Sink:
    """Open ``SCHEME:PATH`` (see :data:`SINKS`), ``stdout`` or ``-``, or a bare path by its
    suffix (:data:`SUFFIXES`). A file that already holds events needs ``append``."""
    scheme, path = sink_target(spec)
    try:
        return SINKS[scheme].open(path, SinkOptions(fsync, max_bytes, append, mqtt, context))
    except (OSError, sqlite3.Error) as exc:  # a path that cannot be opened or created
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        named = getattr(exc, "filename", None)  # the file that failed (a parent, a spool)
        where = f" ({named})" if named and str(named) != str(path) else ""
        what = f" {path}" if SINKS[scheme].file else ""  # a broker's: its spool is named
        raise ValueError(f"sink {spec}: cannot open{what}: {why}{where}") from exc


def sink_target(spec: str) -> tuple[str, str]:
    """(scheme, path) of a sink spec as :func:`open_sink` reads it; ValueError for an
    unknown scheme or suffix."""
    scheme, _, path = spec.partition(":")
    if spec == "-":
        scheme, path = "stdout", ""
    elif scheme not in SINKS and not path:
        scheme, path = SUFFIXES.get(Path(spec).suffix, ""), spec
    if scheme not in SINKS:
        raise ValueError(f"unknown sink {spec!r}: expected SCHEME:PATH with a scheme among "
                         f"{', '.join(SINKS)} (stdout alone), or a path ending in "
                         f"{', '.join(SUFFIXES)}")
    return scheme, path


def sink_file(spec: str) -> Path | None:
    """The local file a sink spec writes (None: stdout, a broker)."""
    scheme, path = sink_target(spec)
    return Path(path) if SINKS[scheme].file else None


def sink_kind(spec: str) -> SinkKind:
    """The kind of a sink spec (ValueError for an unknown scheme or suffix)."""
    return SINKS[sink_target(spec)[0]]


#: A failing sink is retried after the first delay (s), doubling up to the second.
SINK_RETRY_S = (1.0, 60.0)
#: Events kept for a failing sink; beyond this the oldest are dropped (and counted).
SINK_BACKLOG = 100_000


class GuardedSink:
    """A sink whose failures stay its own (a full disk, a vanished mount).

    :meth:`write` never raises: a failed write keeps the events (at most ``backlog``, the
    oldest dropped and counted in ``lost``), closes the sink and returns ``"failed"``;
    later writes only add to the backlog until the retry time, then the sink is opened
    again with ``reopen()`` (a JSONL file cuts a torn last line on opening) and given the
    backlog; success returns ``"recovered"``. Retries back off from ``retry_s[0]``
    doubling to ``retry_s[1]`` seconds."""

    def __init__(self, name: str, sink: Sink, reopen: Callable[[], Sink],
                 retry_s: tuple[float, float] | None = None, backlog: int = SINK_BACKLOG,
                 clock: Callable[[], float] = time.monotonic):
        from collections import deque

        self.name, self.sink, self._reopen, self._clock = name, sink, reopen, clock
        self._path = sink.path
        self.retry_s = retry_s or SINK_RETRY_S
        self.backlog: deque[dict] = deque(maxlen=backlog)
        self.failing, self.error = False, ""
        self.attempts = self.errors = self.lost = 0
        self._delay, self._next_try = 0.0, 0.0

    @property
    def path(self):
        return self._path

    def last_seq(self) -> int:
        return self.sink.last_seq()

    def _keep(self, events: list[dict]) -> None:
        over = len(self.backlog) + len(events) - (self.backlog.maxlen or 0)
        self.lost += max(0, over)
        self.backlog.extend(events)

    def write(self, events: list[dict]) -> str | None:
        """Write (or keep) ``events``; ``"failed"``/``"recovered"`` when that changes."""
        if self.failing:
            self._keep(events)
            if self._clock() < self._next_try:
                return None
            batch = list(self.backlog)
        else:
            batch = events
        self.attempts += 1
        try:
            if self.sink is None:
                self.sink = self._reopen()
            self.sink.write(batch)
        except Exception as exc:  # noqa: BLE001 - whatever the sink raises is its own
            self.errors += 1
            self.error = f"{type(exc).__name__}: {exc}"
            self._close_quietly()
            if not self.failing:
                self._keep(events)
            self._delay = (self.retry_s[0] if not self.failing
                           else min(2 * self._delay, self.retry_s[1]))
            self._next_try = self._clock() + self._delay
            was, self.failing = self.failing, True
            return None if was else "failed"
        if self.failing:
            self.failing = False
            self.backlog.clear()
            return "recovered"
        return None

    def _close_quietly(self) -> None:
        if self.sink is not None:
            try:
                self.sink.close()
            except Exception:  # noqa: BLE001 - already failing
                pass
            self.sink = None

    def announce(self) -> None:
        if self.sink is not None:
            self.sink.announce()

    def trouble(self) -> str | None:
        """The sink's own account of not delivering (a failing sink's is its error)."""
        return self.sink.trouble() if self.sink is not None else None

    def delivery(self) -> dict | None:
        return self.sink.delivery() if self.sink is not None else None

    def close(self) -> None:
        """Close; a failing sink gets one last try at its backlog first."""
        if self.failing:
            self._next_try = 0.0
            self.write([])
        if self.failing:
            self._close_quietly()
        elif self.sink is not None:
            self.sink.close()

    def stats(self) -> dict:
        return {"failing": self.failing, "error": self.error, "attempts": self.attempts,
                "errors": self.errors, "unwritten": len(self.backlog) + self.lost
                if self.failing else self.lost}
