"""QA findings on ``vitaledge fleet``: commands that reported success (or hung) without
ever being connected to a broker, a deployment to nobody taken for a success, and absurd
values of retained messages shown as they came. Against the session's mosquitto
(tests/test_mqtt.py), one that refuses anonymous clients, and a TCP listener that never
speaks MQTT."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("paho.mqtt.client", reason="paho-mqtt (the device extra) not installed")

from click.testing import CliRunner  # noqa: E402
from test_fleet_bad_input import own_prefix, publish  # noqa: E402, F401
from test_mqtt import Broker, broker  # noqa: E402, F401  (the session's mosquitto)

from vitaledge.device.fleet import connect  # noqa: E402
from vitaledge.device.fleet import deploy as deploy_mod  # noqa: E402
from vitaledge.device.fleet import simulate as simulate_mod  # noqa: E402
from vitaledge.device.fleet.cli import fleet_group  # noqa: E402
from vitaledge.device.fleet.view import CLOCK_SKEW_S, device_row  # noqa: E402

VITALEDGE = str(Path(sys.executable).with_name("vitaledge"))


@pytest.fixture(scope="module")
def silent():
    """A TCP listener on 127.0.0.1 that accepts connections and never answers: no MQTT
    broker. Yields its port."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not done.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    done.set()
    t.join(5)
    for c in held:
        c.close()
    srv.close()


@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    """A mosquitto that refuses anonymous clients (CONNACK "Not authorized")."""
    b = Broker(tmp_path_factory.mktemp("mosquitto-locked"))
    b.stop()
    b.conf.write_text(b.conf.read_text().replace("allow_anonymous true",
                                                 "allow_anonymous false"))
    b.start()
    yield b
    b.stop()


@pytest.fixture
def fake_artifact(tmp_path, monkeypatch):
    """An artifact directory that ``fleet deploy`` takes without reading it."""
    bundle = deploy_mod.Bundle(tmp_path, {"sha256": "cd" * 32}, {}, {"model.tflite": b"m"})
    monkeypatch.setattr(deploy_mod, "read_artifact", lambda path: bundle)
    return str(tmp_path)


def commands(url: str, artifact: str) -> dict[str, list[str]]:
    """Every fleet command that talks to the broker, each with arguments that would end."""
    return {"status": ["status", "--broker", url, "--wait", "0.2"],
            "tail": ["tail", "--broker", url, "--timeout", "5"],
            "tail --count": ["tail", "--broker", url, "--count", "1", "--timeout", "30"],
            "simulate": ["simulate", "--broker", url, "--devices", "2", "--seconds", "1"],
            "deploy --device": ["deploy", artifact, "--broker", url, "--device", "d1",
                                "--site", "s1"],
            "deploy --all": ["deploy", artifact, "--broker", url, "--all"]}


def one_line_error(res, want: str) -> None:
    """Exit 1 with one line on stderr naming the broker and ``want`` (no traceback)."""
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: broker "), res.output
    assert want in lines[0], res.output
    assert "no devices" not in res.stdout and "events" not in res.output, res.output


# ---------------------------------------------------------------- 1. no CONNACK, refused


def test_every_command_fails_when_nothing_answers_mqtt(silent, fake_artifact, monkeypatch):
    """A listener that never sends a CONNACK: each command fails in one line within the
    CONNACK timeout (made 1 s here), instead of "no devices" / "0 events" and exit 0."""
    monkeypatch.setattr(connect, "CONNACK_TIMEOUT_S", 1.0)
    monkeypatch.setattr(simulate_mod, "CONNECT_TIMEOUT_S", 1.0)
    each_fails_in_one_line(f"mqtt://127.0.0.1:{silent}/vt", fake_artifact,
                           "no CONNACK within 1 s (is it an MQTT broker?)")


def each_fails_in_one_line(url: str, artifact, words: str) -> None:
    """Every fleet command against ``url``: one line saying ``words``, within 8 s."""
    for name, args in commands(url, artifact).items():
        t0 = time.monotonic()
        res = CliRunner().invoke(fleet_group, args)
        one_line_error(res, words)
        assert time.monotonic() - t0 < 8, name


def test_status_and_tail_count_fail_on_a_silent_listener_within_10_s(silent):
    """The user's commands as they run: the default 10 s, and `tail --count 1` (which
    waited forever) exits too."""
    url = f"mqtt://127.0.0.1:{silent}/vt"
    procs = [subprocess.Popen([VITALEDGE, "fleet", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for args in (["status", "--broker", url], ["tail", "--broker", url, "--count", "1"])]
    try:
        for p in procs:
            out, err = p.communicate(timeout=40)
            assert p.returncode == 1 and out == "", (out, err)
            assert err.strip() == (f"Error: broker {url}: no CONNACK within 10 s (is it an "
                                   "MQTT broker?)"), err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_every_command_fails_when_the_broker_refuses_the_client(locked, fake_artifact):
    each_fails_in_one_line(f"mqtt://127.0.0.1:{locked.port}/vt", fake_artifact,
                           "connection refused: Not authorized")


def test_connect_subscriber_returns_a_connected_client(broker):  # noqa: F811
    got = threading.Event()
    client, _ = connect.subscriber(broker.url, ["vt/qa/x"], lambda t, b: got.set(),
                                   timeout_s=5)
    try:
        assert client.is_connected()
    finally:
        connect.stop(client)


# ---------------------------------------------------------------- 2. deploy to nobody


def test_deploy_all_with_no_online_device_fails(broker, fake_artifact):  # noqa: F811
    url = own_prefix(broker)
    publish(url, [("v1/s1/gone/status", b'{"state":"offline"}')], retain=True)
    try:
        for extra, want in ((["--site", "nosuch"], "no online devices at site nosuch"),
                            (["--site", "s1"], "no online devices at site s1"),
                            ([], "no online devices under this prefix")):
            res = CliRunner().invoke(fleet_group, ["deploy", fake_artifact, "--broker", url,
                                                   "--all", "--wait", "1", *extra])
            assert res.exit_code == 1, res.output
            assert res.output.strip() == f"Error: {want}", res.output
    finally:
        publish(url, [("v1/s1/gone/status", b"")], retain=True)


# ---------------------------------------------------------------- 3. absurd retained values


def test_row_flags_absurd_times_and_negative_counters():
    now = time.time()
    status = {"state": "online", "started_t": now + 10 * CLOCK_SKEW_S}
    stats = {"t": 1e300, "spool_dropped": -5, "spool_backlog": -1, "events_per_s": -0.5,
             "dropped_samples": -2, "last_seq": -3}
    r = device_row("s", "d", status, stats, now)
    assert r["invalid_fields"] == ["status.started_t", "stats.t", "stats.events_per_s",
                                   "stats.spool_dropped", "stats.dropped_samples",
                                   "stats.spool_backlog", "stats.last_seq"]
    assert all(r[k] is None for k in ("uptime_s", "last_seen_s", "events_per_s",
                                      "spool_dropped", "dropped_samples", "spool_backlog",
                                      "last_seq"))
    for t in (-1.0, now + 2 * CLOCK_SKEW_S):
        assert device_row("s", "d", {}, {"t": t}, now)["invalid_fields"] == ["stats.t"]
    # a clock a little ahead, zeros: valid
    ok = device_row("s", "d", {"state": "online", "started_t": now + 5},
              {"t": now + 5, "spool_dropped": 0, "spool_backlog": 0, "events_per_s": 0}, now)
    assert ok["invalid_fields"] == [] and ok["last_seen_s"] == 0 and ok["uptime_s"] == 0
    assert ok["spool_dropped"] == 0


def test_status_shows_absurd_retained_values_as_unknown(broker):  # noqa: F811
    url = own_prefix(broker)
    now = time.time()
    publish(url, [("v1/s1/odd/status", json.dumps(
                      {"state": "online", "started_t": now - 60}).encode()),
                  ("v1/s1/odd/stats", json.dumps(
                      {"t": 1e300, "spool_dropped": -5, "spool_backlog": 3,
                       "events_per_s": 1.5}).encode()),
                  ("v1/s1/ok/status", json.dumps({"state": "online"}).encode()),
                  ("v1/s1/ok/stats", json.dumps(
                      {"t": now - 2, "spool_dropped": 4, "spool_backlog": 0}).encode())],
            retain=True)
    try:
        res = CliRunner().invoke(fleet_group, ["status", "--broker", url, "--wait", "0.5",
                                               "--json"])
        assert res.exit_code == 0 and res.exception is None, res.output
        rows = {r["device"]: r for r in json.loads(res.stdout)}
        assert rows["odd"]["invalid_fields"] == ["stats.t", "stats.spool_dropped"]
        assert rows["odd"]["last_seen_s"] is None and rows["odd"]["spool_dropped"] is None
        assert rows["ok"]["invalid_fields"] == []
        assert "s1/odd: malformed retained message, shown as unknown: stats.t, " \
               "stats.spool_dropped" in res.stderr

        text = CliRunner().invoke(fleet_group, ["status", "--broker", url, "--wait", "0.5"])
        assert text.exit_code == 0 and text.exception is None, text.output
        head, *lines = text.stdout.splitlines()
        cols = head.split()
        cells = {ln.split()[0]: dict(zip(cols, ln.split(), strict=False)) for ln in lines}
        # SITE/DEVICE STATE MODEL VERSION UPTIME EV/S DROPS BACKLOG LAST SEEN
        odd, ok = cells["s1/odd"], cells["s1/ok"]
        assert (odd["DROPS"], odd["BACKLOG"], odd["LAST"]) == ("?", "3", "?"), text.stdout
        assert (ok["DROPS"], ok["BACKLOG"], ok["EV/S"]) == ("4", "0", "-"), text.stdout
        assert ok["LAST"] in ("2s", "3s", "4s"), text.stdout
        assert all(len(ln) < 200 for ln in text.stdout.splitlines())
    finally:
        publish(url, [(f"v1/s1/{d}/{k}", b"") for d in ("odd", "ok")
                      for k in ("status", "stats")], retain=True)


def read_packet(conn: socket.socket) -> tuple[int, bytes]:
    """One MQTT control packet: (type, body after the fixed header)."""
    head = conn.recv(1)
    if not head:
        raise OSError("closed")
    n, shift = 0, 0
    while True:
        b = conn.recv(1)[0]
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    body = b""
    while len(body) < n:
        body += conn.recv(n - len(body))
    return head[0] >> 4, body


@pytest.fixture(scope="module")
def denied():
    """A minimal MQTT 3.1.1 broker that accepts every client (CONNACK 0) and refuses every
    topic filter of every SUBSCRIBE (SUBACK 0x80, as a broker whose ACL denies it; the
    ACL file of mosquitto 2.0 grants the subscription and drops the messages instead).
    Yields its port."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(0.2)
    done = threading.Event()

    def serve(conn: socket.socket) -> None:
        try:
            while not done.is_set():
                kind, body = read_packet(conn)
                if kind == 1:  # CONNECT
                    conn.sendall(b"\x20\x02\x00\x00")
                elif kind == 8:  # SUBSCRIBE: packet id, then (length, filter, QoS) each
                    i, n = 2, 0
                    while i < len(body):
                        i += 2 + int.from_bytes(body[i:i + 2], "big") + 1
                        n += 1
                    conn.sendall(bytes([0x90, 2 + n]) + body[:2] + b"\x80" * n)
                elif kind == 12:  # PINGREQ
                    conn.sendall(b"\xd0\x00")
                elif kind == 14:  # DISCONNECT
                    break
        except (OSError, IndexError):
            pass
        finally:
            conn.close()

    def accept() -> None:
        while not done.is_set():
            try:
                conn = srv.accept()[0]
            except OSError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    done.set()
    t.join(5)
    srv.close()


def test_every_command_fails_when_the_broker_refuses_the_subscription(denied, fake_artifact):
    """The broker takes the client but its ACL refuses the topic: each command says so in
    one line (they listened to nothing: "no devices", "0 events", a deploy nobody heard)."""
    url = f"mqtt://127.0.0.1:{denied}/vt"
    for name, args in commands(url, fake_artifact).items():
        res = CliRunner().invoke(fleet_group, args)
        assert res.exit_code == 1 and isinstance(res.exception, SystemExit), (name, res.output)
        assert "no devices" not in res.stdout and "events," not in res.output, (name, res.output)
        (line,) = res.stderr.strip().splitlines()
        assert line.startswith(f"Error: broker {url}: the broker refused the subscription "
                               "to vt/v1/"), (name, line)
        assert "(Unspecified error)" in line, (name, line)
