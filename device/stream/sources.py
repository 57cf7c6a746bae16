"""Where samples come from: a registry of sources, each yielding chunks of one ECG lead in
physical units (mV) at a known sample rate.

``replay:PATH``   a WFDB record (``.hea``), a one-column CSV (needs ``fs``), a wav/flac
                  file or a session (``.npz``), at real time x speed or as fast as
                  possible (``speed="max"``); finite.
``stdin``         text samples, one per line (``fs`` required); ends at EOF.
``stdin-pcm``     raw int16 little-endian mono PCM audio (``fs`` required); ends at EOF.
``tcp:HOST:PORT`` listen for one client at a time sending text samples, one per line.
``serial:PATH[@BAUD]``  a sensor board speaking the framed binary protocol
                  (docs/protocol.md) on a serial port (default 921600 baud); the rate
                  comes from the board's hello; ends when the port goes away.
``frames+tcp:HOST:PORT`` listen for one board at a time speaking the framed protocol.

The two listening sources bind loopback unless told otherwise, and a HOST that is not
loopback needs a source token (``source_token_file`` / ``$VITALEDGE_SOURCE_TOKEN``, the
rule of :func:`~.auth.check_token`) or the source refuses to open: anyone who can reach
the port could otherwise inject ECG into a patient's stream. With a token, each client's
first line must be ``AUTH <token>`` (sent within 5 s, compared in constant time) before a
single sample or frame is read; a missing or wrong token closes the connection, is
counted (``auth_failures`` in the source's stats) and reported as an ``auth_failed``
status event (at most one a second). The token travels in clear text: off loopback, run
the link over a network you trust (a VPN, an SSH tunnel).

Bounds: a sample rate outside 10-10,000 Hz (:data:`FS_RANGE`, the records' limit; audio
sources up to 192 kHz) is refused when the source opens; a text line longer than
:data:`MAX_LINE_BYTES` without a newline is refused (a tcp client is disconnected with a
``line_too_long`` status event, stdin ends with an error).

Framed sources yield, besides sample chunks, :class:`~.protocol.Gap` items (samples lost
on the wire or withheld during lead-off) and :class:`~.protocol.StatusEvent` items.

:data:`SOURCES` maps each scheme (the spec's text before the first ``:``) to its entry:
the function that opens it and whether it listens on the network, carries audio or is
live (not a replay); :func:`open_source` looks the scheme up there.
"""

from __future__ import annotations

import logging
import math
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitaledge.device.dsp.spec_fields import AUDIO_FS_RANGE, FS_RANGE
from vitaledge.device.io.records import read_record
from vitaledge.device.stream.auth import address_family, bind_host, is_loopback, read_handshake
from vitaledge.device.stream.protocol import ProtocolReader, StatusEvent

log = logging.getLogger(__name__)

#: Samples per chunk from the text sources (stdin, tcp): each chunk is one pipeline call
#: and, when the daemon's queue is full, one drop.
TEXT_CHUNK_SAMPLES = 64


class SourceError(ValueError):
    """A source specification or its data is unusable; the message says which and why."""


# Sample rates (Hz): an audio source (``stdin-pcm``, a wav/flac replay) is held to
# AUDIO_FS_RANGE, every other source to the records' FS_RANGE (both
# :mod:`vitaledge.device.dsp.spec_fields`). Stages size their buffers by the rate, so an
# absurd one must be refused before them.

#: A text sample line (``stdin``, ``tcp:``) longer than this many characters without a
#: newline is refused: read whole, an endless line would grow the daemon's memory without
#: bound. A tcp client sending one is reported (``line_too_long``) and disconnected.
MAX_LINE_BYTES = 64 * 1024


def fs_range(spec: str) -> tuple[float, float]:
    """The sample rates (Hz) the source ``spec`` may have: :data:`AUDIO_FS_RANGE` for one
    carrying audio or not named yet (``""``), :data:`FS_RANGE` for any other; an unknown
    scheme (refused as such when opened) takes any rate above 0."""
    if not spec:
        return AUDIO_FS_RANGE
    if spec.partition(":")[0] not in SOURCES:
        return (0.0, math.inf)
    return AUDIO_FS_RANGE if carries_audio(spec) else FS_RANGE


def check_fs(what: str, fs: float, audio: bool = False) -> float:
    """``fs`` if it lies in :data:`FS_RANGE` (:data:`AUDIO_FS_RANGE` for audio), else a
    :class:`SourceError` naming the source, the value and the range."""
    lo, hi = AUDIO_FS_RANGE if audio else FS_RANGE
    if not lo <= fs <= hi:  # NaN fails too
        raise SourceError(f"{what}: sample rate {fs:g} Hz is outside {lo:g}-{hi:g} Hz "
                          f"(the range a{'n audio' if audio else ''} source may have)")
    return float(fs)


def bounded_lines(readline: Callable[[int], str], refused: list,
                  limit: int = MAX_LINE_BYTES) -> Iterator[str]:
    """Lines from ``readline(size)`` until EOF or the first line longer than ``limit``
    characters, which is not read further: its length so far is appended to ``refused``."""
    while True:
        line = readline(limit + 1)
        if not line:
            return
        if len(line) > limit and not line.endswith("\n"):
            refused.append(len(line))
            return
        yield line


def line_too_long(what: str) -> StatusEvent:
    """The status event of a refused over-long text line."""
    return StatusEvent({"status": "line_too_long", "source": what,
                        "max_bytes": MAX_LINE_BYTES})


@dataclass
class Source:
    """A finite or endless iterator of sample chunks at ``fs`` Hz."""

    name: str
    fs: float
    chunks: Iterator[np.ndarray]
    stop: Callable[[], None] = lambda: None
    stats: Callable[[], dict] = dict
    length: int | None = None  # samples of a recording (a replay), for progress lines
    lead: str | None = None    # the lead a recording holds (None: the stream does not say)


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


def read_csv_samples(path: Path) -> np.ndarray:
    """A one-column replay CSV as floats; a header line is skipped, any other line that is
    not one number is a :class:`SourceError` naming the file and line (a ``time,value``
    file was read from its time column: a ramp, in which the detector found beats)."""
    vals = []
    with path.open(errors="surrogateescape") as fh:  # bad bytes: a "not a number" line
        for lineno, line in enumerate(fh, start=1):
            cells = line.strip().split(",")
            cell = cells[0]
            if not cell and len(cells) == 1:
                continue
            try:
                vals.append(float(cell))
            except ValueError:
                if lineno == 1:
                    continue  # header
                shown = repr(cell) if len(cell) <= 40 else \
                    f"{cell[:40]!r}... ({len(cell)} characters)"
                raise SourceError(f"{path}:{lineno}: not a number: {shown}") from None
            if len(cells) > 1:
                raise SourceError(f"{path}:{lineno}: {len(cells)} columns; a replay CSV holds "
                                  "one sample per line (cut out the signal's column)")
    if not vals:
        raise SourceError(f"{path}: no samples")
    return np.asarray(vals)


def replay_chunk(rate: float, speed: float | None, chunk_s: float | None) -> int:
    """Samples per replay chunk: 0.5 s at a real-time pace, 10 s as fast as possible
    (results do not depend on the chunk size, only the number of pipeline calls does)."""
    return max(1, int(round((chunk_s or (0.5 if speed else 10.0)) * rate)))


def check_rate_given(p: Path, what: str, rate: float, fs: float | None) -> None:
    """A file that carries its own rate refuses another configured one."""
    if fs and abs(fs - rate) > 1e-6:
        raise SourceError(f"{p}: {what} is {rate} Hz but {fs} Hz was configured")


def replay_samples(name: str, x: np.ndarray, rate: float, speed: float | None,
                   chunk_s: float | None) -> Source:
    """A source playing the samples ``x`` at ``rate``, paced by ``speed`` (None: at once)."""
    stopped = {"v": False}
    return Source(f"replay:{name}", rate,
                  _paced(x, rate, replay_chunk(rate, speed, chunk_s), speed,
                         lambda: stopped["v"]),
                  lambda: stopped.update(v=True), length=len(x))


def replay_csv(p: Path, speed: float | None, fs: float | None, lead: str,
               chunk_s: float | None) -> Source:
    """One sample per line; the rate must be given (``--fs``)."""
    if not fs:
        raise SourceError(f"{p}: CSV replay needs the sample rate (--fs)")
    return replay_samples(p.stem, read_csv_samples(p), float(fs), speed, chunk_s)


def replay_session(p: Path, speed: float | None, fs: float | None, lead: str,
                   chunk_s: float | None) -> Source:
    """A recorded multimodal session (``.npz``: samples and face frames, in order)."""
    from vitaledge.device.io.sessions import SessionError, read_session, session_chunks

    try:
        sess = read_session(p)
    except SessionError as exc:
        raise SourceError(str(exc)) from exc
    check_rate_given(p, "session", sess.fs, fs)
    n = replay_chunk(sess.fs, speed, chunk_s)
    stopped = {"v": False}

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

    return Source(f"replay:{p.stem}", sess.fs, paced_session(), lambda: stopped.update(v=True))


def replay_audio(p: Path, speed: float | None, fs: float | None, lead: str,
                 chunk_s: float | None) -> Source:
    """A WAV or FLAC file, at its own rate."""
    from vitaledge.device.inputs.audio import AudioError, read_wav

    try:
        x, rate = read_wav(p)
    except AudioError as exc:
        raise SourceError(str(exc)) from exc
    check_rate_given(p, "audio", rate, fs)
    return replay_samples(p.stem, x, rate, speed, chunk_s)


def replay_wfdb(p: Path, speed: float | None, fs: float | None, lead: str,
                chunk_s: float | None) -> Source:
    """A WFDB record (``lead``), at its own rate."""
    rec = read_record(p, lead=lead, annotator=None)
    check_rate_given(p, "record", rec.fs, fs)
    source = replay_samples(rec.name, rec.signal, rec.fs, speed, chunk_s)
    source.lead = rec.lead  # the one read: a record without MLII falls back to its first
    return source


@dataclass(frozen=True)
class ReplayFormat:
    """A file format ``replay:PATH`` plays: the suffixes that pick it, its opener
    ``open(path, speed, fs, lead, chunk_s)``, whether the file carries its own sample rate
    (a configured ``fs``, meant for live and CSV sources, does not apply then) and whether
    it is audio (the audio rate range applies). A format with several leads picks one by
    ``lead`` and says which in its source's ``lead``; for the others ``lead`` names the one
    signal they carry (the daemon's ``--lead``)."""

    #: what the help calls it
    name: str
    suffixes: tuple[str, ...]
    open: Callable[[Path, float | None, float | None, str, float | None], Source]
    carries_rate: bool = True
    audio: bool = False


#: What ``replay:PATH`` plays, by the path's suffix; ``wfdb`` takes every other path (a
#: record's name). A new replay format is one entry here plus its opener.
REPLAY_FORMATS: dict[str, ReplayFormat] = {
    "csv": ReplayFormat("CSV", (".csv",), replay_csv, carries_rate=False),
    "session": ReplayFormat(".npz session", (".npz",), replay_session),
    "audio": ReplayFormat("WAV, FLAC", (".wav", ".flac"), replay_audio, audio=True),
    "wfdb": ReplayFormat("WFDB", (), replay_wfdb),
}


def replay_format(path: str | Path) -> str:
    """The :data:`REPLAY_FORMATS` entry a replayed path's suffix picks."""
    suffix = Path(path).suffix.lower()
    return next((k for k, f in REPLAY_FORMATS.items() if suffix in f.suffixes), "wfdb")


def replay_source(path: str, speed: float | None = None, fs: float | None = None,
                  lead: str = "MLII", chunk_s: float | None = None) -> Source:
    """Replay a file by its format (:data:`REPLAY_FORMATS`); chunks of 0.5 s at a real-time
    pace, 10 s as fast as possible."""
    p = Path(path)
    return REPLAY_FORMATS[replay_format(p)].open(p, speed, fs, lead, chunk_s)


def text_samples(lines: Iterator[str], what: str, chunk: int,
                 counts: dict | None = None) -> Iterator[np.ndarray]:
    """Parse text lines into float chunks; malformed lines are logged, skipped and counted
    in ``counts["malformed_lines"]`` (the run's summary reports them)."""
    buf: list[float] = []
    bad = 0
    counts = {} if counts is None else counts
    for line in lines:
        s = line.strip()
        if not s:
            continue
        try:
            v = float(s.rstrip(","))  # one sample a line: "t,x" is malformed (its time
            # column was read as the ECG, a ramp in which beats were found)
        except ValueError:
            bad += 1
            counts["malformed_lines"] = counts.get("malformed_lines", 0) + 1
            if bad <= 5 or bad % 1000 == 0:
                log.warning("%s: ignoring malformed sample line %r (%d so far)", what,
                            s[:40].encode("unicode_escape").decode("ascii"), bad)
            continue
        buf.append(v)
        if len(buf) >= chunk:
            yield np.asarray(buf)
            buf = []
    if buf:
        yield np.asarray(buf)


def stdin_source(fs: float, chunk: int = TEXT_CHUNK_SAMPLES) -> Source:
    """Text samples on standard input; a line longer than :data:`MAX_LINE_BYTES` ends the
    source with a :class:`SourceError` (the daemon then exits non-zero)."""
    if not fs:
        raise SourceError("stdin source needs the sample rate (--fs)")

    counts: dict = {}

    def gen() -> Iterator[np.ndarray]:
        refused: list = []
        yield from text_samples(bounded_lines(sys.stdin.readline, refused), "stdin", chunk,
                                counts)
        if refused:
            raise SourceError(f"stdin: a line longer than {MAX_LINE_BYTES} characters "
                              "without a newline: not text samples")

    return Source("stdin", float(fs), gen(), stats=lambda: dict(counts))


def pcm_chunks(stream, chunk: int, counts: dict | None = None) -> Iterator[np.ndarray]:
    """Raw little-endian int16 mono PCM -> float chunks in [-1, 1). A read that ends inside
    a sample keeps its odd byte for the next (the samples after stay aligned); an odd byte
    left at the end (a torn sample) is dropped and counted in ``counts["garbage_bytes"]``
    (the run's summary reports it)."""
    held = b""
    while True:
        data = stream.read(2 * chunk)
        if not data:
            if held and counts is not None:
                counts["garbage_bytes"] = counts.get("garbage_bytes", 0) + len(held)
            return
        data, n = held + data, (len(held) + len(data)) // 2
        held = data[2 * n:]
        if n:
            yield np.frombuffer(data[:2 * n], dtype="<i2").astype(np.float64) / 32768.0


def stdin_pcm_source(fs: float, chunk: int = 1024) -> Source:
    """Audio on standard input: raw int16 little-endian mono PCM at ``fs`` Hz (what
    ``arecord -f S16_LE -c 1 -r 16000`` writes)."""
    if not fs:
        raise SourceError("stdin-pcm source needs the sample rate (--fs)")
    counts: dict = {}
    return Source("stdin-pcm", float(fs), pcm_chunks(sys.stdin.buffer, chunk, counts),
                  stats=lambda: dict(counts))


@dataclass
class _Gate:
    """The token a listening source's clients must send first, and the refusals."""

    token: str = ""
    failures: int = 0
    _reported: float = float("-inf")

    def refused(self, addr, why: str, what: str) -> StatusEvent | None:
        """Count a refused client; an ``auth_failed`` status event at most once a second."""
        self.failures += 1
        log.warning("%s: %s refused (%s), %d refused so far", what, addr, why, self.failures)
        now = time.monotonic()
        if now - self._reported < 1.0:
            return None
        self._reported = now
        return StatusEvent({"status": "auth_failed", "reason": why, "peer": str(addr[0]),
                            "auth_failures": self.failures})


def _listen(scheme: str, host: str, port: int, token: str) -> socket.socket:
    """The listening socket; refused off loopback without a token (before binding)."""
    if not is_loopback(host) and not token:
        raise SourceError(f"{scheme} source {host}:{port}: {host!r} is not loopback, and "
                          "anyone who can reach it could inject ECG into the stream: set "
                          "a source token (source_token_file or $VITALEDGE_SOURCE_TOKEN; "
                          "the board sends it first, docs/protocol.md) or bind 127.0.0.1")
    try:
        srv = socket.create_server((bind_host(host), port), family=address_family(host))
    except OSError as exc:  # in use, not an address of this machine, no permission
        raise SourceError(f"{scheme} source {host}:{port}: cannot listen: {exc}") from exc
    srv.settimeout(0.5)
    return srv


def _connections(srv: socket.socket, state: dict, what: str, gate: _Gate | None = None):
    """Connections accepted on listening socket ``srv``, one at a time, until
    ``state["stop"]`` is set or the socket is closed. With a token in ``gate``, only
    clients whose first line is ``AUTH <token>`` are yielded; each refusal may yield an
    ``auth_failed`` :class:`StatusEvent` instead."""
    while not state["stop"]:
        try:
            conn, addr = srv.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        if gate is not None and gate.token:
            why = read_handshake(conn, gate.token, lambda: state["stop"])
            if why:
                conn.close()
                if (ev := gate.refused(addr, why, what)) is not None:
                    yield ev
                continue
            conn.settimeout(None)
        log.info("%s: %s connected", what, addr)
        yield conn, addr


def tcp_source(host: str, port: int, fs: float, chunk: int = TEXT_CHUNK_SAMPLES,
               token: str = "") -> Source:
    if not fs:
        raise SourceError("tcp source needs the sample rate (--fs)")
    srv = _listen("tcp", host, port, token)
    state = {"stop": False}
    gate = _Gate(token)
    counts: dict = {}

    def gen() -> Iterator:
        for item in _connections(srv, state, "tcp source", gate):
            if isinstance(item, StatusEvent):
                yield item
                continue
            conn, addr = item
            refused: list = []
            with conn, conn.makefile("r", errors="replace") as fh:
                yield from text_samples(bounded_lines(fh.readline, refused), f"tcp {addr}",
                                        chunk, counts)
            if refused:  # closed above: the rest of the line is never read
                log.warning("tcp source: %s sent a line longer than %d characters; "
                            "disconnected", addr, MAX_LINE_BYTES)
                yield line_too_long(f"tcp {addr[0]}:{addr[1]}")
            log.info("tcp source: client %s disconnected", addr)

    def stop() -> None:
        state["stop"] = True
        srv.close()

    return Source(f"tcp:{host}:{port}", float(fs), gen(), stop,
                  lambda: {"auth_failures": gate.failures, **counts})


def serial_source(path: str, baud: int = 921600, fs: float | None = None,
                  hello_timeout: float = 10.0) -> Source:
    """A board on a serial port. Waits up to ``hello_timeout`` s for its hello (the sample
    rate); without one, ``fs`` must be given and samples count as dropped until a hello
    comes (the board repeats it every 10 s). The rate found is kept: a later hello with
    another rate (a board restarted at a new rate) is a ``config_mismatch`` status and its
    samples are dropped, as for frames+tcp."""
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
        while reader.stream.stats.hellos == 0 and time.monotonic() < deadline:
            early += reader.feed(port.read(4096))
    except (serial.SerialException, OSError) as exc:
        port.close()
        raise SourceError(f"serial port {path}: {exc}") from exc
    if not reader.stream.expected_fs:  # no hello, and no --fs
        port.close()
        raise SourceError(f"serial port {path}: no hello frame within {hello_timeout:.0f} s "
                          "(is the board sending the vitaledge protocol?); give --fs to "
                          "start without it")
    rate = float(reader.stream.expected_fs)  # --fs, else the first hello's
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


def frames_tcp_source(host: str, port: int, fs: float, token: str = "") -> Source:
    """Listen for one board at a time speaking the framed protocol. Sequence and sample
    tracking continue across connections, so a reconnecting board's lost frames are
    counted and the hole is reported."""
    if not fs:
        raise SourceError("frames+tcp source needs the sample rate (--fs); a board "
                          "announcing another rate is refused")
    srv = _listen("frames+tcp", host, port, token)
    reader = ProtocolReader(fs)
    state = {"stop": False}
    gate = _Gate(token)

    def gen() -> Iterator:
        for item in _connections(srv, state, "frames+tcp source", gate):
            if isinstance(item, StatusEvent):
                yield item
                continue
            conn, addr = item
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

    return Source(f"frames+tcp:{host}:{port}", float(fs), gen(), stop,
                  lambda: {**reader.stats(), "auth_failures": gate.failures})


@dataclass(frozen=True)
class SourceSpec:
    """A source specification split at its scheme, with the settings a source may use."""

    text: str                     # the whole spec, for messages
    scheme: str
    rest: str                     # what follows ``scheme:``
    fs: float | None = None
    speed: str | float | None = "max"
    lead: str = "MLII"
    token: str = ""               # what clients of a listening source must send first


def _host_port(spec: SourceSpec) -> tuple[str, int]:
    host, _, port = spec.rest.rpartition(":")
    if not host or not port.isdigit():
        raise SourceError(f"{spec.scheme} source {spec.text!r}: expected "
                          f"{spec.scheme}:HOST:PORT")
    if not 0 <= int(port) <= 65535:
        raise SourceError(f"{spec.scheme} source {spec.text!r}: port {int(port)} is not "
                          "a TCP port (0-65535; 0: any free one)")
    return host, int(port)


def open_replay(spec: SourceSpec) -> Source:
    """``replay:PATH``."""
    if not spec.rest:
        raise SourceError("replay source needs a path: replay:PATH")
    speed = None if spec.speed in (None, "max") else float(spec.speed)
    return replay_source(spec.rest, speed, spec.fs, spec.lead)


def open_stdin(spec: SourceSpec) -> Source:
    """``stdin``."""
    return stdin_source(spec.fs or 0)


def open_stdin_pcm(spec: SourceSpec) -> Source:
    """``stdin-pcm``."""
    return stdin_pcm_source(spec.fs or 0)


def open_tcp(spec: SourceSpec) -> Source:
    """``tcp:HOST:PORT``."""
    return tcp_source(*_host_port(spec), spec.fs or 0, token=spec.token)


def open_serial(spec: SourceSpec) -> Source:
    """``serial:PATH[@BAUD]``."""
    path, at, baud = spec.rest.partition("@")
    if not path or (at and not baud.isdigit()):
        raise SourceError(f"serial source {spec.text!r}: expected serial:PATH or "
                          "serial:PATH@BAUD")
    return serial_source(path, int(baud) if at else 921600, spec.fs)


def open_frames_tcp(spec: SourceSpec) -> Source:
    """``frames+tcp:HOST:PORT``."""
    return frames_tcp_source(*_host_port(spec), spec.fs or 0, token=spec.token)


@dataclass(frozen=True)
class SourceKind:
    """A source scheme's entry: the function that opens it, and what the rest of the
    daemon needs to know of it before it is opened."""

    open: Callable[[SourceSpec], Source]
    #: how ``--source`` spells it (its arguments), for the help
    usage: str
    #: binds a network port: off loopback it needs a source token (check_source_safety)
    listens: bool = False
    #: carries audio: sample rates up to AUDIO_FS_RANGE's, not FS_RANGE's
    audio: bool = False
    #: a stream that goes on until stopped (False: the replay of a file, which ends,
    #: can be paced with --speed and shows a progress line)
    live: bool = True


#: Scheme -> its entry; a new source is one entry here plus its function.
SOURCES: dict[str, SourceKind] = {
    "replay": SourceKind(open_replay, "replay:PATH", live=False),
    "stdin": SourceKind(open_stdin, "stdin"),
    "stdin-pcm": SourceKind(open_stdin_pcm, "stdin-pcm", audio=True),
    "tcp": SourceKind(open_tcp, "tcp:HOST:PORT", listens=True),
    "serial": SourceKind(open_serial, "serial:PATH[@BAUD]"),
    "frames+tcp": SourceKind(open_frames_tcp, "frames+tcp:HOST:PORT (framed protocol, "
                             "docs/protocol.md)", listens=True),
}


def sources_help() -> str:
    """``--source``'s help: every scheme, and the formats ``replay:`` plays."""
    formats = ", ".join(f.name for f in REPLAY_FORMATS.values())
    return " | ".join(k.usage + (f" ({formats})" if k is SOURCES["replay"] else "")
                      for k in SOURCES.values())


def rate_needed() -> str:
    """The sources whose rate ``--fs`` gives (the others carry it): ``stdin/tcp/...``."""
    return "/".join([*(n for n, k in SOURCES.items() if k.live),
                     *(f.name for f in REPLAY_FORMATS.values() if not f.carries_rate)])


def is_live(spec: str) -> bool:
    """The source ``spec`` names is a live stream, not the replay of a file (an unknown
    scheme counts as live; opening it is refused)."""
    kind = SOURCES.get(spec.partition(":")[0])
    return kind is None or kind.live


def replay_kind(spec: str) -> str | None:
    """The :data:`REPLAY_FORMATS` entry a ``replay:PATH`` source plays (``"wfdb"``,
    ``"csv"``, ``"session"``, ``"audio"``); None for a live source."""
    scheme, _, rest = spec.partition(":")
    return replay_format(rest) if scheme == "replay" else None


def replayed(spec: str) -> ReplayFormat | None:
    """The format of the file a ``replay:PATH`` source plays; None for a live source."""
    kind = replay_kind(spec)
    return None if kind is None else REPLAY_FORMATS[kind]


def carries_audio(spec: str) -> bool:
    """The source ``spec`` carries audio (``stdin-pcm``, a wav/flac replay): its sample
    rate is held to :data:`AUDIO_FS_RANGE`, not :data:`FS_RANGE`."""
    kind = SOURCES.get(spec.partition(":")[0])
    return (kind is not None and kind.audio) or ((fmt := replayed(spec)) is not None
                                                 and fmt.audio)


def carries_rate(spec: str) -> bool:
    """The source ``spec`` replays a file that carries its own sample rate."""
    return (fmt := replayed(spec)) is not None and fmt.carries_rate


def check_source_safety(spec: str, token: str = "") -> None:
    """Refuse (:class:`SourceError`) a listening source off loopback without a token,
    before anything is loaded or bound."""
    scheme, _, rest = spec.partition(":")
    if scheme in SOURCES and SOURCES[scheme].listens:
        host, port = _host_port(SourceSpec(spec, scheme, rest))
        if not is_loopback(host) and not token:
            _listen(scheme, host, port, token)  # raises with the one message


def open_source(spec: str, fs: float | None = None, speed: str | float | None = "max",
                lead: str = "MLII", token: str = "") -> Source:
    """Open the source ``spec`` names by its scheme (see :data:`SOURCES`); ``token`` is
    what clients of a listening source must send first (required off loopback). A sample
    rate outside :data:`FS_RANGE` (:data:`AUDIO_FS_RANGE` for audio), given or found in
    the data, is refused (:func:`check_fs`)."""
    scheme, _, rest = spec.partition(":")
    kind = SOURCES.get(scheme)
    if kind is None:
        raise SourceError(f"unknown source {spec!r}: expected "
                          f"{' | '.join(k.usage for k in SOURCES.values())}")
    audio = carries_audio(spec)
    if fs is not None:  # refused before anything is opened or allocated
        check_fs(f"source {spec}", fs, audio)
    source = kind.open(SourceSpec(spec, scheme, rest, fs, speed, lead, token))
    try:
        check_fs(f"source {spec}", source.fs, audio)
    except SourceError:
        source.stop()
        raise
    return source
