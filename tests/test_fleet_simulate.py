"""``vitaledge fleet simulate``: simulated devices publish beat events in real time through
the daemon's topics and payloads; a subscriber measures rate, latency, losses and the
broker's CPU. A few seconds against the session's mosquitto (tests/test_mqtt.py)."""

from __future__ import annotations

import json
import threading
import time

import pytest

pytest.importorskip("paho.mqtt.client", reason="paho-mqtt (the device extra) not installed")

from click.testing import CliRunner  # noqa: E402
from test_mqtt import broker  # noqa: E402, F401  (the session's mosquitto)

from vitaledge.device.fleet.simulate import listener_pid, proc_cpu_s, simulate  # noqa: E402
from vitaledge.device.stream import mqtt  # noqa: E402


def _of_run(seen: list, run: str) -> list:
    return [(t, b) for t, b in list(seen) if b.get("run") == run]


def test_simulated_fleet_reaches_the_subscriber_and_is_measured(broker):  # noqa: F811
    seen = []
    prefix = mqtt.parse_url(broker.url).prefix
    subscribed = threading.Event()
    sub, _ = mqtt.subscriber(broker.url, [mqtt.topic(prefix, "+", "+", "events", "beat")],
                             lambda t, body: seen.append((t, body)),
                             on_subscribed=subscribed.set)
    sub.loop_start()
    try:
        assert subscribed.wait(20), "this test's subscription was not granted"
        r = simulate(broker.url, devices=5, seconds=3.0, bpm=120, connections=2, seed=1)
        # simulate waited for its own subscriber; this one may still be receiving
        deadline = time.monotonic() + 20
        while len(_of_run(seen, r["run"])) < r["published"] and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sub.disconnect()
        sub.loop_stop()

    # 5 devices at 2 beats/s for 3 s: about 30 events, every one received once
    assert 20 <= r["published"] <= 40 and r["acked"] == r["published"]
    assert r["unique"] == r["published"] and r["lost"] == 0 and r["loss_rate"] == 0.0
    for key in ("devices", "connections", "seconds", "expected_per_s", "received_per_s",
                "published_per_s", "duplicates", "late_publishes", "payload_bytes",
                "simulator_cpu_percent", "broker_cpu_percent", "broker_pid"):
        assert key in r
    assert (r["devices"], r["connections"], r["expected_per_s"]) == (5, 2, 10.0)
    lat = r["latency_ms"]
    # a latency in ms, not a timestamp; no speed bar: the machine may be loaded
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"] < 10_000
    # the broker was found by its listening socket, and its CPU read from /proc
    assert r["broker_pid"] == broker.proc.pid == listener_pid(broker.port)
    assert r["broker_cpu_percent"] is not None and r["broker_cpu_percent"] >= 0

    # the daemon's topic scheme and beat payload, with seq/run per device
    mine = _of_run(seen, r["run"])
    assert len(mine) == r["published"]
    topic, body = mine[0]
    site, device, rest = mqtt.parse_topic(prefix, topic)
    assert rest == ["events", "beat"] and (site, device) == (body["site"], body["device"])
    assert body["type"] == "beat" and body["schema"] == mqtt.SCHEMA
    assert {"time", "sample", "class", "probabilities", "rr", "heart_rate", "seq",
            "sent_t"} <= set(body)
    by_device: dict[str, list[int]] = {}
    for _, b in mine:
        by_device.setdefault(b["device"], []).append(b["seq"])
    assert len(by_device) == 5
    assert all(sorted(s) == list(range(1, len(s) + 1)) for s in by_device.values())


def test_simulate_command_prints_the_report(broker):  # noqa: F811
    from vitaledge.device.fleet.cli import fleet_group

    res = CliRunner().invoke(fleet_group, ["simulate", "--broker", broker.url, "--devices",
                                           "3", "--seconds", "1.5", "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.output)
    assert r["devices"] == 3 and r["published"] > 0 and r["lost"] == 0
    bad = CliRunner().invoke(fleet_group, ["simulate", "--broker", broker.url, "--devices",
                                           "2", "--connections", "5", "--seconds", "1"])
    assert bad.exit_code != 0 and "connections 5" in bad.output


def test_proc_cpu_reads_this_process():
    import os

    assert proc_cpu_s(os.getpid()) >= 0
    assert proc_cpu_s(2 ** 22 + 12345) is None
