"""The daemon's EventWriter on its own: numbering after what the sinks hold, a failing
sink reported as an event on the others and its events written once it recovers, the
events kept for /events, nothing written once abandoned."""

from __future__ import annotations

import json


class FlakySink:
    """A sink that fails while ``broken`` is set, and remembers what it was given."""

    def __init__(self, path, last=0):
        self.path, self.last, self.broken, self.got = path, last, False, []

    def last_seq(self):
        return self.last

    def write(self, events):
        if self.broken:
            raise OSError(28, "No space left on device")
        self.got += [dict(e) for e in events]

    def close(self):
        pass

    def delivery(self):
        return None


def _writer(tmp_path, keep=4):
    from vitaledge.device.stream.daemon_metrics import DaemonMetrics
    from vitaledge.device.stream.event_writer import EventWriter
    from vitaledge.device.stream.sinks import GuardedSink, JsonlSink

    now = [0.0]
    good = JsonlSink(tmp_path / "e.jsonl")
    good.write([{"type": "status", "status": "x", "seq": 41}])  # an earlier run's
    flaky = FlakySink(tmp_path / "flaky", last=7)
    sinks = [GuardedSink("file", good, lambda: JsonlSink(tmp_path / "e.jsonl")),
             GuardedSink("flaky", flaky, lambda: flaky, retry_s=(1.0, 1.0),
                         clock=lambda: now[0])]
    meters = DaemonMetrics(lambda: 0, None, _NoCollector())
    return EventWriter(sinks, meters, lambda: 12.5, keep), flaky, now


class _NoCollector:
    def collect(self):
        return iter(())


def test_the_writer_numbers_reports_a_failing_sink_and_keeps_the_last_events(tmp_path):
    w, flaky, now = _writer(tmp_path)
    assert w.seq == 41  # after the highest seq any sink holds
    w.emit([{"type": "beat", "class": "N", "sample": 1}])
    assert [e["seq"] for e in flaky.got] == [42] and flaky.got[0]["run"] == w.run_id
    flaky.broken = True
    w.emit([{"type": "beat", "class": "V", "sample": 2}])  # 43; the failure is 44
    lines = [json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert [(e["seq"], e.get("status")) for e in lines[1:]] == [
        (42, None), (43, None), (44, "sink_error")]
    assert lines[-1]["sink"] == "flaky" and lines[-1]["time"] == 12.5
    flaky.broken, now[0] = False, 5.0  # past the retry time: the backlog goes through
    w.emit([{"type": "beat", "class": "N", "sample": 3}])
    assert [e["seq"] for e in flaky.got] == [42, 43, 44, 45, 46]  # 46: sink_recovered
    assert flaky.got[-1]["status"] == "sink_recovered"
    assert w.emitted == {"beat": 3, "status": 2}
    assert [e["seq"] for e in w.since(43, 10)] == [44, 45, 46]  # the last four kept
    assert [e["seq"] for e in w.since(0, 2)] == [43, 44]
    w.abandon(0.1)
    w.emit([{"type": "beat", "class": "N", "sample": 4}])
    assert w.seq == 46 and len(flaky.got) == 5
    assert w.close() == {"flaky": {"failing": False, "error": "OSError: [Errno 28] No space "
                                   "left on device", "attempts": 4, "errors": 1,
                                   "unwritten": 0}}
