"""systemd's notify protocol, without a dependency: one datagram to ``$NOTIFY_SOCKET``.

With ``Type=notify`` the daemon says ``READY=1`` once it serves; with ``WatchdogSec=``
systemd sets ``$WATCHDOG_USEC`` and restarts the service unless ``WATCHDOG=1`` arrives
within it — the daemon sends it from its processing loop (:class:`Watchdog`, at half the
period), so a hung pipeline is restarted. Outside systemd (no ``$NOTIFY_SOCKET``) all of
this does nothing.
"""

from __future__ import annotations

import os
import socket
import time


def notify(state: str) -> bool:
    """Send ``state`` (``READY=1``, ``WATCHDOG=1``, ``STOPPING=1``, ``STATUS=...``, lines
    joined by newlines) to ``$NOTIFY_SOCKET``; an address starting with ``@`` is in the
    abstract namespace. False when there is no socket or the send failed."""
    addr = os.environ.get("NOTIFY_SOCKET", "")
    if not addr:
        return False
    if addr[0] == "@":
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(state.encode(), addr)
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``$WATCHDOG_USEC``), or None when
    systemd asked for none (or asked another process: ``$WATCHDOG_PID``)."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0 or (pid.isdigit() and int(pid) != os.getpid()):
        return None
    return int(usec) / 2e6


class Watchdog:
    """:meth:`kick` from the loop that must stay alive; it pings at most every interval."""

    def __init__(self, interval: float | None = None):
        self.interval = interval if interval is not None else watchdog_interval()
        self._next = 0.0

    def kick(self) -> None:
        if self.interval is None:
            return
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.interval
            notify("WATCHDOG=1")
