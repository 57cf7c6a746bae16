"""``vitaledge fleet`` on bad input: wrongly typed retained messages, events and deploy
status messages from the network, and non-finite or out-of-range options. A bad message is
shown as unknown or skipped (one line on stderr) and never stops the good ones after it; a
bad option is a Click usage error naming it; no traceback reaches the user. Against the
session's mosquitto (tests/test_mqtt.py), each test under a prefix of its own."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("paho.mqtt.client", reason="paho-mqtt (the device extra) not installed")

from click.testing import CliRunner  # noqa: E402
from test_mqtt import broker  # noqa: E402, F401  (the session's mosquitto)

from vitaledge.device.fleet import deploy as deploy_mod  # noqa: E402
from vitaledge.device.fleet.cli import fleet_group  # noqa: E402
from vitaledge.device.fleet.simulate import simulate  # noqa: E402
from vitaledge.device.fleet.view import Dedup  # noqa: E402
from vitaledge.device.stream import mqtt  # noqa: E402

VITALEDGE = str(Path(sys.executable).with_name("vitaledge"))


def own_prefix(b) -> str:
    """A broker URL under a prefix no other test uses (retained messages stay put)."""
    return f"mqtt://127.0.0.1:{b.port}/bad-{secrets.token_hex(3)}"


def publish(url: str, messages: list[tuple[str, bytes]], retain: bool = False) -> None:
    """Raw payloads to topics under the URL's prefix, in order, each acknowledged."""
    o = mqtt.parse_url(url)
    c = mqtt.new_client(o, f"test-bad-{secrets.token_hex(4)}")
    c.connect(o.host, o.port)
    c.loop_start()
    try:
        for t, p in messages:
            c.publish(f"{o.prefix}/{t}", p, qos=1, retain=retain).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()


# ---------------------------------------------------------------- fleet status


BAD_RETAINED = {  # device: (message, payload) — each crashed `fleet status` before
    "x1": ("status", b'{"state":"online","model":"x"}'),
    "x2": ("status", b'{"state":5}'),
    "x3": ("status", b'{"state":"online","started_t":"abc"}'),
    "x4": ("stats", b'{"events_per_s":"fast"}'),
    "x5": ("status", b'{"state":"online","model":{"sha256":5}}'),
    "x6": ("status", b'{"software_version":7}'),
    "x7": ("status", b'{"state":"online","started_t":NaN}'),
    "x8": ("status", b"\xff not JSON"),
    "x9": ("stats", b"[1, 2]"),
}


def test_status_lists_every_device_beside_malformed_retained_messages(broker):  # noqa: F811
    url = own_prefix(broker)
    good = {"state": "online", "model": {"sha256": "ab" * 32, "task": "beat"},
            "software_version": "1.2.3", "started_t": time.time() - 30}
    publish(url, [(f"v1/s1/{d}/{kind}", p) for d, (kind, p) in BAD_RETAINED.items()]
            + [("v1/s1/ok/status", json.dumps(good).encode()),
               ("v1/s1/ok/stats", b'{"events_per_s":2.5,"spool_backlog":0}')], retain=True)
    try:
        res = CliRunner().invoke(fleet_group, ["status", "--broker", url, "--wait", "0.5",
                                               "--json"])
        assert res.exit_code == 0 and res.exception is None, res.output
        rows = {r["device"]: r for r in json.loads(res.stdout)}
        assert set(rows) == set(BAD_RETAINED) | {"ok"}
        ok = rows["ok"]
        assert (ok["state"], ok["model_sha256"], ok["software_version"],
                ok["events_per_s"], ok["invalid_fields"]) == ("online", "ab" * 32, "1.2.3",
                                                              2.5, [])
        assert 25 < ok["uptime_s"] < 300
        assert rows["x1"]["invalid_fields"] == ["status.model"]
        assert rows["x2"]["state"] == "invalid" and not rows["x2"]["online"]
        assert rows["x3"]["uptime_s"] is None and rows["x3"]["state"] == "online"
        assert rows["x4"]["events_per_s"] is None
        assert rows["x5"]["model_sha256"] is None
        assert rows["x6"]["software_version"] is None
        assert rows["x7"]["invalid_fields"] == ["status.started_t"]
        assert (rows["x8"]["state"], rows["x8"]["invalid_fields"]) == ("invalid",
                                                                      ["status (not JSON)"])
        assert rows["x9"]["invalid_fields"] == ["stats (JSON list, not an object)"]
        for d in BAD_RETAINED:  # one line each, naming the device and the field
            assert sum(f"s1/{d}: malformed" in line for line in res.stderr.splitlines()) == 1

        text = CliRunner().invoke(fleet_group, ["status", "--broker", url, "--wait", "0.5"])
        assert text.exit_code == 0 and text.exception is None, text.output
        lines = {ln.split()[0]: ln for ln in text.stdout.splitlines()[1:]}
        assert set(lines) == {f"s1/{d}" for d in BAD_RETAINED} | {"s1/ok"}
        assert lines["s1/ok"].split()[1:4] == ["online", "abababababab", "1.2.3"]
        assert lines["s1/x2"].split()[1] == "invalid"
        assert lines["s1/x8"].split()[1:5] == ["invalid", "?", "?", "?"]  # model, version,
        # uptime: their message is unreadable, not absent
    finally:  # clear this test's retained messages
        publish(url, [(f"v1/s1/{d}/{kind}", b"") for d, (kind, _) in BAD_RETAINED.items()]
                + [("v1/s1/ok/status", b""), ("v1/s1/ok/stats", b"")], retain=True)


# ---------------------------------------------------------------- fleet tail


def test_dedup_refuses_an_unhashable_or_wrongly_typed_key():
    d = Dedup()
    for bad, field in (({"seq": [1], "run": "r"}, "seq"), ({"seq": 1, "run": ["r"]}, "run"),
                       ({"seq": True, "run": "r"}, "seq"), ({"seq": 1.5, "run": "r"}, "seq")):
        with pytest.raises(ValueError, match=field):
            d.first_time("s/d", bad)
    assert d.first_time("s/d", {"seq": 1, "run": "r"}) and d.duplicates == 0


def test_tail_skips_malformed_events_and_prints_the_valid_one_after(broker):  # noqa: F811
    url = own_prefix(broker)
    tailer = subprocess.Popen([VITALEDGE, "fleet", "tail", "--broker", url, "--timeout", "10",
                               "--count", "1"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert tailer.stderr.readline().strip() == "subscribed"
        publish(url, [("v1/s1/d9/events/beat", b'{"type":"beat","seq":[1],"run":["r"]}'),
                      ("v1/s1/d9/events/beat", b'{"type":"beat","seq":2,"run":"r",'
                                               b'"heart_rate":NaN}'),
                      ("v1/s1/d9/events/beat", b"null"),  # JSON null: a cleared message
                      ("v1/s1/d9/events/beat", b"garbage"),
                      ("v1/s1/d9/events/beat", b"[3]"),
                      ("v1/s1/d9/events/beat", b'{"type":"beat","seq":3,"run":"r"}')])
        out, err = tailer.communicate(timeout=20)
    finally:
        if tailer.poll() is None:
            tailer.kill()
    assert tailer.returncode == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [
        {"type": "beat", "seq": 3, "run": "r"}]
    skipped = [ln for ln in err.splitlines() if ln.startswith("skipped a malformed event")]
    assert len(skipped) == 4 and "run is a list" in skipped[0] and "NaN" in skipped[1]
    assert skipped[2].endswith(": not JSON")
    assert skipped[3].endswith(": JSON list, not an object")
    assert "1 events, 0 duplicates dropped, 4 malformed skipped" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------- fleet deploy


def test_deploy_ignores_malformed_status_messages(broker, tmp_path, monkeypatch):  # noqa: F811
    """Each of these crashed the status display; they are named on stderr and ignored,
    and the device's valid outcome after them ends the deployment."""
    url = own_prefix(broker)
    dep = "d-test-" + secrets.token_hex(3)
    bundle = deploy_mod.Bundle(tmp_path, {"sha256": "cd" * 32}, {}, {"model.tflite": b"m"})
    monkeypatch.setattr(deploy_mod, "read_artifact", lambda path: bundle)
    monkeypatch.setattr(deploy_mod, "new_deployment_id", lambda: dep)
    bad = [{"state": "swapped", "probation": "y"}, {"state": "selftest_passed", "selftest": "x"},
           {"state": ["x"]}, {"state": "swapped", "swap_ms": "fast"}]
    status = [json.dumps({"deployment": dep, "site": "s1", "device": "ghost", **b}).encode()
              for b in bad + [{"state": "unchanged", "reason": "already serving"}]]
    prefix = mqtt.parse_url(url).prefix

    def device(topic: str, body: dict) -> None:  # answers the deployment's header
        if body.get("kind") == "deploy":
            threading.Thread(target=publish, args=(
                url, [("v1/s1/ghost/deploy/status", p) for p in status])).start()

    # deployments are not retained: the device must be subscribed before the header goes out
    subscribed = threading.Event()
    sub, _ = mqtt.subscriber(url, [mqtt.deploy_topic(prefix, "s1", "ghost")], device,
                             on_subscribed=subscribed.set)
    sub.loop_start()
    try:
        assert subscribed.wait(20), "the simulated device's subscription was not granted"
        res = CliRunner().invoke(fleet_group, ["deploy", str(tmp_path), "--broker", url,
                                               "--device", "ghost", "--site", "s1",
                                               "--wait", "8"])
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert res.exit_code == 0 and res.exception is None, res.output
    ignored = [ln for ln in res.stderr.splitlines() if "ignored a malformed status" in ln]
    assert [ln.split(": ", 2)[-1] for ln in ignored] == [
        "probation is not an object", "selftest is not an object", "state is not a string",
        "swap_ms is not a finite number"]
    assert "s1/ghost  unchanged" in res.stdout and "all 1 device(s) took it" in res.stdout


def test_deploy_status_problem_names_the_field():
    p = deploy_mod.status_problem
    assert p({"state": "swapped", "swap_ms": 1.5, "probation": {"seconds": 30}}) is None
    assert p({"state": "probation_passed", "probation": {"latency_p99_ms": None}}) is None
    assert p({"state": "swapped", "probation": {"seconds": "x"}}) == \
        "probation.seconds is not a finite number"
    assert p({"state": "selftest_passed", "selftest": {"max_abs_diff": float("nan")}}) == \
        "selftest.max_abs_diff is not a finite number"
    assert p({"state": "refused", "reason": 3}) == "reason is not a string"
    assert p({}) == "state is not a string"


# ---------------------------------------------------------------- options


@pytest.mark.parametrize("args, option", [
    (["tail", "--timeout", "nan"], "--timeout"),
    (["tail", "--timeout", "-1"], "--timeout"),
    (["tail", "--timeout", "inf"], "--timeout"),
    (["tail", "--idle", "nan"], "--idle"),
    (["tail", "--count", "-1"], "--count"),
    (["status", "--wait", "-1"], "--wait"),
    (["status", "--wait", "nan"], "--wait"),
    (["status", "--wait", "0"], "--wait"),
    (["simulate", "--devices", "2", "--connections", "0"], "--connections"),
    (["simulate", "--devices", "2", "--seconds", "nan"], "--seconds"),
    (["simulate", "--devices", "2", "--bpm", "inf"], "--bpm"),
    (["deploy", "{tmp}", "--device", "d", "--wait", "nan"], "--wait"),
])
def test_options_refuse_non_finite_and_out_of_range_values(args, option, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    # the broker is never reached: a bad option is refused while parsing
    res = CliRunner().invoke(fleet_group, [*args, "--broker", "mqtt://127.0.0.1:1/x"])
    assert res.exit_code == 2, res.output
    assert f"Invalid value for '{option}'" in res.stderr


def test_simulate_refuses_zero_connections_and_nan_seconds():
    with pytest.raises(ValueError, match="connections 0"):
        simulate("mqtt://127.0.0.1:1/x", devices=2, seconds=1.0, connections=0)
    with pytest.raises(ValueError, match="finite seconds"):
        simulate("mqtt://127.0.0.1:1/x", devices=2, seconds=float("nan"))
