"""Inputs of the daemon's fleet side refused at start, not failing later: MQTT URL options,
a sink given twice, another program's SQLite table, a binary token file, a --json folder;
a broker that cannot be reached is said once, shows in /health and in the run summary."""

from __future__ import annotations

import logging
import time

import pytest


@pytest.mark.parametrize("url, said", [
    ("mqtt://127.0.0.1:1883/vt?keepalive=70000", "keepalive 70000: expected 1-65535"),
    ("mqtt://127.0.0.1:0/vt", "port 0: expected 1-65535"),
    ("mqtt://127.0.0.1/vt?tls=maybe", "tls='maybe': expected bool"),
    ("mqtt://user:pw@127.0.0.1/vt", "credentials do not go in the URL"),
    ("mqtt://127.0.0.1/vt?ca_file=/no/such/ca.pem", "ca_file /no/such/ca.pem: no such file"),
    ("mqtt://127.0.0.1/vt?password_file=/no/pw", "password_file /no/pw: no such file"),
])
def test_mqtt_url_options_that_would_fail_later_are_refused(url, said):
    """keepalive 70000 killed the sink's thread at its first CONNECT (struct.error) while
    /health said ok; port 0 meant 1883, tls=maybe meant off, the URL's credentials were
    ignored, a missing ca_file was retried forever."""
    from vitaledge.device.stream.mqtt import parse_url

    with pytest.raises(ValueError, match="mqtt") as e:
        parse_url(url)
    assert said in str(e.value)
    assert not parse_url("mqtt://127.0.0.1/vt?tls=off").tls
    assert parse_url("mqtts://127.0.0.1/vt").tls


def test_a_sink_given_twice_is_refused(tmp_path):
    """--sink same.jsonl --sink same.jsonl wrote every event twice (device score: +P 50 %)."""
    from vitaledge.device.stream.daemon_config import DaemonConfig

    f = tmp_path / "same.jsonl"
    for out in ([str(f), str(f)], [str(f), f"jsonl:{f}"], ["stdout", "stdout"]):
        with pytest.raises(ValueError, match="given twice"):
            DaemonConfig(model="m", source="stdin", out=out)
    DaemonConfig(model="m", source="stdin", out=[str(f), str(tmp_path / "other.jsonl")])


def test_another_programs_events_table_is_refused_in_one_line(tmp_path):
    import sqlite3

    from vitaledge.device.stream.sinks import SqliteSink

    db = tmp_path / "other.db"
    with sqlite3.connect(db) as c:
        c.execute("create table events (a, b)")
        c.execute("insert into events values (1, 2)")
    before = db.read_bytes()
    with pytest.raises(ValueError, match="events table is not vitaledge's"):
        SqliteSink(db)
    # refused before anything is changed: its journal mode was switched to WAL first
    assert db.read_bytes() == before and not db.with_name("other.db-wal").exists()


@pytest.mark.parametrize("where", ["a_directory.db", "no/such/dir/events.db"])
def test_a_sink_that_cannot_be_opened_is_one_line(tmp_path, where):
    """A SQLite sink at a directory (or where no directory can be made) was a traceback
    from sqlite3; every sink's open error names the sink."""
    from vitaledge.device.stream.sinks import open_sink

    (tmp_path / "a_directory.db").mkdir()
    (tmp_path / "no").write_text("a file where a directory would be")
    path = tmp_path / where
    with pytest.raises(ValueError, match=rf"^sink {path}: cannot open {path}: "):
        open_sink(str(path))
    # an MQTT sink's spool that cannot be opened is named (sqlite3 names no file)
    with pytest.raises(ValueError, match=rf"^sink mqtt://127.0.0.1:1/p: cannot open: spool "
                                         rf"{tmp_path / 'a_directory.db'}: "):
        open_sink("mqtt://127.0.0.1:1/p", mqtt={"site": "s", "device": "d",
                                                "spool": str(tmp_path / "a_directory.db")})
    if where.startswith("no/"):  # the folder that could not be made is named
        with pytest.raises(ValueError, match=rf": Not a directory \({path.parent}\)$"):
            open_sink(f"jsonl:{path}")
    with pytest.raises(ValueError, match=rf"^sink jsonl:{path}: cannot open {path}: "):
        open_sink(f"jsonl:{path}")


def test_another_programs_database_is_left_as_it_was(tmp_path):
    """A database of other tables got vitaledge's events table and WAL mode added."""
    import sqlite3

    from vitaledge.device.stream.sinks import SqliteSink

    db = tmp_path / "app.db"
    with sqlite3.connect(db) as c:
        c.execute("create table patients (id, name)")
    before = db.read_bytes()
    with pytest.raises(ValueError, match=rf"{db}: another program's database \(tables "
                                         r"patients\): not an events database"):
        SqliteSink(db)
    assert db.read_bytes() == before and not db.with_name("app.db-wal").exists()


@pytest.mark.parametrize("sql, why", [
    ("create table patients (id, name)", r"another program's database \(tables patients\): "
                                         "not an MQTT spool"),
    ("create table meta (x, y)", r"its meta table is not vitaledge's \(no column key, value\)"),
])
def test_another_programs_database_is_no_spool(tmp_path, sql, why):
    """The MQTT sink's spool wrote its tables into any database (WAL mode too), or failed
    with sqlite's 'no such column: value' traceback on a table named like its own."""
    import sqlite3

    from vitaledge.device.stream.spool import Spool

    db = tmp_path / "app.db"
    with sqlite3.connect(db) as c:
        c.execute(sql)
    before = db.read_bytes()
    with pytest.raises(ValueError, match=rf"^spool {db}: {why}"):
        Spool(db, 1_000_000)
    assert db.read_bytes() == before and not db.with_name("app.db-wal").exists()
    ok = Spool(tmp_path / "new.db", 1_000_000)  # its own file, made and opened again
    ok.put([(7, "t", b"x")])
    ok.close()
    with sqlite3.connect(tmp_path / "new.db") as c:  # an operator's ANALYZE: sqlite_stat1
        c.execute("ANALYZE")
    assert Spool(tmp_path / "new.db", 1_000_000).last_seq() == 7


def test_a_damaged_events_database_given_with_append_is_named(tmp_path):
    """Its damaged page was met when the daemon read the last seq to number on from: a
    sqlite3.DatabaseError traceback."""
    from vitaledge.device.stream.sinks import SqliteSink

    db = tmp_path / "ev.db"
    sink = SqliteSink(db)
    sink.write([{"type": "beat", "seq": k, "time": k / 2, "sample": 180 * k, "class": "N"}
                for k in range(1, 2000)])
    sink.close()
    data = bytearray(db.read_bytes())
    data[4096:8192] = b"\xff" * 4096
    db.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"^sink {db}: cannot read its events \(database "
                                         r"disk image is malformed\)"):
        SqliteSink(db).last_seq()


@pytest.mark.parametrize("body, why", [
    (b"meeting notes\nsecond line without newline", "its first line is not JSON"),
    (b'{"name": "x"}\n', "its first line is not an event"),
    (b"no newline at all", "its first line is not an event"),
])
def test_append_adds_only_to_a_file_of_events(tmp_path, body, why):
    """--append into a text file cut its last line (taken for a torn event) and glued
    events to it."""
    from vitaledge.device.stream.sinks import open_sink

    f = tmp_path / "notes.jsonl"
    f.write_bytes(body)
    with pytest.raises(ValueError, match=rf"{f}: holds no vitaledge events \({why}\)"):
        open_sink(str(f), append=True)
    assert f.read_bytes() == body


def test_append_takes_a_file_of_events_and_one_torn_by_a_crash(tmp_path):
    from vitaledge.device.stream.sinks import open_sink

    first, second = b'{"type":"beat","seq":1,"run":"r"}\n', b'{"type":"beat","seq":2,"run":"s"}\n'
    for body, want in ((first, first + second), (b'{"type":"be', second)):  # torn: cut off
        f = tmp_path / "ev.jsonl"
        f.write_bytes(body)
        sink = open_sink(str(f), append=True)
        sink.write([{"type": "beat", "seq": 2, "run": "s"}])
        sink.close()
        assert f.read_bytes() == want


def test_a_binary_token_file_is_named(tmp_path):
    from vitaledge.device.stream.auth import TokenError, load_token

    p = tmp_path / "bin.tok"
    p.write_bytes(b"\xff\xfe")
    with pytest.raises(TokenError, match=rf"{p}: not a text file"):
        load_token(str(p), "NO_SUCH_ENV", "--api-token-file")


def test_status_says_a_token_was_refused_not_missing():
    """A wrong token got 'the API wants a bearer token (--api-token-file ...)'."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from vitaledge.device.stream.report import StatusError, fetch_health

    class Deny(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = HTTPServer(("127.0.0.1", 0), Deny)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_port}"
    try:
        with pytest.raises(StatusError, match="refused the bearer token given"):
            fetch_health(url, "wrong-token-0123456789abcdef")
        with pytest.raises(StatusError, match="wants a bearer token"):
            fetch_health(url, "")
    finally:
        srv.shutdown()


def test_the_json_folder_is_made_before_the_run(tmp_path):
    """--json into a missing folder failed after the whole run; sinks make theirs."""
    import click

    from vitaledge.device.cli_shared import json_out_ready

    json_out_ready(tmp_path / "a" / "b" / "s.json")
    assert (tmp_path / "a" / "b").is_dir()
    (tmp_path / "f").write_text("")
    with pytest.raises(click.ClickException, match="cannot create"):
        json_out_ready(tmp_path / "f" / "s.json")


def test_an_unreachable_broker_is_said_once_shown_in_health_and_counted(tmp_path, caplog,
                                                                        monkeypatch):
    """Connection refused was a debug line, /health said ok and the summary said nothing
    of 2,237 events dropped from the full spool."""
    from vitaledge.device.stream import mqtt_sink
    from vitaledge.device.stream.mqtt import parse_url
    from vitaledge.device.stream.report import format_summary

    monkeypatch.setattr(mqtt_sink, "DOWN_DEGRADED_S", 0.0)
    opts = parse_url(f"mqtt://127.0.0.1:1/vt?device=t&spool={tmp_path / 's.db'}"
                     "&spool_max_bytes=4000&drain_on_stop_s=0")
    with caplog.at_level(logging.DEBUG, logger="vitaledge.mqtt"):
        sink = mqtt_sink.MqttSink(opts)
        deadline = time.monotonic() + 10
        while "mqtt_unreachable" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        sink.write([{"type": "beat", "seq": i, "sample": i, "class": "N"} for i in range(200)])
        assert sink.trouble() and "broker unreachable" in sink.trouble()
        time.sleep(1.2)  # a retry or two
        sink.close()
    warned = [r for r in caplog.records if r.levelno == logging.WARNING
              and "mqtt_unreachable" in r.getMessage()]
    assert len(warned) == 1  # once per outage; the retries are debug lines
    st = sink.stats()
    assert st["spool_dropped"] > 0 and st["spool_backlog"] > 0
    summary = {"samples": 10, "signal_seconds": 1.0, "wall_seconds": 0.1,
               "events_this_run": {"beat": 200}, "sinks": [sink.path],
               "sink_delivery": {sink.path: {"spool_dropped": st["spool_dropped"],
                                             "spool_backlog": st["spool_backlog"],
                                             "acked": 0}}}
    text = format_summary(summary)
    assert f"{st['spool_dropped']} events dropped from the full spool" in text
