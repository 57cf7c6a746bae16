"""QA faults in the reliability campaigns: `streams` could never report success, a bad
--cpu left a daemon running, `crash` answered bad input with a report of zeros."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import error_line, invoke


@pytest.fixture
def beat_model(tmp_path, converted) -> Path:
    """The session's converted beat model, copied (the daemons never write beside it)."""
    out, _ = converted
    dst = tmp_path / "model"
    shutil.copytree(out / "cpu-int8", dst)
    return dst


def window_fs(model: Path) -> float:
    """The rate the model's windows are made at (manifest signal.window.fs)."""
    return float(json.loads((model / "manifest.json").read_text())["signal"]["window"]["fs"])


def write_record(d: Path, name: str, fs: float, seconds: float) -> Path:
    """A one-lead format-16 WFDB record: a spike every 0.8 s on a flat line."""
    n = int(fs * seconds)
    t = np.arange(n) / fs
    x = np.where((t % 0.8) < 0.03, 1000, 0) + (np.sin(t * 2 * np.pi) * 20).astype(int)
    (d / f"{name}.dat").write_bytes(x.astype("<i2").tobytes())
    (d / f"{name}.hea").write_text(f"{name} 1 {fs:g} {n}\n"
                                   f"{name}.dat 16 200 16 0 0 0 0 MLII\n")
    return d / name


def daemon_children() -> list[int]:
    """Pids of this process's children running ``device run`` (reaped ones are gone)."""
    me, pids = os.getpid(), []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            cmd = Path(f"/proc/{d}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == me and b"device\0run" in cmd:
            pids.append(int(d))
    return pids


@pytest.fixture
def no_daemon_left():
    """Fails nothing itself; after the test, kills (by pid) any daemon it left behind, so
    a failing test does not leave one running."""
    yield
    for pid in daemon_children():
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def usable_cpu() -> int:
    return min(os.sched_getaffinity(0))


# --------------------------------------------------------------------------- streams


def test_streams_reads_each_daemons_summary_and_reports_complete(beat_model, tmp_path,
                                                                  no_daemon_left):
    """Fault 1: the last stderr line at --log-level WARNING is the summary in words, so
    processed/dropped were null and all_complete false whatever happened."""
    rec = write_record(tmp_path, "r360", 360.0, 60.0)
    out = tmp_path / "streams.json"
    res = invoke(["device", "reliability", "streams", "--model", beat_model, "--record", rec,
                  "--n", "2", "--seconds", "2", "--cpu", usable_cpu(), "--json", out])
    assert res.exit_code == 0, res.output
    (r,) = json.loads(out.read_text())
    assert r["all_complete"] is True, r
    assert r["dropped_total"] == 0
    for s in r["per_stream"]:
        assert s["sent"] > 0 and s["processed"] == s["sent"] and s["dropped"] == 0, s
    assert daemon_children() == []


def test_streams_refuses_a_cpu_it_may_not_use_before_starting_anything(beat_model, tmp_path,
                                                                        no_daemon_left):
    """Fault 2: --cpu 99 was '[Errno 22] Invalid argument' after the daemons had started,
    and one was left running."""
    rec = write_record(tmp_path, "r360", 360.0, 20.0)
    allowed = os.sched_getaffinity(0)
    bad = max(allowed) + 1
    line = error_line(invoke(["device", "reliability", "streams", "--model", beat_model,
                              "--record", rec, "--n", "1", "--seconds", "1",
                              "--cpu", bad]))
    assert "--cpu" in line and f"CPU {bad}" in line, line
    assert f"(available: {min(allowed)}" in line, line
    assert daemon_children() == []


def test_cpu_list_is_written_like_taskset():
    from vitaledge.device.bench.reliability.host import cpu_list

    assert cpu_list({0}) == "0"
    assert cpu_list({0, 1}) == "0-1"
    assert cpu_list({3, 0, 1, 2, 6, 8, 9}) == "0-3,6,8-9"


def test_streams_stops_every_daemon_when_the_campaign_fails(beat_model, tmp_path,
                                                           monkeypatch, no_daemon_left):
    """Fault 2: any failure after the daemons started left them running; now they are
    terminated (killed if need be) and reaped on the way out."""
    from vitaledge.device.bench.reliability import load

    def fails(pid):
        raise OSError(f"cannot read /proc/{pid}/stat")

    monkeypatch.setattr(load, "cpu_seconds", fails)
    rec = write_record(tmp_path, "r360", 360.0, 20.0)
    with pytest.raises(OSError, match="cannot read"):
        load.streams_campaign(str(beat_model), str(rec), 2, seconds=1.0, cpu=usable_cpu())
    assert daemon_children() == []


def test_streams_says_why_a_daemon_exited_before_listening(tmp_path, no_daemon_left):
    """A daemon that cannot start (here: a manifest whose model file is not a model) is
    an error with its last error line at once, not a 2-minute wait for it to listen."""
    from vitaledge.device.bench.reliability import load

    model = tmp_path / "model"
    model.mkdir()
    rec = write_record(tmp_path, "r360", 360.0, 20.0)
    with pytest.raises(RuntimeError, match=r"stream daemon 1 of 1 exited \(code 1\) before "
                                           r"it listened: .*manifest"):
        # the manifest check is skipped so that the daemon itself refuses the model
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(load, "load_manifest", lambda _m: None)
            load.streams_campaign(str(model), str(rec), 1, seconds=1.0, cpu=usable_cpu())
    assert daemon_children() == []


# --------------------------------------------------------------------------- crash


@pytest.mark.parametrize("case", ["record", "speed", "model"])
def test_crash_refuses_bad_input_in_one_line_before_the_campaign(case, beat_model, tmp_path,
                                                                 no_daemon_left):
    """Fault 3: a missing record, --speed abc or a model directory that is not an
    artifact gave a full report of zeros and exit 1 without saying what was wrong."""
    rec = write_record(tmp_path, "r360", 360.0, 20.0)
    args = {"record": ["--model", beat_model, "--record", "/nonexistent/rec"],
            "speed": ["--model", beat_model, "--record", rec, "--speed", "abc"],
            "model": ["--model", tmp_path / "empty", "--record", rec]}[case]
    (tmp_path / "empty").mkdir()
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "events.jsonl").write_text('{"seq": 1}\n')  # an earlier campaign's sink
    res = invoke(["device", "reliability", "crash", *args, "--kills", "2", "--workdir", wd])
    line = error_line(res)
    assert res.exit_code == 1
    said = {"record": "/nonexistent/rec.hea: no such WFDB header",
            "speed": "--speed 'abc'", "model": "no manifest"}[case]
    assert said in line, line
    assert (wd / "events.jsonl").read_text() == '{"seq": 1}\n'  # nothing removed
    assert daemon_children() == []


def test_crash_says_why_a_daemon_run_failed(beat_model, tmp_path, no_daemon_left):
    """Fault 3: a run that failed on its own (here a record below the model's window
    rate, which the daemon refuses at start) gave a report of zeros; now the error is the
    daemon's own last error line."""
    low = window_fs(beat_model) * 0.8
    rec = write_record(tmp_path, "low", low, 20.0)
    res = invoke(["device", "reliability", "crash", "--model", beat_model, "--record", rec,
                  "--kills", "2", "--workdir", tmp_path / "wd"])
    line = error_line(res)
    assert res.exit_code == 1
    assert line.startswith("Error: run 1 of 3: the daemon exited with code 1: "), line
    assert f"is {low:g} Hz, below the" in line, line
    assert daemon_children() == []


def test_crash_runs_in_a_folder_with_a_quote_and_cleans_its_own_temporary_one(
        beat_model, tmp_path, monkeypatch, no_daemon_left):
    """The campaign's device.toml pasted paths into TOML strings (a '"' in a path broke
    it), and without --workdir its temporary folder was never removed."""
    rec = write_record(tmp_path, "r360", 360.0, 20.0)
    wd = tmp_path / 'w"d'
    res = invoke(["device", "reliability", "crash", "--model", beat_model, "--record", rec,
                  "--kills", "1", "--workdir", wd])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["final_returncode"] == 0 and (wd / "events.jsonl").exists()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # TMPDIR read again
    res = invoke(["device", "reliability", "crash", "--model", beat_model, "--record", rec,
                  "--kills", "1"])
    assert res.exit_code == 0, res.output
    assert list(tmp.iterdir()) == []


def test_paced_sending_cycles_the_lines_from_where_it_starts():
    """The load and streams campaigns send through one paced loop: a tenth of a second
    of samples per tick, the lines taken cyclically from ``start`` (the streams campaign
    had its own loop, which skipped lines at the wrap)."""
    import socket
    import threading

    from vitaledge.device.bench.reliability.load import send_paced

    lines = [f"{v}\n".encode() for v in range(7)]
    a, b = socket.socketpair()
    got, counts = [], []
    reader = threading.Thread(target=lambda: got.extend(iter(lambda: b.recv(4096), b"")))
    reader.start()
    with a:
        nxt = send_paced(a, lines, fs=30.0, seconds=0.25, start=5, sent=counts.append)
    reader.join()
    b.close()
    values = [int(v) for v in b"".join(got).split()]
    assert counts and set(counts) == {3} and len(values) == sum(counts)
    assert values == [(5 + j) % 7 for j in range(len(values))]
    assert nxt == (5 + len(values)) % 7
    stop = threading.Event()
    stop.set()
    c, d = socket.socketpair()
    with c, d:
        assert send_paced(c, lines, fs=30.0, seconds=10.0, start=2, stop=stop) == 2
