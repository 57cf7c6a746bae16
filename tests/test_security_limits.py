"""Issue 13: security claims that did not hold when tested — slow clients holding every
API slot, a one-character token from the environment, and unauthenticated ECG sources.
All traffic stays on 127.0.0.1; every wait is bounded."""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import wait_for

from vitaledge.device.stream import api
from vitaledge.device.stream.protocol import StatusEvent
from vitaledge.device.stream.sources import SourceError, open_source

TOKEN = "s3cret-source-token-0123"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str = "/health") -> int | None:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", path)
        return c.getresponse().status
    except OSError:
        return None
    finally:
        c.close()


def _closed_by_peer(s: socket.socket) -> bool:
    """True once the other side has closed ``s`` (EOF or reset); reads what it sent."""
    s.setblocking(False)
    try:
        while True:
            if not s.recv(4096):
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


# ---------------------------------------------------------------- slow clients


def test_slow_clients_are_closed_and_health_keeps_answering():
    srv = api.make_server("127.0.0.1", 0, lambda: {"status": "ok"}, lambda: b"",
                          lambda s, n: [], rate=0)
    api.serve_in_thread(srv)
    port = srv.server_address[1]
    slow: list[socket.socket] = []
    closed: set[int] = set()
    stop = threading.Event()

    def dribble():  # one byte per slow client every 0.5 s, for at most 30 s
        for _ in range(60):
            if stop.wait(0.5):
                return
            for k, s in enumerate(slow):
                if k in closed:
                    continue
                if _closed_by_peer(s):
                    closed.add(k)
                    continue
                try:
                    s.send(b"X")
                except OSError:
                    closed.add(k)

    try:
        for i in range(20):  # more than api.MAX_CLIENTS
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if i % 2:  # half send the request line at once and dribble the headers
                s.sendall(b"GET /health HTTP/1.1\r\n")
            slow.append(s)
        t = threading.Thread(target=dribble, daemon=True)
        t.start()
        time.sleep(2.5)  # the slow ones have waited longer than the eviction age (2 s)
        codes = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            codes.append(_get(port))
            if codes[-1] == 200:
                break
            time.sleep(0.5)
        assert codes[-1] == 200, f"/health with 20 slow clients connected: {codes}"
        # the server closes every slow client: the request bound is whole-request
        assert wait_for(lambda: len(closed) == len(slow), 20), \
            f"{len(slow) - len(closed)} slow clients still connected"
        stop.set()
        t.join(5)
        assert _get(port) == 200
    finally:
        stop.set()
        srv.shutdown()
        srv.server_close()
        for s in slow:
            s.close()


# ---------------------------------------------------------------- one token rule


def test_a_short_token_is_refused_wherever_it_comes_from(monkeypatch, tmp_path):
    from vitaledge.device.stream.daemon import Daemon
    from vitaledge.device.stream.daemon_config import DaemonConfig, api_token, source_token

    cfg = DaemonConfig(model="/nonexistent", source="stdin", fs=360, api_host="0.0.0.0",
                       api_port=8787)
    monkeypatch.setenv("VITALEDGE_API_TOKEN", "x")
    with pytest.raises(ValueError, match=r"^\$VITALEDGE_API_TOKEN: token shorter than 16 "
                                         r"characters \(1 given\)"):
        api_token(cfg)
    with pytest.raises(ValueError, match=r"VITALEDGE_API_TOKEN: token shorter than 16"):
        Daemon(cfg)  # refused before the (missing) model is looked at
    f = tmp_path / "tok"
    f.write_text("short\n")
    with pytest.raises(ValueError, match=rf"^api_token_file {re.escape(str(f))}: token "
                                         r"shorter than 16 characters \(5 given\)"):
        api_token(DaemonConfig(api_token_file=str(f)))
    monkeypatch.setenv("VITALEDGE_SOURCE_TOKEN", "y" * 15)
    with pytest.raises(ValueError, match=r"^\$VITALEDGE_SOURCE_TOKEN: token shorter than 16"):
        source_token(DaemonConfig())
    monkeypatch.setenv("VITALEDGE_API_TOKEN", "with a space 0123456789")
    with pytest.raises(ValueError, match="printable ASCII without spaces"):
        api_token(cfg)
    monkeypatch.setenv("VITALEDGE_API_TOKEN", f"  {TOKEN}\n")
    assert api_token(cfg) == TOKEN
    with pytest.raises(ValueError, match="API bearer token: token shorter than 16"):
        api.make_server("127.0.0.1", 0, dict, bytes, lambda s, n: [], token="x")


# ---------------------------------------------------------------- authenticated sources


@pytest.mark.parametrize("spec", ["tcp:0.0.0.0:0", "frames+tcp:0.0.0.0:0",
                                  "tcp:192.0.2.10:0", "frames+tcp:192.0.2.10:0"])
def test_a_listening_source_off_loopback_needs_a_token(spec):
    with pytest.raises(SourceError, match="not loopback.*inject ECG.*source token"):
        open_source(spec, fs=360.0).stop()


def test_daemon_and_cli_refuse_an_open_source_before_loading(monkeypatch):
    from vitaledge.device.cli import device_group
    from vitaledge.device.stream.daemon import Daemon
    from vitaledge.device.stream.daemon_config import DaemonConfig

    monkeypatch.delenv("VITALEDGE_SOURCE_TOKEN", raising=False)
    with pytest.raises(SourceError, match="not loopback"):
        Daemon(DaemonConfig(model="/nonexistent", source="frames+tcp:0.0.0.0:7000", fs=360))
    r = CliRunner().invoke(device_group, ["run", "--model", "/nonexistent", "--source",
                                          "tcp:0.0.0.0:7000", "--fs", "360"])
    assert r.exit_code == 1 and "source token" in r.output and "not loopback" in r.output


def test_tcp_source_reads_samples_only_after_the_token():
    port = _free_port()
    src = open_source(f"tcp:127.0.0.1:{port}", fs=360.0, token=TOKEN)
    items: list = []
    reader = threading.Thread(target=lambda: items.extend(src.chunks), daemon=True)
    reader.start()

    def client(first: bytes, value: float) -> None:
        """Send ``first`` and 100 samples, then wait (bounded) for the server to close."""
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            try:
                c.sendall(first + b"%.1f\n" % value * 100)
                c.shutdown(socket.SHUT_WR)
                while c.recv(4096):
                    pass
            except OSError:
                pass  # reset: the server closed with our samples unread

    try:
        client(b"", 9.0)  # no handshake: the first sample line is not a token
        client(b"AUTH wrong-token-0123456789\n", 8.0)
        client(b"AUTH " + b"a" * 300, 7.0)  # no end of line in sight
        client(f"AUTH {TOKEN}\n".encode(), 1.5)
        assert wait_for(lambda: src.stats()["auth_failures"] == 3, 10)
    finally:
        src.stop()
        reader.join(10)
    chunks = [i for i in items if isinstance(i, np.ndarray)]
    np.testing.assert_array_equal(np.concatenate(chunks), np.full(100, 1.5))
    events = [i.info for i in items if isinstance(i, StatusEvent)]
    assert events and events[0]["status"] == "auth_failed"
    assert events[0]["reason"] == "no_token" and events[0]["peer"] == "127.0.0.1"
    assert "hmac.compare_digest" in open(sys.modules["vitaledge.device.stream.auth"].__file__
                                         ).read()


def _sensor(port: int, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vitaledge.cli", "firmware", "sensor",
                           "--synth", "--minutes", "0.2", "--seed", "5", "--speed", "30",
                           "--port", f"tcp:127.0.0.1:{port}", *extra],
                          capture_output=True, text=True, timeout=120, env=env)


def test_sensor_board_sends_the_token_and_a_board_without_it_is_refused(tmp_path):
    import json

    env = {k: v for k, v in os.environ.items() if k != "VITALEDGE_SOURCE_TOKEN"}
    tok = tmp_path / "board.token"
    tok.write_text(TOKEN + "\n")
    port = _free_port()
    src = open_source(f"frames+tcp:127.0.0.1:{port}", fs=360.0, token=TOKEN)
    items: list = []
    reader = threading.Thread(target=lambda: items.extend(src.chunks), daemon=True)
    reader.start()
    try:
        anon = _sensor(port, env=env)  # a board without the token
        assert anon.returncode == 1, anon.stderr  # it says so, not exit 0
        assert re.search(r"Error: tcp:127\.0\.0\.1:\d+ closed the link \(.+\): [\d,]+ of "
                         r"[\d,]+ bytes were not sent, and what was may not have been read "
                         r"\(the daemon closes a board whose source token it refuses",
                         anon.stderr), anon.stderr
        assert wait_for(lambda: src.stats()["auth_failures"] == 1, 10)
        assert src.stats()["bytes_in"] == 0  # not one of its bytes reached the decoder
        board = _sensor(port, "--token-file", str(tok), env=env)
        assert board.returncode == 0, board.stderr
        summary = json.loads(board.stdout.splitlines()[-1])
        s = src.stats
        assert wait_for(lambda: s()["samples"] + s()["missing_samples"]
                         + s()["start_offset"] >= summary["samples"], 10)
    finally:
        src.stop()
        reader.join(10)
    assert s()["samples"] + s()["missing_samples"] + s()["start_offset"] == summary["samples"]
    assert s()["auth_failures"] == 1 and s()["crc_errors"] == 0
    assert sum(len(i) for i in items if isinstance(i, np.ndarray)) == s()["samples"] > 0
    assert [i.info["reason"] for i in items if isinstance(i, StatusEvent)
            and i.info.get("status") == "auth_failed"] == ["no_token"]


def test_sensor_cli_reads_the_token_from_the_environment_under_the_same_rule(monkeypatch):
    from vitaledge.firmware_sim.cli import firmware_group

    monkeypatch.setenv("VITALEDGE_SOURCE_TOKEN", "tiny")
    r = CliRunner().invoke(firmware_group, ["sensor", "--synth", "--minutes", "0.1",
                                            "--port", "tcp:127.0.0.1:9", "--wait", "0"])
    assert r.exit_code != 0
    assert "$VITALEDGE_SOURCE_TOKEN: token shorter than 16 characters (4 given)" in r.output
