"""The count of what a live source's thread dropped on a full queue
(device/stream/drop_count.py): totals, the span pending as a gap, and the two threads that
share it (the source thread records and hands over, the worker takes at the end)."""

from __future__ import annotations

import queue
import sys
import threading

import numpy as np
import pytest

from vitaledge.device.stream.drop_count import DropCount
from vitaledge.device.stream.protocol import Gap
from vitaledge.device.stream.queue_items import DeviceStatus, Samples, WireGap


@pytest.fixture
def busy_switching():
    """Threads switched as often as the interpreter allows, so that a race shows."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def test_a_new_count_is_zero():
    d = DropCount()
    assert (d.chunks, d.samples, d.missing) == (0, 0, 0)
    assert d.take_missing() == 0


def test_dropped_items_add_chunks_lost_samples_and_their_span():
    d = DropCount()
    d.record(Samples(np.zeros(64)))
    d.record(WireGap(Gap(100, "crc")))  # no samples held, 100 of the time axis
    d.record(DeviceStatus({"status": "hello"}))  # neither
    assert d.chunks == 3
    assert d.samples == 64
    assert d.missing == 164


def test_take_missing_returns_the_pending_span_once_and_keeps_the_totals():
    d = DropCount()
    d.record(Samples(np.zeros(64)))
    d.record(Samples(np.zeros(32)))
    assert d.take_missing() == 96
    assert d.take_missing() == 0
    assert d.missing == 0
    assert (d.chunks, d.samples) == (2, 96)
    d.record(WireGap(Gap(7, "timeout")))
    assert d.take_missing() == 7
    assert (d.chunks, d.samples) == (3, 96)


def test_hand_over_gives_the_pending_span_to_put_and_clears_it():
    d = DropCount()
    put: list[int] = []
    d.hand_over(put.append)
    assert put == []  # nothing pending: put is not called
    d.record(Samples(np.zeros(64)))
    d.record(WireGap(Gap(10, "crc")))
    d.hand_over(put.append)
    assert put == [74]
    assert d.missing == 0
    d.hand_over(put.append)
    assert put == [74]


def test_a_put_that_raises_leaves_the_span_pending():
    d = DropCount()
    d.record(Samples(np.zeros(64)))

    def full(n: int) -> None:
        raise queue.Full

    with pytest.raises(queue.Full):
        d.hand_over(full)
    assert d.missing == 64
    assert d.take_missing() == 64


def test_two_threads_recording_lose_nothing(busy_switching):
    d = DropCount()
    chunk, gap = Samples(np.zeros(5)), WireGap(Gap(3, "crc"))

    def record(item, n=10_000):
        for _ in range(n):
            d.record(item)

    threads = [threading.Thread(target=record, args=(it,)) for it in (chunk, gap)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert d.chunks == 20_000
    assert d.samples == 10_000 * 5
    assert d.missing == 10_000 * (5 + 3)


def test_a_span_is_reported_once_while_the_worker_takes_beside_the_reader(busy_switching):
    """The source thread records and hands over while the worker takes: every dropped
    sample of the time axis comes out once, neither twice nor never (without the lock, a
    take between the hand-over's put and its reset reported the span twice)."""
    d = DropCount()
    handed: list[int] = []
    taken = [0]  # summed as taken (the worker spins: a list of every take would grow)
    done = threading.Event()
    item = Samples(np.zeros(3))

    def reader():
        for _ in range(200_000):
            d.record(item)
            d.hand_over(handed.append)
        done.set()

    def worker():
        while not done.is_set():
            taken[0] += d.take_missing()

    threads = [threading.Thread(target=reader), threading.Thread(target=worker)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    taken[0] += d.take_missing()
    assert sum(handed) + taken[0] == 200_000 * 3
    assert d.chunks == 200_000
    assert d.samples == 200_000 * 3
