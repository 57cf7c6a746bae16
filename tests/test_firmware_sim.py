"""The simulated sensor board (ADC, every fault type, pty and TCP end to end) and the
simulated microcontroller (TFLite Micro vs LiteRT, memory, export)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest

from vitaledge.device.stream.protocol import Gap, ProtocolReader, StatusEvent
from vitaledge.firmware_sim.adc import AdcModel
from vitaledge.firmware_sim.faults import FaultSpec
from vitaledge.firmware_sim.sensor import BoardConfig, SensorBoard, board_signal, load_signal


@pytest.fixture(scope="module")
def ecg():
    """One minute of synthetic ECG: (mV, fs)."""
    x, fs, _ = load_signal(None, synth_minutes=1.0, seed=5)
    return x, fs


class MemoryPort:
    """Collects what the board sends, one byte string per connection."""

    def __init__(self):
        self.links = [bytearray()]
        self.up = True

    def write(self, data: bytes) -> None:
        assert self.up, "the board wrote while disconnected"
        self.links[-1] += data

    def disconnect(self) -> None:
        self.up = False

    def reconnect(self) -> None:
        self.up = True
        self.links.append(bytearray())


def stream(x, fs, faults: str, seed: int = 1) -> tuple[SensorBoard, dict, list, ProtocolReader]:
    board = SensorBoard(x, fs, BoardConfig(faults=FaultSpec.parse(faults), seed=seed,
                                           speed=1e9))
    port = MemoryPort()
    summary = board.run(port)
    reader = ProtocolReader()
    items: list = []
    for link in port.links:
        items += reader.feed(bytes(link)) + reader.end()
    return board, summary, items, reader


def received(items: list, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(values in counts at their sample index, mask of indices that arrived)."""
    out, got, i = np.zeros(n), np.zeros(n, bool), 0
    for it in items:
        if isinstance(it, Gap):
            i += it.missing
        elif isinstance(it, np.ndarray):
            out[i:i + len(it)] = np.round(it * 200.0)
            got[i:i + len(it)] = True
            i += len(it)
    return out, got


def test_adc_quantizes_saturates_and_keeps_the_mitbih_step():
    adc = AdcModel(bits=12, gain=200.0, baseline=0)
    x = np.array([0.0, 0.0049, 0.0051, -1.0, 10.235, 11.0, -11.0])
    c = adc.convert(x)
    assert c.tolist() == [0, 1, 1, -200, 2047, 2047, -2048]
    assert adc.saturated(c).tolist() == [False] * 4 + [True] * 3
    mitbih = (np.arange(-1024, 1024) / 200.0)  # every 11-bit MIT-BIH value, in mV
    np.testing.assert_array_equal(adc.convert(mitbih) / 200.0, mitbih)
    assert AdcModel(bits=8, gain=10.0, baseline=5).convert(np.array([100.0]))[0] == 127
    with pytest.raises(ValueError, match="bits"):
        AdcModel(bits=20)


def test_fault_spec_parses_and_refuses_what_it_does_not_know():
    f = FaultSpec.parse("corrupt=0.01,leadoff=2,drift=-40")
    assert (f.corrupt, f.leadoff, f.drift) == (0.01, 2, -40.0)
    assert FaultSpec.parse(str(f)) == f
    for bad, msg in [("flip=0.1", "NAME=VALUE"), ("drop=2", "probability"),
                     ("leadoff=1.5", "whole number"), ("noise=-1", "negative"),
                     ("drop", "NAME=VALUE"), ("drop=0.1,drop=0.9", "drop given twice")]:
        with pytest.raises(ValueError, match=msg):
            FaultSpec.parse(bad)


def test_sensor_refuses_a_lead_for_a_synthetic_patient():
    """--synth --lead V5 was taken and ignored (--record REC --lead V5 is checked)."""
    from conftest import error_line, invoke

    line = error_line(invoke(["firmware", "sensor", "--synth", "--lead", "V5", "--port",
                              "tcp:127.0.0.1:9", "--wait", "0"]))
    assert "--lead: picks a lead of --record; --synth makes one lead" in line, line


def test_faults_are_reproducible_from_the_seed(ecg):
    x, fs = ecg
    spec = "corrupt=0.02,drop=0.01,garbage=0.01,noise=1,leadoff=1"
    a = [stream(x[:20000], fs, spec, seed=4)[1] for _ in range(2)]
    c = stream(x[:20000], fs, spec, seed=5)[1]
    for s in a + [c]:
        s.pop("wall_seconds")
    assert a[0] == a[1]
    assert a[0] != c


@pytest.mark.parametrize("fault,counter,decoded", [
    ("drop", "frames_dropped", "lost_frames"),
    ("corrupt", "frames_corrupted", "lost_frames"),
    ("truncate", "frames_truncated", "lost_frames"),
    ("dup", "frames_duplicated", "duplicates"),
])
def test_each_link_fault_is_counted_and_nothing_damaged_gets_through(ecg, fault, counter,
                                                                      decoded):
    x, fs = ecg
    board, summary, items, reader = stream(x, fs, f"{fault}=0.03")
    s = reader.stats()
    assert summary[counter] > 30  # ~3 % of ~2,300 frames
    assert s[decoded] + (s["first_seq"] if decoded == "lost_frames" else 0) == summary[counter]
    n = len(board.sig.counts)
    vals, got = received(items, n)
    np.testing.assert_array_equal(vals[got], board.sig.counts[got])  # exact where arrived
    assert s["samples"] + s["missing_samples"] + s["start_offset"] == n
    if fault == "dup":
        assert got.all() and s["lost_frames"] == 0


def test_all_link_faults_together_are_each_accounted_for(ecg):
    x, fs = ecg
    board, summary, items, reader = stream(
        x, fs, "drop=0.01,corrupt=0.02,truncate=0.01,dup=0.01,garbage=0.01,disconnect=1", seed=9)
    s = reader.stats()
    lost = (summary["frames_dropped"] + summary["frames_damaged"]
            + summary["frames_lost_disconnected"])
    assert s["lost_frames"] + s["first_seq"] == lost
    assert s["duplicates"] == summary["frames_duplicated"]
    vals, got = received(items, len(board.sig.counts))
    np.testing.assert_array_equal(vals[got], board.sig.counts[got])


def test_garbage_bursts_are_skipped_and_counted(ecg):
    x, fs = ecg
    board, summary, items, reader = stream(x, fs, "garbage=0.05")
    s = reader.stats()
    assert summary["garbage_bursts"] > 100
    assert s["lost_frames"] == 0 and s["samples"] == len(board.sig.counts)
    assert s["garbage_bytes"] == summary["garbage_bytes"]


def test_clock_drift_is_measured_from_the_timestamps(ecg):
    x, fs = ecg
    board, _, _, reader = stream(x, fs, "drift=300")
    assert len(board.sig.counts) == int((len(x) - 1) * 1.0003) + 1
    assert reader.stats()["clock_ppm"] == pytest.approx(300, abs=5)
    assert stream(x, fs, "none")[3].stats()["clock_ppm"] == pytest.approx(0, abs=1)


def test_lead_off_is_flagged_withheld_and_reported(ecg):
    x, fs = ecg
    board, summary, items, reader = stream(x, fs, "leadoff=2", seed=2)
    eps = summary["episodes"]["leadoff"]
    assert len(eps) == 2
    for e in eps:
        seg = board.sig.counts[e["first_sample"]:e["first_sample"] + e["samples"]]
        assert np.all(seg == (2047 if e["mode"] == "rail" else 0))
    status = [i.info["status"] for i in items if isinstance(i, StatusEvent)]
    assert status.count("lead_off") == 2 and status.count("lead_on") == 2
    gaps = [i for i in items if isinstance(i, Gap)]
    assert [g.reason for g in gaps] == ["lead_off", "lead_off"]
    assert all(g.fill is None for g in gaps)  # detection restarts after lead-off
    for g, e in zip(gaps, eps, strict=True):  # whole frames are withheld
        assert e["samples"] <= g.missing <= e["samples"] + 2 * 10
    assert reader.stats()["lead_off_samples"] == sum(g.missing for g in gaps)


def test_muscle_noise_only_inside_its_bursts(ecg):
    x, fs = ecg
    cfg = BoardConfig(faults=FaultSpec.parse("noise=2"), seed=3)
    noisy = board_signal(x, fs, cfg)
    clean = board_signal(x, fs, BoardConfig(seed=3))
    d = (noisy.counts.astype(float) - clean.counts) / 200.0
    inside = np.zeros(len(d), bool)
    for e in noisy.episodes["noise"]:
        a, b = int(e["start_s"] * fs), int(e["stop_s"] * fs)
        inside[a:b] = True
        assert np.sqrt(np.mean(d[a:b] ** 2)) == pytest.approx(e["rms_mv"], rel=0.25)
    assert not d[~inside].any()


def test_disconnect_loses_frames_then_hello_and_a_reported_hole(ecg):
    x, fs = ecg
    board, summary, items, reader = stream(x, fs, "disconnect=1", seed=6)
    s = reader.stats()
    (ep,) = summary["episodes"]["disconnect"]
    assert summary["frames_lost_disconnected"] > 0
    assert s["lost_frames"] + s["first_seq"] == summary["frames_lost_disconnected"]
    gaps = [i for i in items if isinstance(i, Gap)]
    assert len(gaps) == 1 and gaps[0].fill is None
    assert gaps[0].missing == pytest.approx((ep["stop_s"] - ep["start_s"]) * fs, abs=20)
    assert s["samples"] + s["missing_samples"] + s["start_offset"] == len(board.sig.counts)


def _sensor(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vitaledge.cli", "firmware", "sensor", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_pty_end_to_end_serial_source(ecg):
    """The board on a real pty, the daemon's serial source reading it with pyserial."""
    from vitaledge.device.stream.sources import open_source

    proc = _sensor(["--synth", "--minutes", "0.5", "--seed", "3", "--speed", "30",
                    "--faults", "corrupt=0.02,leadoff=1"])
    try:
        path = proc.stdout.readline().strip()
        assert path.startswith("/dev/")
        src = open_source(f"serial:{path}")
        items = list(src.chunks)  # ends when the board closes the port
        summary = json.loads(proc.stdout.readline())
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    assert src.fs == 360.0
    s = src.stats()
    assert s["lost_frames"] + s["first_seq"] == summary["frames_corrupted"] > 0
    x, fs, _ = load_signal(None, 0.5, 3)
    sig = board_signal(x, fs, BoardConfig(faults=FaultSpec.parse("leadoff=1"), seed=3))
    vals, got = received(items, len(sig.counts))
    np.testing.assert_array_equal(vals[got], sig.counts[got])
    assert (s["samples"] + s["missing_samples"] + s["start_offset"] == summary["samples"]
            == len(sig.counts))
    assert {"lead_off", "lead_on"} <= {i.info["status"] for i in items
                                       if isinstance(i, StatusEvent)}


def test_tcp_board_reconnects_and_the_hole_is_reported():
    from vitaledge.device.stream.sources import open_source

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = open_source(f"frames+tcp:127.0.0.1:{port}", fs=360.0)
    proc = _sensor(["--synth", "--minutes", "0.5", "--seed", "4", "--speed", "30",
                    "--port", f"tcp:127.0.0.1:{port}", "--faults", "disconnect=1"])

    def stop_after_board():
        proc.wait(timeout=60)
        threading.Timer(0.5, src.stop).start()

    threading.Thread(target=stop_after_board, daemon=True).start()
    try:
        items = list(src.chunks)
        out = proc.stdout.read().splitlines()
    finally:
        proc.kill()
    summary = json.loads(out[-1])
    s = src.stats()
    assert out[0] == f"tcp:127.0.0.1:{port}"
    assert s["lost_frames"] + s["first_seq"] == summary["frames_lost_disconnected"] > 0
    gaps = [i for i in items if isinstance(i, Gap)]
    assert len(gaps) == 1 and gaps[0].reason == "lost_frames" and gaps[0].fill is None
    assert s["samples"] + s["missing_samples"] + s["start_offset"] == summary["samples"]


def test_sensor_cli_refuses_bad_options():
    from click.testing import CliRunner

    from vitaledge.firmware_sim.cli import firmware_group

    r = CliRunner().invoke(firmware_group, ["sensor", "--synth", "--faults", "explode=1"])
    assert r.exit_code != 0 and "NAME=VALUE" in r.output
    r = CliRunner().invoke(firmware_group, ["sensor"])
    assert r.exit_code != 0 and "--record PATH or --synth" in r.output
    r = CliRunner().invoke(firmware_group, ["sensor", "--synth", "--port", "udp:x:1"])
    assert r.exit_code != 0 and "expected pty or tcp:HOST:PORT" in r.output


@pytest.mark.slow
def test_daemon_over_pty_with_faults(converted, tmp_path):
    """daemon <- pty <- board: beats found, lost frames concealed and reported, none
    crash the daemon."""
    from vitaledge.device.eval.scoring import score_detections
    from vitaledge.device.stream.daemon import Daemon
    from vitaledge.device.stream.daemon_config import DaemonConfig
    from vitaledge.firmware_sim.patients.ecg import synth_record

    out, _ = converted
    proc = _sensor(["--synth", "--minutes", "1", "--seed", "8", "--speed", "20",
                    "--faults", "corrupt=0.01,garbage=0.01,leadoff=1"])
    try:
        path = proc.stdout.readline().strip()
        cfg = DaemonConfig(model=str(out / "cpu-int8"), source=f"serial:{path}",
                           out=[str(tmp_path / "ev.jsonl")])
        summary = Daemon(cfg).run(install_signals=False)
        board = json.loads(proc.stdout.readline())
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    events = [json.loads(x) for x in (tmp_path / "ev.jsonl").read_text().splitlines()]
    beats = [e["sample"] for e in events if e["type"] == "beat"]
    gaps = [e for e in events if e.get("status") == "gap"]
    src = summary["source_stats"]
    assert src["lost_frames"] + src["first_seq"] == board["frames_corrupted"]
    assert sum(e["concealed"] for e in gaps) == summary["source_stats"]["concealed_gaps"] > 0
    assert [e["reason"] for e in gaps if not e["concealed"]] == ["lead_off"]
    ref = synth_record(minutes=1.0, seed=8).beat_samples
    lo = board["episodes"]["leadoff"][0]
    a, b = lo["first_sample"], lo["first_sample"] + lo["samples"]
    def outside(v):  # the detector relearns after lead-off: leave that stretch out
        v = np.asarray(v)
        return v[(v < a - 720) | (v > b + 720)]

    sc = score_detections(outside(ref), outside(beats), 360.0)
    assert sc.sensitivity > 0.97 and sc.ppv > 0.97


def test_mac_count_of_known_layers():
    from vitaledge.firmware_sim.mcu import mac_count

    ops = [{"index": 0, "op": "CONV_2D", "inputs": [{"shape": [1, 1, 100, 1]},
                                                   {"shape": [8, 1, 5, 1]}],
            "outputs": [{"shape": [1, 1, 50, 8]}]},
           {"index": 1, "op": "DEPTHWISE_CONV_2D", "inputs": [{"shape": [1, 1, 50, 8]},
                                                              {"shape": [1, 1, 3, 8]}],
            "outputs": [{"shape": [1, 1, 50, 8]}]},
           {"index": 2, "op": "FULLY_CONNECTED", "inputs": [{"shape": [1, 400]},
                                                            {"shape": [5, 400]}],
            "outputs": [{"shape": [1, 5]}]},
           {"index": 3, "op": "SOFTMAX", "inputs": [{"shape": [1, 5]}],
            "outputs": [{"shape": [1, 5]}]}]
    total, per = mac_count(ops)
    assert [p["macs"] for p in per] == [50 * 8 * 5, 50 * 8 * 3, 5 * 400, 0]
    assert total == 2000 + 1200 + 2000


@pytest.mark.slow
def test_mcu_tflm_matches_litert_and_fits(converted, synth_dir):
    from vitaledge.firmware_sim.mcu import format_report, simulate_mcu
    from vitaledge.firmware_sim.profiles import get_profile

    out, _ = converted
    r = simulate_mcu(out / "micro-int8", get_profile("cortex-m4-256k"), synth_dir, n_beats=80)
    man = json.loads((out / "micro-int8" / "manifest.json").read_text())
    assert r["memory"]["arena_bytes"] == man["extra"]["micro"]["arena_bytes"]
    assert r["agreement"]["beats"] == 80 and r["agreement"]["output"] == "logits"
    assert "SOFTMAX" not in {op["op"] for op in r["ops"]}
    for ref in r["agreement"]["litert"].values():  # the int8 logits, reference and XNNPACK
        assert ref["argmax_agreement"] >= 0.98 and ref["max_diff_steps"] <= 1
        assert len(ref["mismatches"]) == round((1 - ref["argmax_agreement"]) * 80)
        assert "logits_max_diff_steps" not in ref  # no softmax input to look at any more
    assert r["memory"]["ram_fits"] and r["timing"]["macs"] > 0
    assert r["memory"]["ram_bytes"] == (r["memory"]["arena_bytes"] +
                                        r["memory"]["ring_buffer_bytes"] +
                                        r["memory"]["window_buffer_bytes"] +
                                        sum(r["memory"]["patient_memory_bytes"].values()))
    text = format_report(r)
    assert "ESTIMATE" in text and "fits yes" in text and "int8 logits" in text
    with pytest.raises(ValueError, match="unknown MCU profile"):
        get_profile("pdp-11")


@pytest.mark.slow
def test_export_bundle_compiles(converted, tmp_path):
    import shutil

    from vitaledge.firmware_sim.export import export_firmware

    out, _ = converted
    files = {f.name for f in export_firmware(out / "micro-int8", tmp_path / "fw")}
    assert {"model_data.cc", "model_data.h", "op_resolver.cc", "model_config.h", "README.md",
            "manifest.json"} <= files
    info = json.loads((tmp_path / "fw" / "export.json").read_text())
    assert info["arena_bytes"] >= info["arena_measured"] > 0
    cfg = (tmp_path / "fw" / "model_config.h").read_text()
    assert f"ARENA_BYTES {info['arena_bytes']}" in cfg and "OUTPUT_IS_LOGITS 1" in cfg
    assert "**logits**" in (tmp_path / "fw" / "README.md").read_text()
    if shutil.which("gcc"):
        r = subprocess.run(["gcc", "-x", "c++", "-std=c++17", "-c", "model_data.cc", "-o",
                            "/dev/null"], cwd=tmp_path / "fw", capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    with pytest.raises(ValueError, match="int8"):
        export_firmware(out / "cpu-fp32", tmp_path / "x")


def test_a_tflm_crash_while_searching_the_arena_is_a_size_too_small(monkeypatch):
    """TFLite Micro segfaults on some arenas too small for some models (resnet1d-rr at
    24,576 bytes) instead of reporting them; convert --target micro, firmware mcu and
    firmware export then died silently with rc 139. Each size is tried in a child."""
    import os
    import signal

    from vitaledge.firmware_sim import tflm

    def crashes_below_40k(content, arena, sample):
        if arena < 40_000:
            if arena > 20_000:
                os.kill(os.getpid(), signal.SIGSEGV)  # what TFLM does there
            return False  # what TFLM says below that
        return True

    # fault injection: the module's private runner replaced by one that crashes like TFLM
    monkeypatch.setattr(tflm, "_micro_runtime", lambda: None)
    monkeypatch.setattr(tflm, "_runs_here", crashes_below_40k)
    assert tflm.measure_arena(b"model", None, upper=64 * 1024) == 40_192
    assert tflm.runs_in_arena(b"model", 30_000, None) is False
    assert tflm.runs_in_arena(b"model", 45_000, None) is True


def test_serial_source_refuses_a_board_that_restarts_at_another_rate():
    """The serial source takes its rate from the board's first hello and builds the daemon
    for it; a board that reboots announcing 250 Hz is a config_mismatch and its samples are
    dropped and counted, not read as 360 Hz samples (beat times and heart rate 1.44x off)."""
    import os
    import tty

    from vitaledge.device.stream.protocol import FrameEncoder, Hello
    from vitaledge.device.stream.sources import open_source

    master, slave = os.openpty()
    tty.setraw(slave)
    first, second = FrameEncoder(), FrameEncoder()  # a reboot: sequence starts again
    z = np.zeros(50, np.int16)
    data = (first.hello(Hello(360.0, 1, 12, 200.0, 0, 10), 0) + first.samples(0, z, 0, 0)
            + second.hello(Hello(250.0, 1, 12, 200.0, 0, 10), 0) + second.samples(0, z, 0, 0))
    writer = threading.Timer(0.5, os.write, (master, data))  # once the port is open
    writer.start()
    try:
        src = open_source(f"serial:{os.ttyname(slave)}")
        assert src.fs == 360.0
        stopper = threading.Timer(5.0, src.stop)  # bound the test if nothing more comes
        stopper.start()
        items = []
        for item in src.chunks:
            items.append(item)
            if src.stats()["no_hello_samples"] >= 50:
                src.stop()
        stopper.cancel()
    finally:
        writer.join()
        os.close(master)
        os.close(slave)
    mismatch = [i.info for i in items if isinstance(i, StatusEvent)
                and i.info["status"] == "config_mismatch"]
    assert mismatch == [{"status": "config_mismatch", "device_fs": 250.0,
                         "expected_fs": 360.0}]
    assert sum(len(i) for i in items if isinstance(i, np.ndarray)) == 50  # the 360 Hz ones
    assert src.stats()["no_hello_samples"] == 50  # the 250 Hz ones: counted, dropped
