"""The board's side of the wire protocol (docs/protocol.md): frames out, one per call.

The constants, payload layouts and CRC come from :mod:`vitaledge.device.stream.protocol`, so the
encoder and the daemon's decoder cannot drift apart.
"""

from __future__ import annotations

import numpy as np

from vitaledge.device.stream.protocol import (
    CRC,
    HEADER,
    HELLO,
    LEAD_OFF,
    LEAD_OFF_PAYLOAD,
    MAX_PAYLOAD,
    SAMPLES,
    SAMPLES_HEAD,
    STATUS,
    STATUS_PAYLOAD,
    SYNC,
    VERSION,
    Hello,
    crc16,
)


class FrameEncoder:
    """Numbers frames with a wrapping 16-bit sequence and seals them with the CRC."""

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
