"""The wire protocol: CRC, test vectors (the same hex as docs/protocol.md), round trips over
any split of the byte stream, resynchronization, sequence tracking and gap reporting."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitaledge.device.stream.protocol import (
    FLAG_LEAD_OFF,
    HELLO,
    HELLO_PAYLOAD,
    LEAD_OFF,
    SAMPLES,
    SAMPLES_HEAD,
    STATUS,
    FrameDecoder,
    FrameEncoder,
    Gap,
    Hello,
    ProtocolReader,
    SampleStream,
    StatusEvent,
    crc16,
    parse_samples,
)

HELLO_360 = Hello(360.0, 1, 12, 200.0, 0, 10)

# The test vectors of docs/protocol.md, frame by frame (seq 0..3).
VECTORS = {
    "hello": "a5 5a 01 01 00 00 00 00 00 00 0e 00 40 7e 05 00 01 0c 00 00 48 43 00 00 0a 00 "
             "e9 01",
    "samples": "a5 5a 01 02 01 00 82 6c 00 00 0e 00 0a 00 00 00 01 00 00 00 c8 00 38 ff ff 07 "
               "c4 02",
    "status": "a5 5a 01 03 02 00 40 42 0f 00 08 00 68 01 00 00 00 00 74 0e 84 68",
    "lead_off": "a5 5a 01 04 03 00 80 84 1e 00 05 00 d0 02 00 00 01 11 81",
}


def vector_frames() -> list[bytes]:
    e = FrameEncoder()
    return [e.hello(HELLO_360, 0),
            e.samples(10, np.array([0, 200, -200, 2047], np.int16), 0, 27778),
            e.status(360, 0, 3700, 1_000_000),
            e.lead_off(720, 1, 2_000_000)]


def test_crc_is_ccitt_false():
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF


def test_encoder_produces_the_documented_test_vectors():
    got = [f.hex(" ") for f in vector_frames()]
    assert got == list(VECTORS.values())


def test_decoder_reads_the_test_vectors():
    dec = FrameDecoder()
    frames = dec.feed(bytes.fromhex(" ".join(VECTORS.values())))
    assert [f.type for f in frames] == [HELLO, SAMPLES, STATUS, LEAD_OFF]
    assert [f.seq for f in frames] == [0, 1, 2, 3]
    assert [f.timestamp_us for f in frames] == [0, 27778, 1_000_000, 2_000_000]
    assert Hello.parse(frames[0].payload) == HELLO_360
    first, flags, x = parse_samples(frames[1].payload)
    assert (first, flags, x[:, 0].tolist()) == (10, 0, [0, 200, -200, 2047])
    assert dec.stats.frames == 4 and dec.stats.crc_errors == dec.stats.garbage_bytes == 0
    items = ProtocolReader().feed(bytes.fromhex(" ".join(VECTORS.values())))
    hello, start, samples, lead = items
    assert isinstance(hello, StatusEvent) and hello.info["fs"] == 360.0
    # the first samples are placed at the device's sample index (10)
    assert (start.missing, start.reason, start.fill) == (10, "before_start", None)
    np.testing.assert_array_equal(samples, [0.0, 1.0, -1.0, 10.235])
    assert lead.info == {"status": "lead_off", "channel_mask": 1, "device_sample": 720}


def _session(n_frames: int, n: int = 10, seed: int = 0) -> tuple[list[bytes], np.ndarray]:
    rng = np.random.default_rng(seed)
    e = FrameEncoder()
    counts = rng.integers(-2048, 2048, n * n_frames).astype(np.int16)
    frames = [e.hello(HELLO_360, 0)]
    frames += [e.samples(i * n, counts[i * n:(i + 1) * n], 0, int(i * n / 360 * 1e6))
               for i in range(n_frames)]
    return frames, counts


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(0, 2000), max_size=30), seed=st.integers(0, 1000))
def test_round_trip_over_any_split(cuts, seed):
    frames, counts = _session(60, n=int(seed % 13) + 1, seed=seed)
    data = b"".join(frames)
    r = ProtocolReader()
    out = []
    edges = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        out += r.feed(data[a:b])
    x = np.concatenate([i for i in out if isinstance(i, np.ndarray)])
    np.testing.assert_array_equal(np.round(x * 200).astype(np.int16), counts)
    s = r.stats()
    assert s["frames"] == len(frames) and s["garbage_bytes"] == s["lost_frames"] == 0


def test_resync_after_garbage_with_fake_sync_words():
    frames, counts = _session(20)
    rng = np.random.default_rng(3)
    junk = [b"\xa5\x5a\x01\x02\x07\x00" + rng.bytes(20),  # a fake header, then noise
            b"\xa5", b"\xa5\x5a\x09", rng.bytes(200), b"\x5a\xa5\xa5"]
    data = b"".join(junk[i % len(junk)] + f for i, f in enumerate(frames))
    r = ProtocolReader()
    out = r.feed(data) + r.end()
    x = np.concatenate([i for i in out if isinstance(i, np.ndarray)])
    np.testing.assert_array_equal(np.round(x * 200).astype(np.int16), counts)
    s = r.stats()
    assert s["lost_frames"] == 0 and s["frames"] == len(frames)
    assert s["garbage_bytes"] == len(data) - sum(map(len, frames))


@pytest.mark.parametrize("pos", range(0, 42, 3))
def test_a_corrupted_byte_anywhere_drops_only_that_frame(pos):
    frames, counts = _session(5)
    bad = bytearray(frames[3])  # samples 20..29
    bad[pos % len(bad)] ^= 0x40
    frames[3] = bytes(bad)
    r = ProtocolReader()
    out = r.feed(b"".join(frames)) + r.end()
    arrays = [i for i in out if isinstance(i, np.ndarray)]
    gaps = [i for i in out if isinstance(i, Gap)]
    x = np.concatenate(arrays)
    keep = np.r_[0:20, 30:50]
    assert len(x) == 40  # nothing corrupted got through
    np.testing.assert_array_equal(np.round(x * 200).astype(np.int16), counts[keep])
    assert [(g.missing, g.reason) for g in gaps] == [(10, "lost_frames")]
    assert r.stats()["lost_frames"] == 1


def test_truncated_frame_is_counted_and_the_next_frames_survive():
    frames, counts = _session(6)
    data = b"".join(frames[:3]) + frames[3][:9] + b"".join(frames[4:])
    r = ProtocolReader()
    out = r.feed(data)
    out += r.end()
    x = np.concatenate([i for i in out if isinstance(i, np.ndarray)])
    assert len(x) == 50
    s = r.stats()
    assert s["lost_frames"] == 1 and s["truncated"] + s["crc_errors"] >= 1


def test_sequence_gaps_duplicates_and_wraparound():
    e = FrameEncoder(seq=65534)
    f = [e.hello(HELLO_360, 0)] + [e.samples(i * 10, np.zeros(10, np.int16), 0, 0)
                                   for i in range(6)]
    dec = FrameDecoder()
    # seq 65534 (hello), 65535, 0, 1(dup twice), 3 (2 lost), 4
    got = dec.feed(f[0] + f[1] + f[2] + f[3] + f[3] + f[3] + f[5] + f[6])
    assert [g.seq for g in got] == [65534, 65535, 0, 1, 3, 4]
    assert dec.stats.duplicates == 2
    assert dec.stats.lost_frames == 1 and dec.stats.seq_gaps == 1
    # a repeated hello is a duplicate; a hello from a rebooted board (seq 0) is not
    h = FrameEncoder(seq=5).hello(HELLO_360, 0)
    reboot = FrameEncoder().hello(HELLO_360, 0)
    assert [f.seq for f in dec.feed(h + h + reboot)] == [5, 0]
    assert dec.stats.duplicates == 3 and dec.stats.lost_frames == 1


def _stream(items_frames: list[bytes], **kw) -> tuple[list, SampleStream]:
    dec, s = FrameDecoder(), SampleStream(**kw)
    out = []
    for fr in dec.feed(b"".join(items_frames)):
        out += s.push(fr)
    return out, s


def test_short_hole_is_filled_long_hole_restarts():
    e = FrameEncoder()
    ramp = np.arange(0, 400, 10, dtype=np.int16)  # 0, 10, ... counts
    frames = [e.hello(HELLO_360, 0), e.samples(0, ramp[:10], 0, 0),
              e.samples(20, ramp[20:30], 0, 0),  # 10 samples (28 ms) lost
              e.samples(30 + 200, ramp[30:40], 0, 0)]  # 200 samples (0.56 s) lost
    out, s = _stream(frames)
    gaps = [i for i in out if isinstance(i, Gap)]
    assert [(g.missing, g.reason) for g in gaps] == [(10, "lost_frames"), (200, "lost_frames")]
    # the fill is the straight line between the samples either side of the hole
    np.testing.assert_allclose(gaps[0].fill * 200, np.arange(100, 200, 10), atol=1e-9)
    assert gaps[1].fill is None
    assert s.stats.missing_samples == 210 and s.stats.concealed_samples == 10


def test_lead_off_samples_are_withheld_and_reported_as_a_gap():
    e = FrameEncoder()
    z = np.zeros(10, np.int16)
    frames = [e.hello(HELLO_360, 0), e.samples(0, z, 0, 0), e.lead_off(10, 1, 0),
              e.samples(10, z + 2047, FLAG_LEAD_OFF, 0), e.samples(20, z + 2047, FLAG_LEAD_OFF, 0),
              e.lead_off(30, 0, 0), e.samples(30, z, 0, 0)]
    out, s = _stream(frames)
    kinds = [i.info["status"] if isinstance(i, StatusEvent) else
             ("gap", i.missing, i.reason, i.fill) if isinstance(i, Gap) else len(i)
             for i in out]
    assert kinds == ["hello", 10, "lead_off", "lead_on", ("gap", 20, "lead_off", None), 10]
    assert s.stats.lead_off_samples == 20


def test_samples_before_hello_and_wrong_rate_are_counted_not_used():
    e = FrameEncoder()
    z = np.zeros(10, np.int16)
    out, s = _stream([e.samples(0, z, 0, 0), e.hello(HELLO_360, 0), e.samples(10, z, 0, 0)])
    assert s.stats.no_hello_samples == 10 and s.stats.samples == 10
    gaps = [(i.missing, i.reason) for i in out if isinstance(i, Gap)]
    assert gaps == [(10, "before_start")] and s.stats.missing_samples == 0
    out, s = _stream([e.hello(Hello(250.0, 1, 12, 200.0, 0, 10), 0), e.samples(20, z, 0, 0)],
                     fs=360.0)
    assert out[0].info["status"] == "config_mismatch" and s.stats.no_hello_samples == 10


def test_a_device_restart_is_reported_not_taken_for_duplicates():
    e = FrameEncoder()
    z = np.ones(10, np.int16)
    frames = [e.hello(HELLO_360, 0), e.samples(100_000, z, 0, 0)]
    e2 = FrameEncoder()  # reboot: sequence and sample counter start again
    frames += [e2.hello(HELLO_360, 0), e2.samples(0, z, 0, 0)]
    out, s = _stream(frames)
    assert any(isinstance(i, StatusEvent) and i.info["status"] == "device_restart" for i in out)
    assert s.stats.samples == 20 and s.stats.overlap_samples == 0


def test_bad_payload_with_good_crc_is_a_status_not_a_crash():
    e = FrameEncoder()
    frames = [e.hello(HELLO_360, 0), e.frame(SAMPLES, 0, b"\x00\x00\x00\x00\x01\x00\x01")]
    out, s = _stream(frames)
    assert out[-1].info["status"] == "bad_frame" and s.stats.bad_payloads == 1


def test_the_documented_resync_example():
    frames = [bytes.fromhex(v) for v in VECTORS.values()]
    dec = FrameDecoder()
    got = dec.feed(b"\x00\xa5\x5a\x13" + frames[0] + frames[1][:9] + frames[2] + frames[3])
    assert [f.type for f in got] == [HELLO]
    assert (dec.stats.garbage_bytes, dec.stats.header_errors) == (4, 1)
    got = dec.end()
    assert [f.type for f in got] == [STATUS, LEAD_OFF]
    assert (dec.stats.truncated, dec.stats.lost_frames) == (1, 1)


def test_a_stream_of_only_refused_frames_is_an_unreadable_source():
    """A board whose hello says 0 channels, then samples frames: every frame refused and
    no sample in. The run summary named no trouble ("no signal faults") and device run
    exited 0; now the refused frames are what it could not read, so it exits 1."""
    from vitaledge.device.stream.report import unreadable_input

    e = FrameEncoder()
    bad_hello = HELLO_PAYLOAD.pack(360_000, 0, 12, 200.0, 0, 10)
    frames = [e.frame(HELLO, 0, bad_hello)]
    frames += [e.frame(SAMPLES, 0, SAMPLES_HEAD.pack(10 * i, 0, 0)) for i in range(20)]
    out, s = _stream(frames)
    assert s.stats.samples == 0 and s.stats.bad_payloads == 21
    summary = {"samples": 0, "source_stats": asdict(s.stats)}
    assert unreadable_input(summary) == ("21 frames refused (a hello or samples payload out "
                                         "of range)")
