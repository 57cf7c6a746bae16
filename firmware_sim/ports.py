"""Where the simulated board's bytes go: a pseudo-terminal (a real serial device path the
daemon opens with pyserial) or a TCP connection to the daemon's ``frames+tcp`` listener."""

from __future__ import annotations

import errno
import fcntl
import os
import select
import socket
import struct
import termios
import time
import tty

from vitaledge.device.stream.auth import bind_host, handshake_line


class PortError(OSError):
    """The port cannot be opened or the peer never came."""


#: How long the board waits after the reader opened the pty before it sends.
READER_SETTLE_S = 0.3


class PtyPort:
    """The master side of a pty in raw mode; ``path`` is the slave the daemon opens.

    Linux discards what the reader has not read when the master closes, so :meth:`close`
    first waits for the reader to drain the slave's queue (watched through a second,
    never-read descriptor of the slave).
    """

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        tty.setraw(slave)  # binary: no echo, no CR/LF translation, before anyone attaches
        self.path = os.ttyname(slave)
        os.close(slave)
        os.set_blocking(self.master, False)
        self._monitor: int | None = None
        self.dropped_bytes = 0

    def wait_for_reader(self, timeout: float) -> bool:
        """Block until a process opens the slave (the master stops reporting hang-up)."""
        p = select.poll()
        p.register(self.master, select.POLLHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not p.poll(0):
                break
            time.sleep(0.02)
        else:
            return False
        self._monitor = os.open(self.path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        # the reader sets the line up after open() and flushes its input (pyserial does):
        # frames sent in between would be thrown away on a loaded machine (a fresh-clone CI
        # lost the first 7-9 frames so), so let it settle as a board's host would
        time.sleep(READER_SETTLE_S)
        return True

    def write(self, data: bytes, timeout: float = 2.0) -> None:
        """Write all of ``data``; what the reader leaves unread for ``timeout`` s is lost
        (a UART without flow control) and counted."""
        view = memoryview(data)
        p = select.poll()
        p.register(self.master, select.POLLOUT)
        deadline = time.monotonic() + timeout
        while view:
            try:
                n = os.write(self.master, view)
                view = view[n:]
                continue
            except BlockingIOError:
                pass
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
            if time.monotonic() > deadline:
                self.dropped_bytes += len(view)
                return
            p.poll(20)

    def unread(self) -> int:
        if self._monitor is None:
            return 0
        return struct.unpack("i", fcntl.ioctl(self._monitor, termios.TIOCINQ, b"\0" * 4))[0]

    def disconnect(self) -> None:
        """A pty cannot be unplugged from the host side; the board simply goes quiet."""

    def reconnect(self) -> None:
        pass

    def close(self, drain_timeout: float = 10.0) -> None:
        deadline = time.monotonic() + drain_timeout
        while self.unread() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.05)
        if self._monitor is not None:
            os.close(self._monitor)
        os.close(self.master)


class TcpPort:
    """A TCP client of the daemon's ``frames+tcp:HOST:PORT`` source; with a ``token`` it
    sends the handshake line (``AUTH <token>``, docs/protocol.md) on every connection."""

    def __init__(self, host: str, port: int, connect_timeout: float = 10.0, token: str = ""):
        self.host, self.port = host, port
        self.token = token
        self.path = f"tcp:{host}:{port}"
        self.connect_timeout = connect_timeout
        self.sock: socket.socket | None = None
        self.dropped_bytes = 0
        self.lost: str | None = None  # why the daemon's end closed the link, if it did

    def wait_for_reader(self, timeout: float) -> bool:
        self.connect_timeout = timeout
        self.reconnect()
        return True

    def reconnect(self) -> None:
        deadline = time.monotonic() + self.connect_timeout
        while True:
            try:
                self.sock = socket.create_connection((self.host, self.port), timeout=2.0)
                if self.token:
                    self.sock.sendall(handshake_line(self.token))
                self.lost = None  # the link is back
                return
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise PortError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
                time.sleep(0.1)

    def disconnect(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def write(self, data: bytes, timeout: float = 2.0) -> None:
        if self.sock is None:
            self.dropped_bytes += len(data)
            return
        try:
            self.sock.sendall(data)
        except OSError as exc:  # the daemon closed its end (a refused token does)
            self.dropped_bytes += len(data)
            self.lost = self.lost or (exc.strerror or type(exc).__name__).lower()
            self.disconnect()

    def close(self, drain_timeout: float = 10.0) -> None:
        """End the stream and wait (``drain_timeout`` at most) for the daemon to close its
        end: after reading everything it closes (EOF); a daemon that refused the token
        closed with the board's bytes unread, which resets the link (``lost``), however
        short the stream was."""
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_WR)
                self.sock.settimeout(drain_timeout)
                while self.sock.recv(4096):  # the daemon sends nothing back
                    pass
            except ConnectionResetError:
                self.lost = self.lost or "connection reset by peer"
            except OSError:  # timed out, or already closed
                pass
            self.sock.close()
            self.sock = None


def open_port(spec: str, token: str = "") -> PtyPort | TcpPort:
    """``pty`` or ``tcp:HOST:PORT`` (``token``: what a TCP port sends first)."""
    if spec == "pty":
        return PtyPort()
    kind, _, rest = spec.partition(":")
    host, _, port = rest.rpartition(":")
    if kind != "tcp" or not host or not port.isdigit():
        raise ValueError(f"port {spec!r}: expected pty or tcp:HOST:PORT")
    if not 0 < int(port) <= 65535:
        raise ValueError(f"port {spec!r}: {int(port)} is not a TCP port (1-65535)")
    return TcpPort(bind_host(host), int(port), token=token)
