"""The daemon's source thread: what a source yields, into the bounded queue to the worker.

A live source (tcp, stdin, serial) cannot be paused: an item that finds the queue full is
dropped and counted (:class:`~.drop_count.DropCount`), and the span it covered is queued
as a :class:`~.queue_items.Dropped` gap before the next item that gets through. A replay
waits for room instead, so a file is never thinned. A source that raises ends the reading
with the error kept in :attr:`SourceReader.error`; the daemon reports it.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import typing

from vitaledge.device.stream.drop_count import DropCount
from vitaledge.device.stream.queue_items import Dropped, QueueItem, from_source
from vitaledge.device.stream.sources import Source

log = logging.getLogger("vitaledge.daemon")


class SourceReader:
    """Reads ``source`` into ``q`` until it ends or ``stop`` is set, then sets ``done``
    (and :attr:`exited`). ``live``: drop on a full queue into ``drops`` (and call
    ``on_drop``, a metric's ``inc``) rather than wait."""

    def __init__(self, source: Source, q: queue.Queue[QueueItem], live: bool,
                 stop: threading.Event, done: threading.Event, drops: DropCount,
                 on_drop: typing.Callable[[], object] = lambda: None):
        self.source, self.q, self.live = source, q, live
        self.stop, self.done, self.drops, self.on_drop = stop, done, drops, on_drop
        self.error: str | None = None  # what the source raised, when it did
        self.exited = threading.Event()  # run() returned: no item will be queued any more

    def run(self) -> None:
        """The thread's body."""
        try:
            for raw in self.source.chunks:
                if self.stop.is_set():
                    break
                item = from_source(raw)
                if self.live:
                    self.offer(item)
                else:
                    self.put_waiting(item)
        except Exception as exc:  # a broken source ends the run, loudly (non-zero exit)
            self.error = f"{type(exc).__name__}: {exc}"
            log.error(json.dumps({"event": "source_error", "error": self.error}))
        finally:
            self.exited.set()
            self.done.set()

    def offer(self, item: QueueItem) -> None:
        """A live source's item: queued if there is room, else dropped and counted (the
        samples it carried, and the time it covered, become a gap reported later)."""
        try:
            self.drops.hand_over(lambda missing: self.q.put_nowait(Dropped(missing)))
            self.q.put_nowait(item)
        except queue.Full:
            self.on_drop()
            self.drops.record(item)

    def put_waiting(self, item: QueueItem) -> None:
        """A replay's item: wait for room (a file is never thinned) unless stopping."""
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
