"""Model integrity on hot reload, sink crash repair, a short kill -9 campaign (issue 8)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port

from vitaledge.device.stream.sinks import JsonlSink, SqliteSink


def _rehash(art: Path) -> None:
    """Make the manifest describe the (damaged) model file, as a careless tool would."""
    m = json.loads((art / "manifest.json").read_text())
    data = (art / "model.tflite").read_bytes()
    m["sha256"], m["size_bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    (art / "manifest.json").write_text(json.dumps(m))


def _edit(art: Path, fn) -> None:
    m = json.loads((art / "manifest.json").read_text())
    fn(m)
    (art / "manifest.json").write_text(json.dumps(m))


def _flip(art: Path, at: int) -> None:
    b = bytearray((art / "model.tflite").read_bytes())
    b[at % len(b)] ^= 0xFF
    (art / "model.tflite").write_bytes(bytes(b))


def _truncate(art: Path, keep: float) -> None:
    b = (art / "model.tflite").read_bytes()
    (art / "model.tflite").write_bytes(b[: int(len(b) * keep)])


def _emotion_task(m: dict) -> None:
    m["task"] = "emotion-ecg"


def _wrong_shape(m: dict) -> None:
    m["input"]["shape"] = [1, 200, 1]


def _wrong_dtype(m: dict) -> None:
    m["input"]["dtype"] = "float32"
    m["input"]["quantization"] = None


def _wrong_window(m: dict) -> None:
    m["signal"]["window"]["length"] = 200


def _labels(m: dict) -> None:
    m["labels"] = ["N", "S", "V"]


BAD = {
    "model bit-flipped": (lambda a: _flip(a, 1000), "sha256"),
    "model truncated": (lambda a: _truncate(a, 0.5), "truncated or replaced"),
    "model missing": (lambda a: (a / "model.tflite").unlink(), "missing"),
    "truncated model, manifest rehashed": (lambda a: (_truncate(a, 0.6), _rehash(a)),
                                           "interpreter refused"),
    "flatbuffer header flipped, rehashed": (lambda a: (_flip(a, 4), _flip(a, 5), _rehash(a)),
                                            "interpreter refused"),
    "empty model, rehashed": (lambda a: (_truncate(a, 0.0), _rehash(a)), "refused"),
    "manifest not JSON": (lambda a: (a / "manifest.json").write_text("{not json"),
                          "not valid JSON"),
    "manifest truncated": (lambda a: (a / "manifest.json").write_bytes(
        (a / "manifest.json").read_bytes()[:300]), "not valid JSON"),
    "manifest missing": (lambda a: (a / "manifest.json").unlink(), "no manifest"),
    "manifest unknown field": (lambda a: _edit(a, lambda m: m.update(evil=1)), "unknown"),
    "manifest missing field": (lambda a: _edit(a, lambda m: m.pop("sha256")), "missing"),
    "manifest schema from the future": (lambda a: _edit(a, lambda m: m.update(
        schema_version=99)), "schema_version"),
    "wrong task": (lambda a: _edit(a, _emotion_task), "emotion-ecg"),
    # refused when the manifest loads: its window no longer fits the input tensor
    "wrong input shape": (lambda a: _edit(a, _wrong_shape), "takes 200 per window"),
    "wrong input dtype": (lambda a: _edit(a, _wrong_dtype), "manifest says"),
    "wrong label count": (lambda a: _edit(a, _labels), "labels"),
    "different window spec": (lambda a: _edit(a, _wrong_window), "takes 187 per window"),
    "model_file escapes the directory": (lambda a: _edit(a, lambda m: m.update(
        model_file="../../etc/passwd")), "plain file name"),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(BAD))
def test_reload_refuses_each_bad_artifact_and_keeps_serving(converted, synth_dir, tmp_path,
                                                            kind, caplog):
    from vitaledge.device.io.records import read_record
    from vitaledge.device.stream.daemon import Daemon
    from vitaledge.device.stream.daemon_config import DaemonConfig

    out, _ = converted
    art = tmp_path / "art"
    shutil.copytree(out / "cpu-int8", art)
    d = Daemon(DaemonConfig(model=str(art), source="stdin", fs=360, out=[]))
    old = d.model
    x = read_record(synth_dir / "s000").signal
    before = d.pipeline.process(x[: 360 * 20])
    damage, message = BAD[kind]
    damage(art)
    assert d.reload() is False
    assert d.model is old and d.pipeline.model is old
    assert message in caplog.text, caplog.text[-500:]
    assert b'vitaledge_model_reloads_total{result="refused"} 1.0' in d.metrics()
    after = d.pipeline.process(x[360 * 20: 360 * 40])
    assert len(before) > 5 and len(after) > 5  # the old model keeps classifying
    assert d.health()["model_sha256"] == old.manifest.sha256


@pytest.mark.slow
def test_sighup_with_a_corrupt_model_keeps_the_daemon_serving(converted, synth_dir, tmp_path):
    from vitaledge.device.io.records import read_record

    out, _ = converted
    art = tmp_path / "art"
    shutil.copytree(out / "cpu-int8", art)
    port = free_port()
    ev = tmp_path / "ev.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "vitaledge.cli", "device", "run", "--model",
                             str(art), "--source", "stdin", "--fs", "360", "--sink", str(ev),
                             "--api-port", str(port)],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    x = read_record(synth_dir / "s001").signal
    try:
        proc.stdin.write("".join(f"{v:.4f}\n" for v in x[: 360 * 30]))
        proc.stdin.flush()
        _wait(lambda: _get(port, "/health")["last_seq"] >= 10)
        _flip(art, 2000)
        proc.send_signal(signal.SIGHUP)
        _wait(lambda: 'result="refused"} 1.0' in _get(port, "/metrics", raw=True))
        n = _get(port, "/health")["last_seq"]
        proc.stdin.write("".join(f"{v:.4f}\n" for v in x[360 * 30: 360 * 60]))
        proc.stdin.flush()
        _wait(lambda: _get(port, "/health")["last_seq"] >= n + 10)
        proc.stdin.close()
        err = proc.stderr.read()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "reload_refused" in err and "sha256" in err
    seqs = [json.loads(line)["seq"] for line in ev.read_text().splitlines()]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) > n + 10


def _get(port: int, path: str, raw: bool = False):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            body = r.read().decode()
    except OSError:
        return "" if raw else {"last_seq": -1}
    return body if raw else json.loads(body)


def _wait(cond, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached")


# ------------------------------------------------------------------ sinks after a crash


def test_jsonl_torn_tail_is_cut_on_restart_and_seq_continues(tmp_path):
    p = tmp_path / "ev.jsonl"
    s = JsonlSink(p)
    s.write([{"type": "beat", "seq": i} for i in (1, 2, 3)])
    s.close()
    with p.open("ab") as fh:  # a crash in the middle of the next batch
        fh.write(b'{"type":"beat","seq":4,"cla')
    s = JsonlSink(p)
    assert s.repaired_bytes == len(b'{"type":"beat","seq":4,"cla')
    assert s.last_seq() == 3
    s.write([{"type": "beat", "seq": 4}])
    s.close()
    assert [json.loads(x)["seq"] for x in p.read_text().splitlines()] == [1, 2, 3, 4]


def test_jsonl_torn_first_line_and_intact_file(tmp_path):
    p = tmp_path / "ev.jsonl"
    p.write_bytes(b'{"seq":1')
    assert JsonlSink(p).repaired_bytes == 8 and p.read_bytes() == b""
    p.write_bytes(b'{"seq":1}\n')
    assert JsonlSink(p).repaired_bytes == 0 and p.read_bytes() == b'{"seq":1}\n'


def test_jsonl_seq_continues_after_a_crash_right_after_rotation(tmp_path):
    p = tmp_path / "ev.jsonl"
    s = JsonlSink(p, max_bytes=200)
    s.write([{"type": "beat", "seq": i, "pad": "x" * 40} for i in range(1, 8)])
    assert p.with_name("ev.jsonl.1").exists() and p.read_bytes() == b""
    # no close(): the process died before writing anything after rotating
    assert JsonlSink(p).last_seq() == 7


def test_sqlite_uncommitted_batch_is_invisible_and_seq_continues(tmp_path):
    p = tmp_path / "ev.db"
    s = SqliteSink(p)
    s.write([{"type": "beat", "seq": i} for i in (1, 2)])
    db = sqlite3.connect(p)
    db.execute("BEGIN")
    db.execute("INSERT INTO events (seq, type, body) VALUES (3, 'beat', '{}')")
    db.close()  # closed without commit = the writer died mid-transaction
    s2 = SqliteSink(p)
    assert s2.last_seq() == 2
    with sqlite3.connect(p) as check:
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.slow
def test_short_kill9_campaign_loses_nothing_acknowledged(converted, synth_dir, tmp_path):
    from vitaledge.device.bench.reliability.crash import crash_campaign

    out, _ = converted
    r = crash_campaign(str(out / "cpu-int8"), str(synth_dir / "s002"), tmp_path / "crash",
                       kills=3, seed=3, min_s=0.5, max_s=1.5, max_jsonl_bytes=20_000,
                       speed="40")
    assert r["kills"] >= 2, r["per_kill"]
    assert r["acknowledged_events"] > 50
    assert r["jsonl_corrupt_lines"] == 0 and r["sqlite_integrity_failures"] == 0
    assert r["jsonl_duplicate_seq"] == 0 and r["sqlite_duplicate_seq"] == 0
    assert r["jsonl_seq_increasing"]
    assert r["acked_lost_or_changed_jsonl"] == 0 and r["acked_lost_or_changed_sqlite"] == 0
    assert r["final_returncode"] == 0


def test_crash_checker_sees_loss_and_corruption(tmp_path):
    """The campaign's readers catch what they are meant to catch."""
    from vitaledge.device.bench.reliability.events import read_jsonl_events, read_sqlite_events

    p = tmp_path / "events.jsonl"
    p.write_bytes(b'{"seq":1}\n{"seq":2}\ngarbage\n{"seq":2}\n')
    events, bad = read_jsonl_events(p)
    assert [e["seq"] for e in events] == [1, 2, 2] and len(bad) == 1
    s = SqliteSink(tmp_path / "events.db")
    s.write([{"type": "beat", "seq": 5}])
    s.close()
    rows, check = read_sqlite_events(tmp_path / "events.db")
    assert check == "ok" and rows == [{"type": "beat", "seq": 5}]
    assert os.path.getsize(tmp_path / "events.db") > 0
    np.testing.assert_equal(len(rows), 1)


# ------------------------------------------------------------------ signal faults

FS = 360


def _faulty(x: np.ndarray) -> tuple[np.ndarray, dict[str, tuple[int, int]]]:
    """``x`` with a NaN second, one inf sample, 2 s clipped at 4 mV and 5 s of lead-off."""
    x = x.copy()
    where = {"non_finite": (20 * FS, 21 * FS), "inf": (30 * FS, 30 * FS + 1),
             "saturation": (40 * FS, 42 * FS), "lead_off": (60 * FS, 65 * FS)}
    x[slice(*where["non_finite"])] = np.nan
    x[where["inf"][0]] = np.inf
    x[slice(*where["saturation"])] = 4.0
    x[slice(*where["lead_off"])] = 0.3
    return x, where


@pytest.mark.parametrize("chunk", [1, 7, 360, 100_000])
def test_signal_monitor_finds_each_fault_for_any_chunking(chunk, synth_dir):
    from vitaledge.device.dsp.signal_quality import Change, Fault, SignalMonitor
    from vitaledge.device.io.records import read_record

    x, where = _faulty(read_record(synth_dir / "s000").signal[: 90 * FS])
    mon = SignalMonitor(FS)
    parts = []
    for i in range(0, len(x), chunk):
        parts += mon.split(x[i:i + chunk])
    clean = sum(len(p) for p in parts if isinstance(p, np.ndarray))
    cut = sum(p.n for p in parts if isinstance(p, Fault))
    assert clean + cut == len(x)
    assert mon.counts == {"non_finite": FS + 1,
                          "saturation": 2 * FS - (mon.sat_n - 1),
                          "lead_off": 5 * FS - (mon.flat_n - 1), "out_of_range": 0}
    changes = [(c.kind, c.after) for c in parts if isinstance(c, Change)]
    assert changes == [("non_finite", None), ("signal_ok", "non_finite"),
                       ("non_finite", None), ("signal_ok", "non_finite"),
                       ("saturation", None), ("signal_ok", "saturation"),
                       ("lead_off", None), ("signal_ok", "lead_off")]


@pytest.mark.parametrize("chunk", [1, 360, 100_000])
def test_a_wild_sample_is_cut_out_and_the_detector_lives(chunk, synth_dir):
    """One sample of 1e300 (garbage on a text source): cut out as ``out_of_range``, and the
    detector after the monitor finds the same beats as on the record without it; fed to
    the detector, it overflowed the filters and blinded them for the rest of the stream."""
    from vitaledge.device.dsp.rpeaks import RPeakDetector
    from vitaledge.device.dsp.signal_quality import Fault, SignalMonitor
    from vitaledge.device.io.records import read_record

    x = read_record(synth_dir / "s000").signal[: 60 * FS]
    bad = x.copy()
    bad[20 * FS] = 1e300
    mon, det, beats, pos, base = SignalMonitor(FS), RPeakDetector(FS), [], 0, 0
    with np.errstate(over="raise", invalid="raise"):  # no overflow on the way
        for i in range(0, len(bad), chunk):
            for part in mon.split(bad[i:i + chunk]):
                if isinstance(part, np.ndarray):
                    beats += [base + p for p in det.process(part)]
                    pos += len(part)
                elif isinstance(part, Fault):  # the pipeline restarts after a gap
                    beats += [base + p for p in det.flush()]
                    pos += part.n
                    det, base = det.resumed(), pos
    beats += [base + p for p in det.flush()]
    assert mon.counts["out_of_range"] == 1
    ref = RPeakDetector(FS)
    clean = ref.process(x) + ref.flush()
    after = [b for b in clean if b > 25 * FS]
    assert len(after) > 40 and set(after) <= set(beats)


def test_signal_monitor_is_quiet_on_real_ecg(mitdb_dir):
    from vitaledge.device.dsp.signal_quality import SignalMonitor
    from vitaledge.device.io.records import read_record

    for rec in ("100", "108", "208"):
        mon = SignalMonitor(FS)
        mon.split(read_record(mitdb_dir / rec, annotator=None).signal)
        assert mon.counts == {"non_finite": 0, "saturation": 0, "lead_off": 0,
                              "out_of_range": 0}, rec


@pytest.mark.slow
def test_daemon_reports_faults_and_never_classifies_them(converted, synth_dir, tmp_path):
    """A recording with a NaN second, an inf sample, clipping and lead-off, replayed from
    CSV through the daemon: each fault is a status event where it starts and ends, no
    beat comes from it, and the beats after it are on the record's time axis."""
    from vitaledge.device.io.records import read_record
    from vitaledge.device.stream.daemon import Daemon
    from vitaledge.device.stream.daemon_config import DaemonConfig

    out, _ = converted
    x, where = _faulty(read_record(synth_dir / "s000").signal[: 90 * FS])
    csv = tmp_path / "faulty.csv"
    csv.write_text("".join(f"{v:.6g}\n" for v in x))
    ev = tmp_path / "ev.jsonl"
    Daemon(DaemonConfig(model=str(out / "cpu-int8"), source=f"replay:{csv}", fs=FS,
                        out=[str(ev)])).run(install_signals=False)
    events = [json.loads(line) for line in ev.read_text().splitlines()]
    status = [e["status"] for e in events if e["type"] == "status"]
    assert status.count("non_finite") == 2 and status.count("saturation") == 1
    assert status.count("lead_off") == 1 and status.count("signal_ok") == 4
    beats = [e for e in events if e["type"] == "beat"]
    for a, b in where.values():
        assert not [e for e in beats if a <= e["sample"] < b]
        assert [e for e in beats if b + 3 * FS <= e["sample"] < b + 8 * FS]  # recovers
    assert len(beats) > 60
    # the time axis survives the cuts: beats match the record's reference peaks
    rec = read_record(synth_dir / "s000")
    ref = rec.ann_samples[rec.ann_samples < 90 * FS]
    err = [np.min(np.abs(ref - e["sample"])) for e in beats]
    assert np.median(err) <= 0.05 * FS


@pytest.mark.slow
def test_a_source_below_the_models_rate_is_refused_with_a_status_event(converted, tmp_path):
    from vitaledge.device.stream.daemon import Daemon
    from vitaledge.device.stream.daemon_config import DaemonConfig
    from vitaledge.device.stream.pipeline import SignalError

    out, _ = converted
    ev = tmp_path / "ev.jsonl"
    with pytest.raises(SignalError, match="below the 125 Hz"):
        Daemon(DaemonConfig(model=str(out / "cpu-int8"), source="stdin", fs=100,
                            out=[str(ev)]))
    [status] = [json.loads(x) for x in ev.read_text().splitlines()]
    assert status["status"] == "sample_rate_mismatch" and status["source_fs"] == 100
    assert status["model_fs"] == 125 and status["seq"] == 1
    # a live source that goes quiet or sends at another rate: tests/test_source_watch.py


# ---- device status: a /health answer of the wrong shape ------------------------------------

@pytest.fixture
def health_server(tmp_path):
    """An HTTP server whose /health answers the bytes in ``tmp_path/health`` (as
    ``python -m http.server`` over a directory holding a file named health does)."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tmp_path / "health", f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("body, said", [
    ("[1, 2]", "expected a JSON object, got [1, 2]"),
    ("null", "expected a JSON object, got None"),
    ('{"status": "ok", "uptime_s": "x"}', "uptime_s is 'x', expected a number"),
    ('{"uptime_s": NaN}', "uptime_s is nan, expected a number"),
    ('{"last_seq": null}', "last_seq is None, expected a number"),
    ('{"degraded": 5}', "degraded is 5, expected a list or an object"),
    ('{"model_sha256": 7}', "model_sha256 is 7"),
    ('{"events_this_run": {"beat": "x"}}', "events_this_run is {'beat': 'x'}"),
    ('{"rhythm": {"beats": 3, "classes": {"N": []}}}', "rhythm.classes is {'N': []}"),
])
def test_status_refuses_a_malformed_health_answer_in_one_line(health_server, body, said):
    from conftest import error_line, invoke

    health, url = health_server
    health.write_text(body)
    line = error_line(invoke(["device", "status", "--api", url]))
    assert line.startswith(f"Error: {url}/health: malformed answer: ") and said in line, line
    assert error_line(invoke(["device", "status", "--api", url, "--json"])) == line


def test_status_prints_a_well_formed_health_answer(health_server):
    from conftest import invoke

    health, url = health_server
    health.write_text(json.dumps({"status": "ok", "degraded": [], "uptime_s": 65.0,
                                  "model": "m", "model_sha256": "ab" * 32, "source": "s",
                                  "fs": None, "samples_in": None, "last_seq": 0,
                                  "events_this_run": {}, "rhythm": {}, "error": None}))
    r = invoke(["device", "status", "--api", url])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[:2] == ["state: ok", "uptime: 1:05"]


@pytest.mark.parametrize("args,words", [
    (["soak", "--records", "r", "--hours", "nan"], "'--hours'"),
    (["soak", "--records", "r", "--hours", "0"], "'--hours'"),
    (["crash", "--record", "r", "--kills", "0"], "'--kills'"),
    (["load", "--record", "r", "--chunk-delay", "-1"], "'--chunk-delay'"),
    (["streams", "--record", "r", "--n", "0"], "--n"),
    (["streams", "--record", "r", "--n", "two"], "--n")])
def test_reliability_campaigns_refuse_bad_numbers(tmp_path, args, words):
    """Untyped floats and ints: --hours nan replayed nothing and passed, --n 0 or 'two'
    was a traceback."""
    from conftest import error_line, invoke

    line = error_line(invoke(["device", "reliability", args[0], "--model", tmp_path,
                              *args[1:]]))
    assert words in line, line


def test_a_failing_soak_is_one_line_and_exit_1(tmp_path, monkeypatch):
    """A speech model soaked on an ECG record: the daemon's DaemonFailure came out as a
    traceback."""
    from conftest import invoke

    from vitaledge.device.bench.reliability import soak
    from vitaledge.device.stream.daemon import DaemonFailure

    def fails(*_a, **_k):
        raise DaemonFailure("pipeline_error: AudioError: audio stream: sample rate 128 Hz is "
                            "below the 16000 Hz this model needs", {})

    monkeypatch.setattr(soak, "soak_campaign", fails)
    res = invoke(["device", "reliability", "soak", "--model", tmp_path, "--records", "r",
                  "--hours", "0.01"])
    assert res.exit_code == 1, res.output
    assert res.output.strip().splitlines()[-1].startswith("Error: pipeline_error: AudioError")


def test_a_soak_refuses_records_of_two_rates_and_leaves_no_folder(converted, synth_dir,
                                                                    tmp_path, monkeypatch):
    """A 250 Hz record looped at the first record's 360 Hz was a faster heart, soaked in
    silence; and every soak left its temporary folder behind."""
    import tempfile

    from conftest import error_line, invoke

    from vitaledge.firmware_sim.patients.ecg import synth_database

    [other] = synth_database(tmp_path / "250", n_records=1, minutes=1.0, seed=3, fs=250.0)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    out, _ = converted
    res = invoke(["device", "reliability", "soak", "--model", out / "cpu-int8", "--records",
                  f"{synth_dir / 's000'},{other.with_suffix('')}", "--hours", "0.01"])
    assert res.exit_code == 1, res.output
    line = error_line(res)
    assert f"{other.with_suffix('')}: record is 250 Hz, {synth_dir / 's000'} is 360 Hz" \
        in line, line
    assert list(scratch.iterdir()) == []
