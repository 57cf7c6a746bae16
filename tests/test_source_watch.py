"""A live source that goes quiet or sends at another rate (device/stream/source_watch.py),
on a clock the test sets, and through a running daemon on a real socket."""

from __future__ import annotations

import json
import socket
import threading

import numpy as np
import pytest
from conftest import free_port, wait_for

from vitaledge.device.stream.source_watch import RATE_WINDOW_S, SourceWatch

FS = 360.0


def test_silence_is_reported_once_and_its_end_says_how_long():
    w = SourceWatch(FS, live=True, no_signal_s=5.0)
    assert w.check_silence(100.0, 0.0) == []  # nothing arrived yet: nothing to miss
    assert w.arrived(10, 0, 100.0, 0.03) == []
    assert w.check_silence(104.9, 0.03) == []
    [ev] = w.check_silence(130.0, 0.03)  # thirty seconds without a sample
    assert ev["status"] == "no_signal" and ev["time"] == 0.03 and ev["silent_s"] == 30.0
    assert w.check_silence(131.0, 0.03) == []  # reported once
    [ev] = w.arrived(10, 0, 131.0, 0.03)
    assert ev["status"] == "signal_resumed" and ev["silent_s"] == 31.0
    assert not w.silent


def test_a_replayed_source_is_never_reported():
    w = SourceWatch(FS, live=False)
    w.arrived(10, 0, 0.0, 0.0)
    assert w.check_silence(1000.0, 0.0) == []
    assert w.arrived(10 * 360, 0, 2 * RATE_WINDOW_S, 10.0) == []


def test_arrival_rate_off_by_more_than_a_quarter_is_reported_and_its_return():
    w = SourceWatch(FS, live=True)
    win = RATE_WINDOW_S

    def arrive(samples: int, now: float) -> list[dict]:
        return w.arrived(samples, 0, now, 0.0)

    assert arrive(1, 100.0) == []  # the window starts
    [ev] = arrive(int(2 * FS * win), 100.0 + win)  # twice the configured rate
    assert ev["status"] == "rate_mismatch" and ev["measured_hz"] == pytest.approx(2 * FS, 0.01)
    assert arrive(int(2 * FS * win), 100.0 + 2 * win) == []  # reported once
    assert arrive(int(1.15 * FS * win), 100.0 + 3 * win) == []  # 15 % off: not yet back
    [ev] = arrive(int(FS * win), 100.0 + 4 * win)
    assert ev["status"] == "rate_ok" and ev["measured_hz"] == pytest.approx(FS, 0.01)


def test_dropped_samples_count_as_arrived_and_a_silence_is_not_a_slow_rate():
    w = SourceWatch(FS, live=True, no_signal_s=5.0)
    win = RATE_WINDOW_S
    assert w.arrived(1, 0, 0.0, 0.0) == []
    # half the samples reached the worker, the other half were dropped on a full queue:
    # they count as arrived, so the rate is the configured one
    half = int(FS * win / 2)
    assert w.arrived(half, half, win, 0.0) == []
    w.check_silence(win + 60.0, 0.0)  # a minute of silence
    [ev] = w.arrived(10, half, win + 60.0, 0.0)
    assert ev["status"] == "signal_resumed"  # and no rate_mismatch: the window restarted
    assert w.arrived(int(FS * win), half, 2 * win + 60.0, 0.0) == []


@pytest.mark.slow
def test_a_tcp_source_that_goes_quiet_is_reported_by_the_daemon(converted, tmp_path):
    """A sensor on TCP sends 3 s of ECG, stops, then sends again: the running daemon writes
    ``no_signal`` (after ``no_signal_s``) and then ``signal_resumed``, once each."""
    from vitaledge.device.stream.daemon import Daemon
    from vitaledge.device.stream.daemon_config import DaemonConfig

    out, _ = converted
    port = free_port()
    ev = tmp_path / "ev.jsonl"
    d = Daemon(DaemonConfig(model=str(out / "cpu-int8"), source=f"tcp:127.0.0.1:{port}",
                            fs=FS, out=[str(ev)], no_signal_s=0.5))

    def statuses() -> list[str]:
        return [e["status"] for e in list(d.writer.recent) if e.get("type") == "status"]

    def sensor():
        x = np.sin(np.arange(int(3 * FS)) / 20.0)
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall("".join(f"{v:.4f}\n" for v in x).encode())
            if wait_for(lambda: "no_signal" in statuses(), 30.0):
                s.sendall("".join(f"{v:.4f}\n" for v in x).encode())
                wait_for(lambda: "signal_resumed" in statuses(), 30.0)
        d.request_stop()

    t = threading.Thread(target=sensor)
    t.start()
    d.run(install_signals=False)
    t.join()
    got = [e["status"] for e in map(json.loads, ev.read_text().splitlines())
           if e.get("type") == "status" and e["status"] in ("no_signal", "signal_resumed")]
    assert got == ["no_signal", "signal_resumed"]
    [resumed] = [e for e in map(json.loads, ev.read_text().splitlines())
                 if e.get("status") == "signal_resumed"]
    assert resumed["silent_s"] >= 0.5


def test_no_signal_s_must_be_positive_seconds():
    from vitaledge.device.stream.daemon_config import DaemonConfig

    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="no_signal_s"):
            DaemonConfig(model="m", source="stdin", no_signal_s=bad)
