"""The daemon's source thread (device/stream/source_reader.py): a live source drops on a
full queue and reports the span as a gap before the next item that gets through; a replay
waits; a source that raises is kept as the error."""

from __future__ import annotations

import queue
import threading

import numpy as np

from vitaledge.device.stream.drop_count import DropCount
from vitaledge.device.stream.protocol import Gap
from vitaledge.device.stream.queue_items import Dropped, Samples, WireGap
from vitaledge.device.stream.source_reader import SourceReader
from vitaledge.device.stream.sources import Source


def reader(chunks, maxsize: int, live: bool):
    q: queue.Queue = queue.Queue(maxsize=maxsize)
    drops = DropCount()
    calls: list[int] = []
    r = SourceReader(Source("test", 360.0, iter(chunks)), q, live, threading.Event(),
                     threading.Event(), drops, lambda: calls.append(1))
    return r, q, drops, calls


def drain(q: queue.Queue) -> list:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


def test_a_live_item_finding_the_queue_full_is_dropped_and_its_span_queued_later():
    r, q, drops, calls = reader([], maxsize=2, live=True)
    a, b, c = (Samples(np.arange(n, dtype=float)) for n in (5, 7, 4))
    r.offer(a)
    r.offer(b)
    r.offer(c)  # full: dropped
    r.offer(WireGap(Gap(10, "crc")))  # dropped too: no samples, 10 of the time axis
    assert (drops.chunks, drops.samples, drops.missing) == (2, 4, 14)
    assert len(calls) == 2
    assert q.get_nowait() is a
    d = Samples(np.zeros(6))
    r.offer(d)  # room for the gap only: d is dropped, its span pending
    assert drain(q) == [b, Dropped(14)]
    assert (drops.chunks, drops.samples, drops.missing) == (3, 10, 6)
    e = Samples(np.zeros(2))
    r.offer(e)
    assert drain(q) == [Dropped(6), e]
    assert (drops.chunks, drops.samples, drops.missing) == (3, 10, 0)
    assert len(calls) == 3


def test_a_live_source_is_read_to_its_end_and_the_threads_told():
    chunks = [np.zeros(4), Gap(3, "crc"), np.ones(2)]
    r, q, drops, calls = reader(chunks, maxsize=10, live=True)
    r.run()
    items = drain(q)
    assert [type(x) for x in items] == [Samples, WireGap, Samples]
    assert items[1].gap.missing == 3
    assert r.exited.is_set() and r.done.is_set() and r.error is None
    assert (drops.chunks, drops.missing, calls) == (0, 0, [])


def test_a_replay_waits_for_room_and_nothing_is_dropped():
    chunks = [np.full(3, float(i)) for i in range(50)]
    r, q, drops, calls = reader(chunks, maxsize=1, live=False)
    got = []

    def consume():
        while len(got) < 50:
            got.append(q.get(timeout=5.0))

    t = threading.Thread(target=consume)
    t.start()
    r.run()
    t.join(timeout=10.0)
    assert [float(x.chunk[0]) for x in got] == [float(i) for i in range(50)]
    assert (drops.chunks, drops.samples, calls) == (0, 0, [])


def test_a_stop_ends_the_reading_before_the_next_item():
    r, q, drops, _ = reader([np.zeros(4), np.zeros(4)], maxsize=10, live=True)
    r.stop.set()
    r.run()
    assert q.empty()
    assert r.exited.is_set() and r.done.is_set()


def test_a_source_that_raises_is_kept_as_the_error_and_ends_the_reading(caplog):
    def broken():
        yield np.zeros(4)
        raise ValueError("boom")

    r, q, _, _ = reader(broken(), maxsize=10, live=True)
    r.run()
    assert r.error == "ValueError: boom"
    assert len(drain(q)) == 1
    assert r.exited.is_set() and r.done.is_set()
    assert '"source_error"' in caplog.text and "boom" in caplog.text
