"""Issue 17: the device in a fleet — the MQTT sink with its on-disk spool (store and
forward, at least once), presence (retained birth and Last Will), and ``vitaledge fleet``.

A real Eclipse Mosquitto broker runs on a free loopback port from a generated config (one
per test session; the tests that stop and restart a broker start their own). Without the
``mosquitto`` binary the tests are skipped, saying so; ``make test`` installs it from
Debian's packages when it is missing (.ci/system-packages). The daemon runs with a
stand-in model (its plumbing does not need a trained one) on a synthetic ECG record.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
from conftest import free_port, unavailable

pytest.importorskip("paho.mqtt.client", reason="paho-mqtt (the device extra) not installed")

from vitaledge.device.fleet.view import Dedup, fleet_status, tail  # noqa: E402
from vitaledge.device.stream import mqtt  # noqa: E402
from vitaledge.device.stream.mqtt_sink import MqttSink  # noqa: E402
from vitaledge.device.stream.spool import Spool  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FS = 360.0


# ---------------------------------------------------------------- the broker


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)),
        None)


class Broker:
    """mosquitto on 127.0.0.1:port with a generated config; ``persistence`` keeps the
    subscribers' sessions and queued messages across a restart."""

    def __init__(self, workdir: Path, persistence: bool = False):
        exe = mosquitto_binary()
        if exe is None:
            unavailable("mosquitto not found (make test installs it: apt-get install "
                        "mosquitto); the MQTT tests need a real broker")
        self.exe, self.dir, self.port = exe, workdir, free_port()
        self.dir.mkdir(parents=True, exist_ok=True)
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true",
                 f"persistence {'true' if persistence else 'false'}",
                 "max_queued_messages 0", "log_dest stderr"]
        if persistence:  # run as root, mosquitto drops to its own user: keep ours
            lines += [f"persistence_location {self.dir}/", "autosave_interval 1",
                      f"user {pwd.getpwuid(os.getuid()).pw_name}"]
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}/vt"

    def start(self) -> None:
        log = (self.dir / "mosquitto.log").open("a")
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError((self.dir / "mosquitto.log").read_text()) from None
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen within 5 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=5)
        self.proc = None


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("mosquitto"))
    yield b
    b.stop()


# ---------------------------------------------------------------- the daemon


RUNNER = '''
import sys, time
import numpy as np
from types import SimpleNamespace
from vitaledge.device.stream.daemon import Daemon
from vitaledge.device.stream.daemon_config import DaemonConfig

class FakeModel:
    def __init__(self):
        from vitaledge.device.model.manifest import SIGNAL_SPECS
        from vitaledge.device.dsp.windows import WindowSpec
        self.labels = ["N", "S", "V", "F", "Q"]
        self.manifest = SimpleNamespace(task="beat", labels=self.labels, sha256="ab" * 32,
            signal=SIGNAL_SPECS["beat"](window=WindowSpec.kachuee()),
            vitaledge_version="test", created="now")
    def predict(self, x):
        y = np.zeros((len(x), 5), np.float32); y[:, 0] = 1.0
        return y

Daemon.load_model = lambda self, path=None: FakeModel()
cfg = DaemonConfig.from_toml(sys.argv[1])
summary = Daemon(cfg).run()
import json
print(json.dumps({"sink_delivery": summary["sink_delivery"]}), file=sys.stderr)
'''


def ecg_csv(path: Path, seconds: float, seed: int = 3) -> Path:
    from vitaledge.firmware_sim.patients.ecg import synth_record

    x = synth_record(seconds / 60.0 + 0.05, seed=seed, fs=FS).signal
    x = (x[:, 0] if x.ndim == 2 else x)[:int(seconds * FS)]
    np.savetxt(path, x, fmt="%.5f")
    return path


def daemon_config(path: Path, record: Path, sink: str, speed: str = "max", **mqtt_keys) -> Path:
    table = "\n".join(f"{k} = {json.dumps(v)}" for k, v in mqtt_keys.items())
    path.write_text(f'model = "fake"\nsource = "replay:{record}"\nfs = {FS}\n'
                    f'speed = "{speed}"\nout = ["{sink}"]\n\n[mqtt]\n{table}\n')
    return path


def start_daemon(tmp_path: Path, config: Path) -> subprocess.Popen:
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    return subprocess.Popen([sys.executable, str(runner), str(config)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class Collector:
    """``fleet tail``'s library function in a thread: the events it hands on, in order."""

    def __init__(self, url: str, client_id: str = "", idle_s: float = 0.0,
                 timeout_s: float = 60.0):
        self.events: list[dict] = []
        self.stop = threading.Event()
        self.dedup: Dedup | None = None
        self.subscribed = threading.Event()
        self._t = threading.Thread(target=self._run, args=(url, client_id, idle_s, timeout_s),
                                   daemon=True)
        self._t.start()
        assert self.subscribed.wait(20), "the collector's subscription was not granted"

    def _run(self, url, client_id, idle_s, timeout_s):
        self.dedup = tail(url, self.events.append, client_id=client_id, stop=self.stop,
                          idle_s=idle_s, timeout_s=timeout_s,
                          on_subscribed=self.subscribed.set)

    def wait_for(self, pred, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self.events):
                return True
            time.sleep(0.05)
        return pred(self.events)

    def close(self) -> list[dict]:
        self.stop.set()
        self._t.join(timeout=5)
        return self.events


def seqs(events: list[dict], run: str | None = None) -> list[int]:
    return [e["seq"] for e in events if run is None or e["run"] == run]


def spool_rows(path: Path) -> tuple[list[int], int]:
    """(seqs still spooled, the highest seq ever spooled) of a spool file."""
    db = sqlite3.connect(str(path))
    try:
        rows = [r[0] for r in db.execute("SELECT seq FROM spool ORDER BY id")]
        last = db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        return rows, int(last[0]) if last else 0
    finally:
        db.close()


def spool_state(path: Path) -> tuple[list[int], int, int, int] | None:
    """(seqs still spooled, highest seq ever spooled, payload bytes, dropped) of a spool
    file, or None while the daemon has not created it yet."""
    if not path.exists():
        return None
    db = sqlite3.connect(str(path))
    try:
        rows = [r[0] for r in db.execute("SELECT seq FROM spool ORDER BY id")]
        size = db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM spool").fetchone()[0]
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        return rows, int(meta.get("last_seq", 0)), int(size), int(meta.get("dropped", 0))
    except sqlite3.OperationalError:  # tables not made yet
        return None
    finally:
        db.close()


# ---------------------------------------------------------------- units


def test_topics_urls_and_options():
    o = mqtt.parse_url("mqtts://broker.example:8884/acme/icu?device=pi7&site=ward3&rate=50",
                       {"username": "pi7", "spool": "/var/lib/vitaledge/s.db"})
    assert (o.host, o.port, o.prefix, o.tls, o.rate, o.username) == \
        ("broker.example", 8884, "acme/icu", True, 50.0, "pi7")
    assert o.ids == ("ward3", "pi7")
    assert mqtt.event_topic(o.prefix, *o.ids, "beat") == "acme/icu/v1/ward3/pi7/events/beat"
    assert mqtt.parse_topic("acme/icu", "acme/icu/v1/ward3/pi7/status") == \
        ("ward3", "pi7", ["status"])
    assert mqtt.parse_url("mqtt://h").port == 1883
    for fqdn, ids in (("pi7.ward3.example", ("ward3", "pi7")), ("pi7", ("default", "pi7")),
                      ("bed 4.icu/2.example", ("icu-2", "bed-4"))):
        with patch("socket.getfqdn", return_value=fqdn):  # the ids come from the hostname
            assert mqtt.parse_url("mqtt://h/p").ids == ids, fqdn
    for bad, msg in {"mqtt://h/p?colour=red": "unknown option 'colour'",
                     "mqtt://h/p?rate=fast": "rate='fast'", "mqtt:///p": "expected mqtt://",
                     "mqtt://h/p?rate=0": "rate 0.0"}.items():
        with pytest.raises(ValueError, match=msg):
            mqtt.parse_url(bad)
    with pytest.raises(ValueError, match="unknown keys"):
        mqtt.check_table({"pasword": "x"})
    with pytest.raises(ValueError, match="cert_file and key_file"):
        mqtt.parse_url("mqtt://h/p", {"cert_file": "c.pem"})


def test_daemon_config_takes_an_mqtt_table_and_refuses_bad_keys(tmp_path):
    from vitaledge.device.stream.daemon_config import DaemonConfig

    ok = tmp_path / "ok.toml"
    ok.write_text('out = ["mqtt://127.0.0.1:1883/vt"]\n[mqtt]\ndevice = "pi7"\nrate = 50\n')
    assert DaemonConfig.from_toml(ok).mqtt == {"device": "pi7", "rate": 50}
    bad = tmp_path / "bad.toml"
    bad.write_text('[mqtt]\nrate = "fast"\n')
    with pytest.raises(ValueError, match="mqtt rate"):
        DaemonConfig.from_toml(bad)


def test_spool_bound_drops_the_oldest_and_counts_them(tmp_path):
    s = Spool(tmp_path / "s.db", max_bytes=10_000)
    dropped = sum(s.put([(i, "t", f"{i:0100d}".encode())]) for i in range(1, 301))
    assert dropped > 0 and s.dropped == dropped and s.bytes <= 10_000
    kept = [int(r[2]) for r in s.after(0, 1000)]  # each payload says which event it is
    assert len(kept) == 300 - dropped and s.last_seq() == 300
    assert kept == list(range(dropped + 1, 301))  # the newest, the oldest gone
    s.close()
    again = Spool(tmp_path / "s.db", max_bytes=10_000)  # counts survive a restart
    assert (again.dropped, again.last_seq(), again.count) == (dropped, 300, 300 - dropped)
    again.close()


def test_dedup_hands_each_event_on_once():
    d = Dedup(keep=3)
    ev = [{"run": "a", "seq": i} for i in (1, 2, 2, 3, 1)] + [{"run": "b", "seq": 1}]
    assert [d.first_time("x", e) for e in ev] == [True, True, False, True, False, True]
    assert d.duplicates == 2 and d.first_time("y", {"run": "a", "seq": 1})


# ---------------------------------------------------------------- with a broker


def test_daemon_to_fleet_tail_every_beat_once_in_order(broker, tmp_path):
    """daemon → mosquitto → `vitaledge fleet tail` (the CLI, in a subprocess)."""
    record = ecg_csv(tmp_path / "rec.csv", 90)
    cfg = daemon_config(tmp_path / "d.toml", record, broker.url, device="pi1", site="lab",
                        spool=str(tmp_path / "spool.db"), rate=5000.0)
    tailer = subprocess.Popen([str(Path(sys.executable).with_name("vitaledge")), "fleet",
                               "tail", "--broker", broker.url, "--device", "pi1", "--idle",
                               "2", "--timeout", "60"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert tailer.stderr.readline().strip() == "subscribed"  # before anything is published
    d = start_daemon(tmp_path, cfg)
    _, err = d.communicate(timeout=60)
    assert d.returncode == 0, err
    out, terr = tailer.communicate(timeout=60)
    got = [json.loads(line) for line in out.splitlines()]
    beats = [e for e in got if e["type"] == "beat"]
    assert len(beats) > 80
    assert seqs(got) == list(range(1, len(got) + 1))  # every event, in order, once
    assert all(e["schema"] == 1 and e["device"] == "pi1" and e["site"] == "lab" for e in got)
    assert f"{len(got)} events" in terr
    assert spool_rows(tmp_path / "spool.db") == ([], len(got))  # all acknowledged
    rows = {r["device"]: r for r in fleet_status(broker.url, 0.5)}
    assert rows["pi1"]["state"] == "offline" and rows["pi1"]["reason"] == "stopped"
    assert rows["pi1"]["model_sha256"] == "ab" * 32 and rows["pi1"]["spool_backlog"] == 0


def test_broker_stopped_and_restarted_loses_no_acknowledged_event(tmp_path):
    """An outage mid-stream: events wait in the spool and drain after the restart; the
    consumer (a persistent session, kept by the broker's persistence) misses nothing."""
    b = Broker(tmp_path / "broker", persistence=True)
    try:
        record = ecg_csv(tmp_path / "rec.csv", 120)
        spool = tmp_path / "spool.db"
        cfg = daemon_config(tmp_path / "d.toml", record, b.url, speed="30", device="pi2",
                            spool=str(spool), rate=2000.0, drain_on_stop_s=20.0)
        c = Collector(b.url, client_id="test-tail-outage", timeout_s=60)
        d = start_daemon(tmp_path, cfg)
        assert c.wait_for(lambda ev: len(ev) >= 10)
        b.stop()
        time.sleep(1.0)
        backlog_during = spool_rows(spool)[0]
        b.start()
        _, err = d.communicate(timeout=60)
        assert d.returncode == 0, err
        rows, last = spool_rows(spool)
        assert rows == []  # the spool drained
        assert c.wait_for(lambda ev: len(ev) >= last, timeout=15)
        got = c.close()
        assert backlog_during, "the outage should have left events in the spool"
        assert sorted(seqs(got)) == list(range(1, last + 1))  # 0 acknowledged lost
        assert seqs(got) == sorted(seqs(got))  # in order, after de-duplication
    finally:
        b.stop()


def test_kill_9_while_publishing_loses_nothing_spooled(broker, tmp_path):
    """kill -9 with a backlog in the spool; the restarted daemon sends it (duplicates
    allowed, removed by seq), and numbers on after the last spooled seq. The broker
    publishes the Last Will: `fleet status` says offline, then online again."""
    record = ecg_csv(tmp_path / "rec.csv", 120)
    spool = tmp_path / "spool.db"
    cfg = daemon_config(tmp_path / "d.toml", record, broker.url, device="pi3",
                        spool=str(spool), rate=40.0, stats_interval_s=0.5)
    c = Collector(broker.url, timeout_s=60)
    d = start_daemon(tmp_path, cfg)
    assert c.wait_for(lambda ev: len(ev) >= 15)
    rows = {r["device"]: r for r in fleet_status(broker.url, 0.5)}
    assert rows["pi3"]["online"] and rows["pi3"]["uptime_s"] is not None
    d.send_signal(signal.SIGKILL)
    d.wait(timeout=5)
    left, last1 = spool_rows(spool)
    assert left and last1 > len(c.events)  # killed with a backlog
    time.sleep(0.3)
    rows = {r["device"]: r for r in fleet_status(broker.url, 0.5)}
    assert rows["pi3"]["state"] == "offline" and rows["pi3"]["reason"] == "connection lost"
    cfg2 = daemon_config(tmp_path / "d2.toml", ecg_csv(tmp_path / "short.csv", 10), broker.url,
                         device="pi3", spool=str(spool), rate=1000.0)
    d2 = start_daemon(tmp_path, cfg2)
    _, err = d2.communicate(timeout=60)
    assert d2.returncode == 0, err
    rows2, last2 = spool_rows(spool)
    assert rows2 == [] and last2 > last1
    assert c.wait_for(lambda ev: len(ev) >= last2, timeout=15)
    got = c.close()
    assert sorted(seqs(got)) == list(range(1, last2 + 1))  # nothing spooled was lost
    assert seqs(got) == sorted(seqs(got))
    assert len({e["run"] for e in got}) == 2


def test_spool_drops_are_reported_in_fleet_status(broker, tmp_path):
    """Broker unreachable and a small spool: the oldest are dropped, counted, logged, and
    the stats message carries the count once the broker is there."""
    spool = tmp_path / "spool.db"
    dead = mqtt.parse_url(f"mqtt://127.0.0.1:{free_port()}/vt",
                          {"device": "pi4", "spool": str(spool), "spool_max_bytes": 20_000,
                           "drain_on_stop_s": 0.0})
    sink = MqttSink(dead)
    for i in range(1, 401):
        sink.write([{"type": "beat", "time": i, "class": "N", "seq": i, "run": "r"}])
    dropped = sink.stats()["spool_dropped"]
    sink.close()
    assert dropped > 0
    live = mqtt.parse_url(broker.url, {"device": "pi4", "spool": str(spool),
                                       "stats_interval_s": 0.2})
    sink = MqttSink(live)
    try:
        deadline = time.monotonic() + 10
        while sink.stats()["spool_backlog"] and time.monotonic() < deadline:
            time.sleep(0.05)
        row: dict = {}
        deadline = time.monotonic() + 20  # a stats message after the drain, every 0.2 s
        while time.monotonic() < deadline:
            row = {r["device"]: r for r in fleet_status(broker.url, 0.5)}.get("pi4", {})
            if row.get("online") and row.get("spool_backlog") == 0:
                break
        assert row.get("online") and row["spool_dropped"] == dropped \
            and row["spool_backlog"] == 0, row
    finally:
        sink.close()


def test_closed_port_then_broker_appears_loses_nothing_and_spool_stays_bounded(tmp_path):
    """A network blackhole from the start: nothing listens on the sink's broker port
    (connection refused) while two daemons replay a record, pi5 with the default spool and
    pi6 with a small ``spool_max_bytes``. Every event waits in the spool, none acknowledged;
    pi6's spool stays within its bound, the oldest dropped and counted. Then mosquitto
    appears on that port: both spools drain, and a consumer (a persistent session made
    before the port closed, kept by the broker's persistence) gets every event that was
    spooled, once after de-duplication by seq and in order per device."""
    bound = 8_000
    b = Broker(tmp_path / "broker", persistence=True)
    daemons: list[subprocess.Popen] = []
    try:
        c = Collector(b.url, client_id="test-tail-closed-port", timeout_s=120)
        b.stop()  # from here on the port is closed: nothing listens
        t_down = time.monotonic()
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", b.port)) != 0  # refused
        record = ecg_csv(tmp_path / "rec.csv", 60)
        spools = {"pi5": tmp_path / "pi5.db", "pi6": tmp_path / "pi6.db"}
        for dev, extra in (("pi5", {}), ("pi6", {"spool_max_bytes": bound})):
            cfg = daemon_config(tmp_path / f"{dev}.toml", record, b.url, device=dev,
                                site="lab", spool=str(spools[dev]), rate=2000.0,
                                drain_on_stop_s=30.0, **extra)
            daemons.append(start_daemon(tmp_path, cfg))
        # the daemons replay the record and spool; wait until both spools stop growing
        state: dict = {}
        most6, stable_since, deadline = 0, None, time.monotonic() + 30
        while time.monotonic() < deadline:
            now = {dev: spool_state(p) for dev, p in spools.items()}
            if all(now.values()):
                most6 = max(most6, now["pi6"][2])
                if now != state:
                    state, stable_since = now, time.monotonic()
                elif now["pi5"][1] and time.monotonic() - stable_since > 2.0:
                    break
            time.sleep(0.1)
        assert all(d.poll() is None for d in daemons), "the daemons should keep running"
        rows5, last5, bytes5, dropped5 = state["pi5"]
        rows6, last6, bytes6, dropped6 = state["pi6"]
        assert last5 > 50 and rows5 == list(range(1, last5 + 1)) and dropped5 == 0  # all
        assert last6 == last5 and dropped6 > 0 and bytes6 <= bound and most6 <= bound
        assert rows6 == list(range(dropped6 + 1, last6 + 1))  # the newest kept, none acked

        b.start()  # the broker appears on the same port
        t_up = time.monotonic()
        while any(spool_state(p)[0] for p in spools.values()) and \
                time.monotonic() - t_up < 45:
            time.sleep(0.1)
        drained_s = time.monotonic() - t_up
        errs = {}
        for dev, d in zip(spools, daemons, strict=True):
            _, errs[dev] = d.communicate(timeout=45)
            assert d.returncode == 0, errs[dev]
        after = {dev: spool_state(p) for dev, p in spools.items()}
        assert after["pi5"][:2] == ([], last5) and after["pi6"][:2] == ([], last6)
        assert after["pi6"][3] == dropped6  # nothing dropped after the broker came
        expect = {"pi5": list(range(1, last5 + 1)), "pi6": list(range(dropped6 + 1, last6 + 1))}

        def by_device(ev):
            return {dev: [e["seq"] for e in ev if e["device"] == dev] for dev in spools}

        assert c.wait_for(lambda ev: all(len(v) >= len(expect[k])
                                         for k, v in by_device(ev).items()), timeout=30)
        got = by_device(c.close())
        assert got == expect  # every spooled event once, in order: 0 acknowledged lost
        full = [json.loads(line)["dropped_total"] for line in errs["pi6"].splitlines()
                if "mqtt_spool_full" in line]
        assert full and 0 < full[0] <= dropped6  # the drops logged (at most once a minute)
        delivery = [json.loads(line)["sink_delivery"] for line in errs["pi6"].splitlines()
                    if line.startswith('{"sink_delivery"')]
        assert [d["spool_dropped"] for d in delivery[0].values()] == [dropped6]  # summary
        rows = {r["device"]: r for r in fleet_status(b.url, 0.5)}
        assert rows["pi6"]["spool_dropped"] == dropped6 and rows["pi5"]["spool_dropped"] == 0
        assert rows["pi5"]["spool_backlog"] == rows["pi6"]["spool_backlog"] == 0
        print(f"\nclosed port for {t_up - t_down:.1f} s: pi5 spooled {last5} events "
              f"({bytes5} B), 0 acknowledged; pi6 (spool_max_bytes {bound}) kept "
              f"{len(rows6)} ({bytes6} B, at most {most6} B seen), dropped the oldest "
              f"{dropped6} (logged and in fleet status). Broker up: spools drained in "
              f"{drained_s:.1f} s; received pi5 {len(got['pi5'])}/{last5}, pi6 "
              f"{len(got['pi6'])}/{len(rows6)} kept, duplicates removed "
              f"{c.dedup.duplicates if c.dedup else 'n/a'}, acknowledged lost 0")
    finally:
        for d in daemons:
            if d.poll() is None:
                d.kill()
                d.wait(timeout=5)
        b.stop()


# ---------------------------------------------------------------- systemd notify


def notify_socket(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path if not path.startswith("@") else "\0" + path[1:])
    s.settimeout(0.05)
    return s


def datagrams(sock: socket.socket, seconds: float) -> list[tuple[float, str]]:
    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            out.append((time.monotonic(), sock.recv(4096).decode()))
        except TimeoutError:
            continue
    return out


def test_daemon_says_ready_then_pings_the_watchdog(tmp_path):
    """`device run` under a fake systemd: READY=1 once serving, WATCHDOG=1 every half
    WATCHDOG_USEC from the processing loop (here a live source with nothing to send),
    STOPPING=1 on SIGTERM."""
    sock = notify_socket(str(tmp_path / "notify"))
    cfg = tmp_path / "d.toml"
    cfg.write_text(f'model = "fake"\nsource = "stdin"\nfs = {FS}\n'
                   f'out = ["{tmp_path / "ev.jsonl"}"]\n')
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "200000"}
    d = subprocess.Popen([sys.executable, str(runner), str(cfg)], env=env, cwd=tmp_path,
                         stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        got = []
        deadline = time.monotonic() + 20
        while not any("READY=1" in m for _, m in got) and time.monotonic() < deadline:
            got += datagrams(sock, 0.2)
        window = datagrams(sock, 2.0)  # 20 pings due in it, one every 0.1 s
        got += window
        d.send_signal(signal.SIGTERM)
        d.wait(timeout=10)
        got += datagrams(sock, 0.3)
    finally:
        if d.poll() is None:
            d.kill()
        sock.close()
    states = [m.split("\n")[0] for _, m in got]
    assert "READY=1" in states, states
    # pings keep coming while nothing arrives: a count, not gaps measured at the receiver
    # (a loaded machine can hold either process back for a moment); pings that stop, or
    # come once a second instead of every 0.1 s, give at most a handful
    in_window = sum(m == "WATCHDOG=1" for _, m in window)
    assert in_window >= 8, (in_window, states)
    assert states[-1] == "STOPPING=1"


def test_watchdog_stops_when_the_pipeline_hangs(tmp_path, monkeypatch):
    """A pipeline stuck in a stage sends no WATCHDOG=1 (systemd would restart it); the
    abstract-namespace socket address (@name) works too."""
    from types import SimpleNamespace

    from vitaledge.device.dsp.windows import WindowSpec
    from vitaledge.device.model.manifest import SIGNAL_SPECS
    from vitaledge.device.stream.daemon import Daemon
    from vitaledge.device.stream.daemon_config import DaemonConfig

    hang, release = threading.Event(), threading.Event()

    class HangingModel:
        labels = ["N", "S", "V", "F", "Q"]
        manifest = SimpleNamespace(task="beat", labels=labels, sha256="0" * 64,
                                   signal=SIGNAL_SPECS["beat"](window=WindowSpec.kachuee()))

        def predict(self, x):
            if hang.is_set():
                release.wait(10)
            y = np.zeros((len(x), 5), np.float32)
            y[:, 0] = 1.0
            return y

    name = f"@vitaledge-test-{os.getpid()}"
    sock = notify_socket(name)
    monkeypatch.setenv("NOTIFY_SOCKET", name)
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    monkeypatch.setattr(Daemon, "load_model", lambda self, path=None: HangingModel())
    record = ecg_csv(tmp_path / "rec.csv", 60)
    d = Daemon(DaemonConfig(model="m", source=f"replay:{record}", fs=FS, speed="4",
                            out=[str(tmp_path / "ev.jsonl")]))
    t = threading.Thread(target=d.run, kwargs={"install_signals": False}, daemon=True)
    t.start()
    try:
        before = datagrams(sock, 1.5)
        hang.set()
        time.sleep(1.5)  # the next beat window blocks the worker
        sock.settimeout(0.05)
        while True:  # what was sent before the hang
            try:
                sock.recv(4096)
            except TimeoutError:
                break
        during = datagrams(sock, 1.0)
    finally:
        release.set()
        d.request_stop()
        t.join(timeout=10)
        sock.close()
    assert [m for _, m in before][0].startswith("READY=1")
    assert sum(m == "WATCHDOG=1" for _, m in before) >= 5
    assert not [m for _, m in during if m == "WATCHDOG=1"]
