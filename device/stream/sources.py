"""Where samples come from: a registry of sources, each yielding chunks of one ECG lead in
physical units (mV) at a known sample rate.

``replay:PATH``   a WFDB record (``.hea``) or a one-column CSV (needs ``fs``), at real time
                  x speed or as fast as possible (``speed="max"``); finite.
``stdin``         text samples, one per line (``fs`` required); ends at EOF.
``tcp:HOST:PORT`` listen for one client at a time sending text samples, one per line.
``serial:PATH[@BAUD]``  a sensor board speaking the framed binary protocol
                  (docs/protocol.md) on a serial port (default 921600 baud); the rate
                  comes from the board's hello; ends when the port goes away.
``frames+tcp:HOST:PORT`` listen for one board at a time speaking the framed protocol.

Framed sources yield, besides sample chunks, :class:`~.protocol.Gap` items (samples lost
on the wire or withheld during lead-off) and :class:`~.protocol.StatusEvent` items.
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitaledge.device.io.records import read_record
from vitaledge.device.stream.protocol import ProtocolReader

log = logging.getLogger(__name__)


class SourceError(ValueError):
    """A source specification or its data is unusable; the message says which and why."""


@dataclass
class Source:
    """A finite or endless iterator of sample chunks at ``fs`` Hz."""

    name: str
    fs: float
    chunks: Iterator[np.ndarray]
    stop: Callable[[], None] = lambda: None
    stats: Callable[[], dict] = dict


def _paced(x: np.ndarray, fs: float, chunk: int, speed: float | None,
           stopped: Callable[[], bool]) -> Iterator[np.ndarray]:
    t0 = time.monotonic()
    for i in range(0, len(x), chunk):
        if stopped():
            return
        if speed:
            due = t0 + i / (fs * speed)
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield x[i:i + chunk]


def _read_csv_samples(path: Path) -> np.ndarray:
    vals = []
    with path.open(errors="surrogateescape") as fh:  # bad bytes: a "not a number" line
        for lineno, line in enumerate(fh, start=1):
            cell = line.strip().split(",")[0]
            if not cell:
                continue
            try:
                vals.append(float(cell))
            except ValueError:
                if lineno == 1:
                    continue  # header
                raise SourceError(f"{path}:{lineno}: not a number: {cell!r}") from None
    if not vals:
        raise SourceError(f"{path}: no samples")
    return np.asarray(vals)


def replay_source(path: str, speed: float | None = None, fs: float | None = None,
                  lead: str = "MLII", chunk_s: float | None = None) -> Source:
    """Replay a record; chunks of 0.5 s at a real-time pace, 10 s as fast as possible
    (results do not depend on the chunk size, only the number of pipeline calls does)."""
    p = Path(path)
    stopped = {"v": False}
    if p.suffix.lower() == ".csv":
        if not fs:
            raise SourceError(f"{p}: CSV replay needs the sample rate (--fs)")
        x, rate, name = _read_csv_samples(p), float(fs), p.stem
    elif p.suffix.lower() == ".npz":
        from vitaledge.device.io.sessions import SessionError, read_session, session_chunks

        try:
            sess = read_session(p)
        except SessionError as exc:
            raise SourceError(str(exc)) from exc
        if fs and abs(fs - sess.fs) > 1e-6:
            raise SourceError(f"{p}: session is {sess.fs} Hz but {fs} Hz was configured")
        n = max(1, int(round((chunk_s or (0.5 if speed else 10.0)) * sess.fs)))

        def paced_session():
            t0 = time.monotonic()
            done = 0
            for item in session_chunks(sess, n):
                if stopped["v"]:
                    return
                if speed and isinstance(item, np.ndarray):
                    delay = t0 + done / (sess.fs * speed) - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    done += len(item)
                yield item

        return Source(f"replay:{p.stem}", sess.fs, paced_session(),
                      lambda: stopped.update(v=True))
    elif p.suffix.lower() in (".wav", ".flac"):
        from vitaledge.device.inputs.audio import AudioError, read_wav

        try:
            x, rate = read_wav(p)
        except AudioError as exc:
            raise SourceError(str(exc)) from exc
        if fs and abs(fs - rate) > 1e-6:
            raise SourceError(f"{p}: audio is {rate} Hz but {fs} Hz was configured")
        name = p.stem
    else:
        rec = read_record(p, lead=lead, annotator=None)
        if fs and abs(fs - rec.fs) > 1e-6:
            raise SourceError(f"{p}: record is {rec.fs} Hz but {fs} Hz was configured")
        x, rate, name = rec.signal, rec.fs, rec.name
    chunk = max(1, int(round((chunk_s or (0.5 if speed else 10.0)) * rate)))
    return Source(f"replay:{name}", rate, _paced(x, rate, chunk, speed, lambda: stopped["v"]),
                  lambda: stopped.update(v=True))


def _text_samples(lines: Iterator[str], what: str, chunk: int) -> Iterator[np.ndarray]:
    """Parse text lines into float chunks; malformed lines are logged and skipped."""
    buf: list[float] = []
    bad = 0
    for line in lines:
        s = line.strip()
        if not s:
            continue
        try:
            v = float(s.split(",")[0])
        except ValueError:
            bad += 1
            if bad <= 5 or bad % 1000 == 0:
                log.warning("%s: ignoring malformed sample line %r (%d so far)", what, s[:40],
                            bad)
            continue
        buf.append(v)
        if len(buf) >= chunk:
            yield np.asarray(buf)
            buf = []
    if buf:
        yield np.asarray(buf)


def stdin_source(fs: float, chunk: int = 64) -> Source:
    if not fs:
        raise SourceError("stdin source needs the sample rate (--fs)")
    return Source("stdin", float(fs), _text_samples(iter(sys.stdin.readline, ""), "stdin", chunk))


def pcm_chunks(stream, chunk: int) -> Iterator[np.ndarray]:
    """Raw little-endian int16 mono PCM -> float chunks in [-1, 1); a trailing odd byte
    (a torn sample) is dropped."""
    while True:
        data = stream.read(2 * chunk)
        if not data:
            return
        n = len(data) // 2
        if n:
            yield np.frombuffer(data[:2 * n], dtype="<i2").astype(np.float64) / 32768.0


def stdin_pcm_source(fs: float, chunk: int = 1024) -> Source:
    """Audio on standard input: raw int16 little-endian mono PCM at ``fs`` Hz (what
    ``arecord -f S16_LE -c 1 -r 16000`` writes)."""
    if not fs:
        raise SourceError("stdin-pcm source needs the sample rate (--fs)")
    return Source("stdin-pcm", float(fs), pcm_chunks(sys.stdin.buffer, chunk))


def _connections(srv: socket.socket, state: dict, what: str):
    """Connections accepted on listening socket ``srv``, one at a time, until
    ``state["stop"]`` is set or the socket is closed."""
    while not state["stop"]:
        try:
            conn, addr = srv.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        log.info("%s: %s connected", what, addr)
        yield conn, addr


def tcp_source(host: str, port: int, fs: float, chunk: int = 64) -> Source:
    if not fs:
        raise SourceError("tcp source needs the sample rate (--fs)")
    srv = socket.create_server((host, port))
    srv.settimeout(0.5)
    state = {"stop": False}

    def gen() -> Iterator[np.ndarray]:
        for conn, addr in _connections(srv, state, "tcp source"):
            with conn, conn.makefile("r", errors="replace") as fh:
                yield from _text_samples(iter(fh.readline, ""), f"tcp {addr}", chunk)
            log.info("tcp source: client %s disconnected", addr)

    def stop() -> None:
        state["stop"] = True
        srv.close()

    return Source(f"tcp:{host}:{port}", float(fs), gen(), stop)


def serial_source(path: str, baud: int = 921600, fs: float | None = None,
                  hello_timeout: float = 10.0) -> Source:
    """A board on a serial port. Waits up to ``hello_timeout`` s for its hello (the sample
    rate); without one, ``fs`` must be given and samples count as dropped until a hello
    comes (the board repeats it every 10 s)."""
    try:
        import serial
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise SourceError("the serial source needs pyserial (pip install 'vitaledge[device]')"
                          ) from exc
    try:
        port = serial.Serial(path, baudrate=baud, timeout=0.05)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise SourceError(f"serial port {path}: cannot open: {exc}") from exc
    reader = ProtocolReader(fs)
    early: list = []
    deadline = time.monotonic() + hello_timeout
    try:
        while reader.stream.hello is None and time.monotonic() < deadline:
            early += reader.feed(port.read(4096))
    except (serial.SerialException, OSError) as exc:
        port.close()
        raise SourceError(f"serial port {path}: {exc}") from exc
    if reader.stream.hello is None and not fs:
        port.close()
        raise SourceError(f"serial port {path}: no hello frame within {hello_timeout:.0f} s "
                          "(is the board sending the vitaledge protocol?); give --fs to "
                          "start without it")
    rate = reader.stream.hello.fs if reader.stream.hello else float(fs)
    state = {"stop": False}

    def gen() -> Iterator:
        yield from early
        try:
            while not state["stop"]:
                data = port.read(4096)  # returns early after 50 ms of quiet
                if data:
                    yield from reader.feed(data)
        except (serial.SerialException, OSError) as exc:
            log.info("serial source %s: port closed (%s)", path, exc)
        finally:
            port.close()
        yield from reader.end()

    return Source(f"serial:{path}", rate, gen(), lambda: state.update(stop=True),
                  reader.stats)


def frames_tcp_source(host: str, port: int, fs: float) -> Source:
    """Listen for one board at a time speaking the framed protocol. Sequence and sample
    tracking continue across connections, so a reconnecting board's lost frames are
    counted and the hole is reported."""
    if not fs:
        raise SourceError("frames+tcp source needs the sample rate (--fs); a board "
                          "announcing another rate is refused")
    srv = socket.create_server((host, port))
    srv.settimeout(0.5)
    reader = ProtocolReader(fs)
    state = {"stop": False}

    def gen() -> Iterator:
        for conn, addr in _connections(srv, state, "frames+tcp source"):
            with conn:
                conn.settimeout(0.2)
                while not state["stop"]:
                    try:
                        data = conn.recv(4096)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                    if not data:
                        break
                    yield from reader.feed(data)
            yield from reader.end()
            log.info("frames+tcp source: board %s disconnected", addr)

    def stop() -> None:
        state["stop"] = True
        srv.close()

    return Source(f"frames+tcp:{host}:{port}", float(fs), gen(), stop, reader.stats)


def open_source(spec: str, fs: float | None = None, speed: str | float | None = "max",
                lead: str = "MLII") -> Source:
    """Open ``replay:PATH``, ``stdin``, ``tcp:HOST:PORT``, ``serial:PATH[@BAUD]`` or
    ``frames+tcp:HOST:PORT``."""
    kind, _, rest = spec.partition(":")
    if kind == "replay":
        if not rest:
            raise SourceError("replay source needs a path: replay:PATH")
        sp = None if speed in (None, "max") else float(speed)
        return replay_source(rest, sp, fs, lead)
    if kind == "stdin":
        return stdin_source(fs or 0)
    if kind == "stdin-pcm":
        return stdin_pcm_source(fs or 0)
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        if not host or not port.isdigit():
            raise SourceError(f"tcp source {spec!r}: expected tcp:HOST:PORT")
        return tcp_source(host, int(port), fs or 0)
    if kind == "serial":
        path, at, baud = rest.partition("@")
        if not path or (at and not baud.isdigit()):
            raise SourceError(f"serial source {spec!r}: expected serial:PATH or "
                              "serial:PATH@BAUD")
        return serial_source(path, int(baud) if at else 921600, fs)
    if kind == "frames+tcp":
        host, _, port = rest.rpartition(":")
        if not host or not port.isdigit():
            raise SourceError(f"frames+tcp source {spec!r}: expected frames+tcp:HOST:PORT")
        return frames_tcp_source(host, int(port), fs or 0)
    raise SourceError(f"unknown source {spec!r}: expected replay:PATH, stdin, stdin-pcm, "
                      "tcp:HOST:PORT, "
                      "serial:PATH[@BAUD] or frames+tcp:HOST:PORT")
