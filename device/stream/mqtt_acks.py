"""Which spooled events the broker has acknowledged, so that only those leave the spool.

The MQTT sink's thread records each message it publishes (paho's ``mid`` and the spool row
it carries); paho's network thread records each PUBACK (under a lock: the only state the
two threads share); the sink's thread then settles, removing the acknowledged rows from
the spool in one call. When that call fails (sqlite3.Error: a full disk) the rows are kept
for the next settle and the error is said (``/health``) until one succeeds, instead of the
exception ending the sink's thread and delivery with it. A dropped connection forgets what
is in flight: those rows are still spooled and the next connection publishes them again.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable

log = logging.getLogger("vitaledge.mqtt")


class AckLedger:
    """Messages in flight and their acknowledgements. Every method is for the sink's
    thread except :meth:`puback`, which paho's thread calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pubacks: list[int] = []  # mids acknowledged, not yet settled (under _lock)
        self._inflight: dict[int, int] = {}  # mid -> spool row id
        self._retry: list[int] = []  # rows acknowledged whose removal failed
        self._error: str | None = None

    def published(self, mid: int, row_id: int) -> None:
        """Message ``mid`` carries spool row ``row_id``."""
        self._inflight[mid] = row_id

    def puback(self, mid: int) -> None:
        """The broker has message ``mid`` (paho's ``on_publish``)."""
        with self._lock:
            self._pubacks.append(mid)

    def settle(self, ack: Callable[[list[int]], object]) -> int:
        """Give ``ack`` (:meth:`.Spool.ack`) the rows acknowledged since the last settle,
        with any it failed to take before; how many it took. When it raises sqlite3.Error
        they are kept for the next settle and :attr:`error` says why."""
        with self._lock:
            mids, self._pubacks = self._pubacks, []
        ids = self._retry + [self._inflight.pop(m) for m in mids if m in self._inflight]
        if not ids:
            return 0
        try:
            ack(ids)
        except sqlite3.Error as exc:
            if self._error is None:
                log.warning(json.dumps({"event": "spool_ack_failed", "error": str(exc)}))
            self._retry, self._error = ids, str(exc)
            return 0
        self._retry, self._error = [], None
        return len(ids)

    def forget_inflight(self) -> None:
        """The connection is gone: its messages will be published again."""
        self._inflight.clear()

    @property
    def inflight(self) -> int:
        """Messages published and not yet settled."""
        return len(self._inflight)

    @property
    def error(self) -> str | None:
        """Why acknowledged rows could not leave the spool (None once they have)."""
        return self._error
