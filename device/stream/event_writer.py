"""The daemon's events on their way out: numbered (``seq`` after the last one any sink
holds, ``run`` the run's id), written to every sink in one batch (a sink that fails is
retried and never stops the others; its failing and recovering are events too), counted
per type and kept, the last few, for the API's ``/events``."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable

from vitaledge.device.stream import events as event
from vitaledge.device.stream.daemon_metrics import DaemonMetrics
from vitaledge.device.stream.sinks import GuardedSink

log = logging.getLogger("vitaledge.daemon")


class EventWriter:
    """Writes one run's events to ``sinks``; ``clock()`` is the stream time of the status
    events a sink's failing or recovering makes; ``keep`` events are kept for
    :meth:`since`. One batch is written at a time; after :meth:`abandon` nothing is."""

    def __init__(self, sinks: list[GuardedSink], meters: DaemonMetrics,
                 clock: Callable[[], float], keep: int):
        self.sinks = sinks
        self.meters = meters
        self.clock = clock
        self.seq = max((s.last_seq() for s in sinks), default=0)
        self.run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + \
            secrets.token_hex(3)
        self.emitted: dict[str, int] = {}  # events of this run per type, for the summary
        self.recent: deque[dict] = deque(maxlen=keep)
        self.abandoned = threading.Event()  # the worker overran its grace: write nothing
        self._batch = threading.Lock()  # one writer at a time; taken by abandon()
        self._kept = threading.Lock()  # recent, read by the API's thread
        self._closed = False

    def emit(self, events: list[dict]) -> None:
        """Number ``events`` and write them, with the status events the writing makes."""
        if not events:
            return
        with self._batch:
            if self.abandoned.is_set():
                return
            self._number(events)
            batch = events
            while batch:  # a sink failing or recovering is reported on the sinks
                batch = self._number(self._write(batch))
                events = events + batch
        for e in events:
            self.emitted[e.get("type", "?")] = self.emitted.get(e.get("type", "?"), 0) + 1
        with self._kept:
            self.recent.extend(events)

    def since(self, seq: int, limit: int) -> list[dict]:
        """The kept events after ``seq``, at most ``limit``."""
        with self._kept:
            return [e for e in self.recent if e["seq"] > seq][:limit]

    def abandon(self, wait_s: float) -> None:
        """Write nothing more, once the batch being written (if any, for up to ``wait_s``)
        is done."""
        got = self._batch.acquire(timeout=wait_s)
        self.abandoned.set()
        if got:
            self._batch.release()

    def close(self) -> dict:
        """Close every sink (once; closing again changes nothing); the statistics of those
        that failed (``unwritten`` events among them), by name."""
        if not self._closed:
            self._closed = True
            for s in self.sinks:
                s.close()
        return {s.name: s.stats() for s in self.sinks if s.errors}

    def delivery(self) -> dict:
        """Per sink that forwards (MQTT): events dropped from its full spool and events
        left in it for the next run, read after the sinks closed."""
        return {s.name: d for s in self.sinks if (d := s.delivery()) is not None}

    def _number(self, events: list[dict]) -> list[dict]:
        for e in events:
            self.seq += 1
            e["seq"] = self.seq
            e["run"] = self.run_id
            if e.get("type") == "beat":
                self.meters.beats.labels(e["class"]).inc()
            elif e.get("type") == "emotion":
                self.meters.emotions.labels(e["task"], e["class"]).inc()
        return events

    def _write(self, events: list[dict]) -> list[dict]:
        """``events`` to every sink; the status events of sinks failing or recovering."""
        status = []
        for s in self.sinks:
            backlog, errors = len(s.backlog), s.errors
            change = s.write(events)
            if s.errors > errors:
                self.meters.sink_errors.labels(s.name).inc(s.errors - errors)
            if not s.failing:
                self.meters.written.labels(str(s.path)).inc(len(events) + backlog)
            if change == "failed":
                log.error(json.dumps({"event": "sink_error", "sink": s.name,
                                      "error": s.error}))
                status.append(event.sink_error(self.clock(), s.name, s.error))
            elif change == "recovered":
                log.info(json.dumps({"event": "sink_recovered", "sink": s.name}))
                status.append(event.sink_recovered(self.clock(), s.name,
                                                   backlog + len(events)))
        return status
