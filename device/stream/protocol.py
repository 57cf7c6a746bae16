"""The sensor wire protocol (docs/protocol.md): framing constants, CRC, decoder, encoder.

Two layers, both incremental:

* :class:`FrameDecoder` turns bytes into checked frames. It finds the sync word, checks the
  header and the CRC-16/CCITT-FALSE, and resynchronizes after garbage, truncated frames and
  corrupted bytes by rescanning from the byte after a rejected sync word. It counts CRC
  failures, rejected headers, skipped bytes, lost frames (sequence gaps) and duplicates.
* :class:`SampleStream` turns frames into what the daemon consumes: sample chunks in mV,
  :class:`Gap` items when samples are missing (lost frames, lead-off, disconnects), and
  :class:`StatusEvent` items (hello, lead-off/on, status flag changes).

:class:`FrameEncoder` writes frames (the simulated board in ``firmware_sim`` and the fuzz
corpus use it); encoder and decoder share the constants and :func:`crc16` defined here, so
the two cannot disagree.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import asdict, dataclass, field

import numpy as np

SYNC = b"\xa5\x5a"
VERSION = 1
HEADER = struct.Struct("<2sBBHIH")  # sync, version, type, seq, timestamp_us, payload length
CRC = struct.Struct("<H")
MAX_PAYLOAD = 1024
OVERHEAD = HEADER.size + CRC.size

HELLO, SAMPLES, STATUS, LEAD_OFF = 0x01, 0x02, 0x03, 0x04
TYPE_NAMES = {HELLO: "hello", SAMPLES: "samples", STATUS: "status", LEAD_OFF: "lead_off"}

HELLO_PAYLOAD = struct.Struct("<IBBfhH")  # fs mHz, channels, adc bits, gain, baseline, n/frame
SAMPLES_HEAD = struct.Struct("<IBB")  # first sample index, channels, flags
STATUS_PAYLOAD = struct.Struct("<IHH")  # sample count, flags, battery mV
LEAD_OFF_PAYLOAD = struct.Struct("<IB")  # sample index of the change, lead-off channel mask

FLAG_LEAD_OFF = 0x01
FLAG_SATURATED = 0x02
FLAG_LOW_BATTERY = 0x04

#: Holes up to this long are filled by linear interpolation so detection keeps its learned
#: thresholds (a restart costs ~2 s of beats); longer holes restart detection.
MAX_CONCEAL_S = 0.25
#: A forward jump of the device's sample index longer than this is not believed as a hole
#: (a CRC-valid frame with a corrupt or reset counter would otherwise move the time axis
#: by up to 2^31 samples, 69 days at 360 Hz): the stream continues at the new index with an
#: ``index_jump`` status event and a gap of exactly this long (which restarts detection).
MAX_INDEX_JUMP_S = 60.0


class ProtocolError(ValueError):
    """A payload that passed its CRC but does not follow the spec (wrong size, values)."""


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final XOR
    (check value 0x29B1 for b"123456789")."""
    return binascii.crc_hqx(data, 0xFFFF)


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    timestamp_us: int
    payload: bytes


@dataclass(frozen=True)
class Hello:
    fs: float
    channels: int
    adc_bits: int
    gain: float  # ADC counts per mV
    baseline: int  # ADC count at 0 mV
    frame_samples: int

    @classmethod
    def parse(cls, payload: bytes) -> Hello:
        if len(payload) != HELLO_PAYLOAD.size:
            raise ProtocolError(f"hello payload is {len(payload)} bytes, expected "
                                f"{HELLO_PAYLOAD.size}")
        mhz, ch, bits, gain, base, n = HELLO_PAYLOAD.unpack(payload)
        if mhz == 0 or ch == 0 or not 1 <= bits <= 16 or not gain > 0:
            raise ProtocolError(f"hello with fs={mhz / 1000} Hz, channels={ch}, "
                                f"adc_bits={bits}, gain={gain}: out of range")
        return cls(mhz / 1000.0, ch, bits, float(gain), base, n)

    def pack(self) -> bytes:
        return HELLO_PAYLOAD.pack(int(round(self.fs * 1000)), self.channels, self.adc_bits,
                                  self.gain, self.baseline, self.frame_samples)


def parse_samples(payload: bytes) -> tuple[int, int, np.ndarray]:
    """(first sample index, flags, int16 counts shaped (n, channels))."""
    if len(payload) < SAMPLES_HEAD.size:
        raise ProtocolError(f"samples payload of {len(payload)} bytes is shorter than its head")
    first, ch, flags = SAMPLES_HEAD.unpack_from(payload)
    body = len(payload) - SAMPLES_HEAD.size
    if ch == 0 or body % (2 * ch):
        raise ProtocolError(f"samples payload: {body} bytes is not a whole number of "
                            f"{ch}-channel int16 samples")
    x = np.frombuffer(payload, dtype="<i2", offset=SAMPLES_HEAD.size).reshape(-1, ch)
    return first, flags, x


class FrameEncoder:
    """Frames out, one per call: numbers them with a wrapping 16-bit sequence and seals
    them with the CRC."""

    def __init__(self, seq: int = 0):
        self.seq = seq & 0xFFFF

    def frame(self, ftype: int, timestamp_us: int, payload: bytes) -> bytes:
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
        head = HEADER.pack(SYNC, VERSION, ftype, self.seq, int(timestamp_us) & 0xFFFFFFFF,
                           len(payload))
        self.seq = (self.seq + 1) & 0xFFFF
        body = head[2:] + payload
        return SYNC + body + CRC.pack(crc16(body))

    def hello(self, hello: Hello, timestamp_us: int) -> bytes:
        return self.frame(HELLO, timestamp_us, hello.pack())

    def samples(self, first: int, counts: np.ndarray, flags: int, timestamp_us: int) -> bytes:
        """``counts``: int16 ADC values shaped (n,) or (n, channels)."""
        c = np.asarray(counts)
        if c.ndim == 1:
            c = c[:, None]
        payload = (SAMPLES_HEAD.pack(first & 0xFFFFFFFF, c.shape[1], flags)
                   + c.astype("<i2").tobytes())
        return self.frame(SAMPLES, timestamp_us, payload)

    def status(self, sample_count: int, flags: int, battery_mv: int, timestamp_us: int) -> bytes:
        return self.frame(STATUS, timestamp_us,
                          STATUS_PAYLOAD.pack(sample_count & 0xFFFFFFFF, flags, battery_mv))

    def lead_off(self, sample: int, mask: int, timestamp_us: int) -> bytes:
        return self.frame(LEAD_OFF, timestamp_us, LEAD_OFF_PAYLOAD.pack(sample & 0xFFFFFFFF,
                                                                        mask))


@dataclass
class DecoderStats:
    bytes_in: int = 0
    frames: int = 0
    crc_errors: int = 0
    header_errors: int = 0
    garbage_bytes: int = 0
    truncated: int = 0
    unknown_frames: int = 0
    lost_frames: int = 0
    seq_gaps: int = 0
    duplicates: int = 0
    first_seq: int | None = None  # where tracking began: frames before it are not counted


class FrameDecoder:
    """Bytes in (any split), valid frames out, in order; counts what it throws away."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.stats = DecoderStats()
        self._next_seq: int | None = None

    def end(self) -> list[Frame]:
        """The link closed: a frame still waiting for bytes is truncated (counted), and
        the bytes after its sync word are scanned for whole frames. Sequence tracking
        continues, so frames lost before a reconnection are counted."""
        out = self.feed(b"")
        while len(self._buf) > 1:
            self.stats.truncated += 1
            self.stats.garbage_bytes += 1
            del self._buf[:1]
            out += self.feed(b"")
        self.stats.garbage_bytes += len(self._buf)
        self._buf.clear()
        return out

    def feed(self, data: bytes) -> list[Frame]:
        st = self.stats
        st.bytes_in += len(data)
        buf = self._buf
        buf += data
        out: list[Frame] = []
        pos = 0
        while True:
            i = buf.find(SYNC, pos)
            if i < 0:
                # keep a trailing first sync byte: the second may come with the next read
                keep = 1 if buf[-1:] == SYNC[:1] else 0
                st.garbage_bytes += len(buf) - pos - keep
                pos = len(buf) - keep
                break
            st.garbage_bytes += i - pos
            pos = i
            if len(buf) - pos < HEADER.size:
                break
            _, ver, typ, seq, ts, n = HEADER.unpack_from(buf, pos)
            if ver != VERSION or n > MAX_PAYLOAD:
                st.header_errors += 1
                st.garbage_bytes += 1
                pos += 1
                continue
            end = pos + HEADER.size + n + CRC.size
            if len(buf) < end:
                break
            (crc,) = CRC.unpack_from(buf, end - CRC.size)
            if crc16(bytes(buf[pos + 2:end - CRC.size])) != crc:
                st.crc_errors += 1
                st.garbage_bytes += 1
                pos += 1  # rescan: a truncated frame's tail may hold the next sync word
                continue
            frame = Frame(typ, seq, ts, bytes(buf[pos + HEADER.size:end - CRC.size]))
            pos = end
            if self._sequence(frame):
                out.append(frame)
        del buf[:pos]
        return out

    def _sequence(self, f: Frame) -> bool:
        """Track sequence numbers; False for a duplicate (dropped)."""
        st = self.stats
        if st.first_seq is None:
            st.first_seq = f.seq
        if self._next_seq is not None:
            d = (f.seq - self._next_seq) & 0xFFFF
            # behind: a repeat of an old frame (a hello only if it repeats the last frame;
            # any other hello behind is a rebooted board starting its count again)
            if d >= 0x8000 and (f.type != HELLO or d == 0xFFFF):
                st.duplicates += 1
                return False
            if 0 < d < 0x8000:
                st.lost_frames += d
                st.seq_gaps += 1
        self._next_seq = (f.seq + 1) & 0xFFFF
        st.frames += 1
        if f.type not in TYPE_NAMES:
            st.unknown_frames += 1
            return False
        return True


@dataclass(frozen=True)
class Gap:
    """``missing`` samples did not arrive. ``fill`` (a short hole) holds interpolated
    values that keep the time axis; without it, detection restarts after the hole."""

    missing: int
    reason: str
    fill: np.ndarray | None = None


@dataclass(frozen=True)
class StatusEvent:
    """Something the device reported (hello, lead-off/on, flags) for the event sinks."""

    info: dict = field(default_factory=dict)


@dataclass
class StreamStats:
    samples: int = 0
    start_offset: int = 0
    missing_samples: int = 0
    concealed_samples: int = 0
    gaps: int = 0
    concealed_gaps: int = 0
    lead_off_samples: int = 0
    no_hello_samples: int = 0
    overlap_samples: int = 0
    saturated_frames: int = 0
    bad_payloads: int = 0
    hellos: int = 0
    index_jumps: int = 0
    clock_ppm: float | None = None


class SampleStream:
    """Frames -> sample chunks (one channel, mV), gaps and status events.

    ``fs``: when given, a device announcing another rate is refused (its samples are
    counted and dropped); without it the first hello's rate is kept the same way (what
    reads the chunks was built for one rate: a board that reboots at another is refused,
    not read as if at the first). Samples before the first hello cannot be scaled and are counted
    and dropped. The device's sample index makes every gap exact, whatever was lost.
    """

    def __init__(self, fs: float | None = None, channel: int = 0,
                 max_conceal_s: float = MAX_CONCEAL_S):
        self.expected_fs = fs
        self.channel = channel
        self.max_conceal_s = max_conceal_s
        self.hello: Hello | None = None
        self.stats = StreamStats()
        self._next: int | None = None  # next expected sample index
        self._last: float | None = None  # last sample value passed on (mV)
        self._lead_off = False
        self._flags = 0
        self._clock0: tuple[int, int] | None = None  # (timestamp_us unwrapped, sample index)
        self._ts_last = 0
        self._ts_wraps = 0

    def push(self, frame: Frame) -> list:
        try:
            if frame.type == HELLO:
                return self._hello(Hello.parse(frame.payload), frame)
            if frame.type == SAMPLES:
                return self._samples(frame)
            if frame.type == STATUS:
                return self._status(frame)
            if frame.type == LEAD_OFF:
                return self._lead_off_frame(frame)
        except (ProtocolError, ValueError) as exc:
            self.stats.bad_payloads += 1
            return [StatusEvent({"status": "bad_frame", "frame": TYPE_NAMES[frame.type],
                                 "error": str(exc)})]
        return []

    def _hello(self, h: Hello, frame: Frame) -> list:
        self.stats.hellos += 1
        if not self.expected_fs:  # the first hello's rate is the stream's from now on
            self.expected_fs = h.fs
        if self.expected_fs and abs(h.fs - self.expected_fs) > 1e-3:
            self.hello = None
            return [StatusEvent({"status": "config_mismatch", "device_fs": h.fs,
                                 "expected_fs": self.expected_fs})]
        changed = h != self.hello
        self.hello = h
        return [StatusEvent({"status": "hello", "fs": h.fs, "channels": h.channels,
                             "adc_bits": h.adc_bits, "gain": h.gain,
                             "baseline": h.baseline})] if changed else []

    def _timestamp(self, ts: int) -> int:
        if ts < self._ts_last and self._ts_last - ts > 1 << 31:
            self._ts_wraps += 1
        self._ts_last = ts
        return ts + (self._ts_wraps << 32)

    def _samples(self, frame: Frame) -> list:
        first, flags, counts = parse_samples(frame.payload)
        n = len(counts)
        st = self.stats
        if self.hello is None:
            st.no_hello_samples += n
            return []
        if not 0 <= self.channel < counts.shape[1]:
            raise ProtocolError(f"channel {self.channel} requested, frame has "
                                f"{counts.shape[1]}")
        if flags & FLAG_SATURATED:
            st.saturated_frames += 1
        out: list = []
        if self._next is None:  # first samples: place them at the device's sample index
            self._next = first
            if first:
                st.start_offset += first
                out.append(Gap(int(first), "before_start"))
        delta = (first - self._next) & 0xFFFFFFFF
        if delta >= 1 << 31:  # behind what was already passed on
            skip = (1 << 32) - delta
            if skip > 10 * self.hello.fs:  # the sample counter restarted: a device reboot
                self._next, self._last, self._lead_off = first, None, False
                return [StatusEvent({"status": "device_restart"}), Gap(0, "device_restart"),
                        *self._samples(frame)]
            st.overlap_samples += min(skip, n)
            if skip >= n:
                return out
            counts, first = counts[skip:], first + skip
            n, delta = len(counts), 0
        bound = int(MAX_INDEX_JUMP_S * self.hello.fs)
        if delta > bound:  # not a hole the link could make: a bounded gap, reported
            st.index_jumps += 1
            st.missing_samples += bound
            st.gaps += 1
            out += [StatusEvent({"status": "index_jump", "jump_samples": int(delta),
                                 "gap_samples": bound, "from_index": int(self._next),
                                 "to_index": int(first)}), Gap(bound, "index_jump")]
            self._last, self._lead_off, self._clock0, delta = None, False, None, 0
        if flags & FLAG_LEAD_OFF:
            st.lead_off_samples += n
            self._lead_off = True
            return out  # withheld; the hole is reported when the leads are back
        x = (counts[:, self.channel].astype(np.float64) - self.hello.baseline) / self.hello.gain
        if delta:
            reason = "lead_off" if self._lead_off else "lost_frames"
            st.missing_samples += delta
            st.gaps += 1
            fill = None
            if (not self._lead_off and self._last is not None
                    and delta <= self.max_conceal_s * self.hello.fs):
                fill = self._last + (x[0] - self._last) * np.arange(1, delta + 1) / (delta + 1)
                st.concealed_gaps += 1
                st.concealed_samples += delta
            out.append(Gap(int(delta), reason, fill))
        self._lead_off = False
        self._next = (first + n) & 0xFFFFFFFF
        self._last = float(x[-1])
        st.samples += n
        out.append(x)
        ts = self._timestamp(frame.timestamp_us)
        if self._clock0 is None:
            self._clock0 = (ts, first)
        else:
            dt = (ts - self._clock0[0]) * 1e-6
            if dt > 10.0:
                ns = (first - self._clock0[1]) & 0xFFFFFFFF
                st.clock_ppm = round((ns / self.hello.fs / dt - 1.0) * 1e6, 1)
        return out

    def _status(self, frame: Frame) -> list:
        if len(frame.payload) != STATUS_PAYLOAD.size:
            raise ProtocolError(f"status payload is {len(frame.payload)} bytes, expected "
                                f"{STATUS_PAYLOAD.size}")
        _, flags, battery = STATUS_PAYLOAD.unpack(frame.payload)
        if flags == self._flags:
            return []
        self._flags = flags
        return [StatusEvent({"status": "device_flags", "lead_off": bool(flags & FLAG_LEAD_OFF),
                             "saturated": bool(flags & FLAG_SATURATED),
                             "low_battery": bool(flags & FLAG_LOW_BATTERY),
                             "battery_mv": battery})]

    def _lead_off_frame(self, frame: Frame) -> list:
        if len(frame.payload) != LEAD_OFF_PAYLOAD.size:
            raise ProtocolError(f"lead-off payload is {len(frame.payload)} bytes, expected "
                                f"{LEAD_OFF_PAYLOAD.size}")
        sample, mask = LEAD_OFF_PAYLOAD.unpack(frame.payload)
        return [StatusEvent({"status": "lead_off" if mask else "lead_on",
                             "channel_mask": mask, "device_sample": sample})]


def merge_chunks(items: list) -> list:
    """Consecutive sample arrays joined into one chunk (fewer pipeline calls)."""
    out: list = []
    run: list[np.ndarray] = []
    for it in items:
        if isinstance(it, np.ndarray):
            run.append(it)
            continue
        if run:
            out.append(np.concatenate(run))
            run = []
        out.append(it)
    if run:
        out.append(np.concatenate(run))
    return out


class ProtocolReader:
    """Bytes from a link -> merged sample chunks, gaps and status events; with the
    counters of both layers for the daemon's summary."""

    def __init__(self, fs: float | None = None, channel: int = 0,
                 max_conceal_s: float = MAX_CONCEAL_S):
        self.decoder = FrameDecoder()
        self.stream = SampleStream(fs, channel, max_conceal_s)

    def feed(self, data: bytes) -> list:
        return self._items(self.decoder.feed(data))

    def end(self) -> list:
        """The link closed (see :meth:`FrameDecoder.end`)."""
        return self._items(self.decoder.end())

    def _items(self, frames: list[Frame]) -> list:
        items: list = []
        for frame in frames:
            items += self.stream.push(frame)
        return merge_chunks(items)

    def stats(self) -> dict:
        return {**asdict(self.decoder.stats), **asdict(self.stream.stats)}
