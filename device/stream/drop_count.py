"""What the daemon's source thread dropped on a full queue (live sources only).

Three figures: the chunks dropped, the samples they held (``lost_samples``: a dropped wire
gap held none) and the span of the stream's time axis they covered that is still to be
reported as a gap (``span``: a dropped wire gap moves the time axis too). The source
thread records each drop and, once the queue has room again, hands the pending span on
as a ``Dropped`` item; the worker takes what is still pending at the end of the stream.
The two threads (and the API, the metrics and the MQTT sink, which read the totals) share
one :class:`DropCount`, so every change and read is under its lock: a span is reported
once, never twice, never lost.
"""

from __future__ import annotations

import threading
import typing


class Dropping(typing.Protocol):
    """What dropping an item costs (:mod:`.queue_items`)."""

    @property
    def lost_samples(self) -> int: ...

    @property
    def span(self) -> int: ...


class DropCount:
    """A thread-safe count of the items a source thread dropped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._chunks = 0
        self._samples = 0
        self._missing = 0  # span dropped since the last hand-over or take

    def record(self, item: Dropping) -> None:
        """``item`` was dropped: one chunk more, its lost samples, its span pending."""
        with self._lock:
            self._chunks += 1
            self._samples += int(item.lost_samples)
            self._missing += int(item.span)

    def take_missing(self) -> int:
        """The span pending (0 when none), which is then no longer pending."""
        with self._lock:
            n, self._missing = self._missing, 0
            return n

    def hand_over(self, put: typing.Callable[[int], object]) -> None:
        """The pending span, when there is one, given to ``put`` (which queues its gap)
        and then no longer pending; a ``put`` that raises (a full queue) leaves it
        pending and the exception goes on. Atomic with :meth:`take_missing`."""
        with self._lock:
            if self._missing:
                put(self._missing)
                self._missing = 0

    @property
    def chunks(self) -> int:
        """Chunks dropped in all."""
        with self._lock:
            return self._chunks

    @property
    def samples(self) -> int:
        """Samples those chunks held."""
        with self._lock:
            return self._samples

    @property
    def missing(self) -> int:
        """The span pending: dropped, not yet handed over or taken."""
        with self._lock:
            return self._missing
