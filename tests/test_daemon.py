"""The daemon: finite replay, SIGTERM drain, hot-reload refusal, drop counting, API."""

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import free_port

pytestmark = pytest.mark.slow


def test_replay_max_speed_processes_the_whole_record(converted, synth_dir, tmp_path):
    from vitaledge.device.io.aami import map_annotations
    from vitaledge.device.io.records import read_record
    from vitaledge.device.stream.daemon import Daemon
    from vitaledge.device.stream.daemon_config import DaemonConfig

    out, _ = converted
    cfg = DaemonConfig(model=str(out / "cpu-int8"), source=f"replay:{synth_dir / 's001'}",
                       out=[str(tmp_path / "ev.jsonl"), str(tmp_path / "ev.db")])
    summary = Daemon(cfg).run(install_signals=False)
    rec = read_record(synth_dir / "s001")
    ref, _ = map_annotations(rec.ann_samples, rec.ann_symbols)
    lines = (tmp_path / "ev.jsonl").read_text().splitlines()
    events = [json.loads(x) for x in lines]
    assert summary["samples"] == len(rec.signal)
    assert abs(len(events) - len(ref)) <= 3
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    import sqlite3

    with sqlite3.connect(tmp_path / "ev.db") as db:
        assert db.execute("SELECT COUNT(*), MAX(seq) FROM events").fetchone() == (
            len(events), len(events))
    # a second run into the same files is refused unless appended; appended, it
    # continues the sequence numbers found in the sinks
    with pytest.raises(ValueError, match="--append"):
        Daemon(cfg)
    cfg.append = True
    Daemon(cfg).run(install_signals=False)
    more = [json.loads(x) for x in (tmp_path / "ev.jsonl").read_text().splitlines()]
    assert more[len(events)]["seq"] == len(events) + 1


def test_sigterm_drains_flushes_and_exits_zero(converted, synth_dir, tmp_path):
    out, _ = converted
    port = free_port()
    ev = tmp_path / "ev.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vitaledge.cli", "device", "run", "--model",
         str(out / "cpu-int8"), "--source", f"replay:{synth_dir / 's002'}", "--speed", "20",
         "--sink", str(ev), "--api-port", str(port),
         "--json", str(tmp_path / "sum.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        health = None
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    health = json.loads(r.read())
                if health["last_seq"] >= 20:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert health is not None and health["last_seq"] >= 20
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            metrics = r.read().decode()
        assert "vitaledge_samples_total" in metrics and "vitaledge_beats_total" in metrics
        # named for what they measure; no *_created clutter
        assert "vitaledge_pipeline_seconds_count" in metrics
        assert "vitaledge_inference_seconds" not in metrics and "_created" not in metrics
        assert f'vitaledge_events_written_total{{sink="{ev}"}}' in metrics
        assert 'vitaledge_model_info{role="main"' in metrics and "process_resident" in metrics
        assert 'vitaledge_signal_fault_samples_total{kind="lead_off"}' in metrics
        assert "vitaledge_dropped_samples_total 0.0" in metrics
        assert "vitaledge_beat_check_dropped_total 0.0" in metrics  # clean synthetic ECG
        assert "vitaledge_beat_check_added_total 0.0" in metrics
        assert 'vitaledge_beat_check_adding{lead="MLII"} 1.0' in metrics
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/events?since=5&limit=3",
                                    timeout=10) as r:
            got = json.loads(r.read())["events"]
        assert [e["seq"] for e in got] == [6, 7, 8]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    summary = json.loads((tmp_path / "sum.json").read_text())
    # stderr ends with the summary in words, not a JSON blob
    assert " beat events" in err and "of signal" in err and f"→ {ev}" in err
    lines = ev.read_text().splitlines()
    assert len(lines) == summary["events"] >= 20
    assert all(json.loads(x)["seq"] == i + 1 for i, x in enumerate(lines))


def test_hot_reload_refuses_a_bad_model_and_keeps_serving(converted, tmp_path):
    from vitaledge.device.stream.daemon import Daemon
    from vitaledge.device.stream.daemon_config import DaemonConfig

    out, _ = converted
    art = tmp_path / "art"
    shutil.copytree(out / "cpu-int8", art)
    d = Daemon(DaemonConfig(model=str(art), source="stdin", fs=360, out=[]))
    old = d.model
    data = bytearray((art / "model.tflite").read_bytes())
    data[100] ^= 0x55
    (art / "model.tflite").write_bytes(bytes(data))
    assert d.reload() is False
    assert d.model is old and d.pipeline.model is old
    shutil.copy(out / "cpu-fp32" / "model.tflite", art / "model.tflite")
    shutil.copy(out / "cpu-fp32" / "manifest.json", art / "manifest.json")
    assert d.reload() is True
    assert d.pipeline.model.manifest.quantization == "none"
    assert b'result="refused"} 1.0' in d.metrics()


def test_full_queue_drops_are_counted_and_reported_as_gaps(converted, synth_dir, tmp_path):
    from vitaledge.device.io.records import read_record
    from vitaledge.device.stream.daemon import Daemon
    from vitaledge.device.stream.daemon_config import DaemonConfig

    out, _ = converted
    port = free_port()
    d = Daemon(DaemonConfig(model=str(out / "cpu-int8"), source=f"tcp:127.0.0.1:{port}",
                            fs=360, out=[str(tmp_path / "ev.jsonl")], queue_chunks=2))
    x = read_record(synth_dir / "s000").signal[: 360 * 120]
    payload = "".join(f"{v:.4f}\n" for v in x).encode()
    import threading

    slow = d.pipeline.process

    def slow_process(chunk):  # a pipeline slower than the input, whatever the machine
        time.sleep(0.002)
        return slow(chunk)

    d.pipeline.process = slow_process

    def send():
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(payload)
        time.sleep(1.0)
        d.request_stop()

    threading.Thread(target=send).start()
    summary = d.run(install_signals=False)
    dropped = summary["dropped_chunks"]
    events = [json.loads(x) for x in (tmp_path / "ev.jsonl").read_text().splitlines()]
    gaps = [e for e in events if e.get("status") == "gap"]
    assert sum(g["missing_samples"] for g in gaps) == d.dropped_samples
    assert dropped > 0, "a 2-chunk queue fed at socket speed should overflow"
    assert d.dropped_samples == summary["dropped_samples"]
    # every sample is either processed or counted as dropped, none twice
    assert summary["samples"] == len(x)
