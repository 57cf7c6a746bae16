"""Bad input gets a plain answer: every case below exits non-zero with one ``Error:`` line
naming the file, option or value at fault, and never a traceback. The walks at the end
give every command of the CLI an unknown option and a path that does not exist."""

from __future__ import annotations

import json
import math
import re
import socket
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import error_line, free_port, invoke

from vitaledge.cli import main


@pytest.fixture
def fake_records(tmp_path):
    """A folder of two annotated "records" (empty files: the record list is checked
    before any is read)."""
    d = tmp_path / "recs"
    d.mkdir()
    for name in ("100", "208"):
        for ext in ("hea", "dat", "atr"):
            (d / f"{name}.{ext}").write_text("")
    return d


def toml(tmp_path, body: str):
    """A device.toml of its own (``device-N.toml``) with ``body`` after model and source."""
    p = tmp_path / f"device-{len(list(tmp_path.glob('device-*.toml')))}.toml"
    p.write_text('model = "art"\nsource = "replay:rec"\n' + body + "\n")
    return p


def cases(tmp_path, fake_records):
    """(args, words the message must contain)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    events = tmp_path / "ev.jsonl"
    events.write_text('{"type": "beat", "seq": 1, "sample": 100, "class": "N"}\n')
    table = tmp_path / "bench.csv"
    table.write_text("{}\n{}\n")
    nst = ["--record", tmp_path / "118", "--noise", tmp_path / "ma", "--out", tmp_path / "n"]
    garbled = tmp_path / "garbled"  # a record whose header is not one
    garbled.mkdir()
    for ext in ("dat", "atr"):
        (garbled / f"100.{ext}").write_text("")
    (garbled / "100.hea").write_text("garbage\n")
    return [
        (["bench", "detector", "--data", empty], [str(empty), "no WFDB records", ".atr"]),
        (["bench", "detector", "--data", fake_records, "--records", "100,999"],
         [str(fake_records), "999"]),
        (["bench", "detector"], ["--data"]),
        (["bench", "detector", "--data", fake_records, "--records", " , "],
         ["comma list ' , ' names nothing"]),
        (["bench", "detector", "--data", fake_records, "--records", ""],
         ["comma list '' names nothing"]),
        (["evaluate", empty, "--csv", table, "--data", fake_records],
         ["--csv and --data are two sources of beats"]),
        (["bench", "detector", "--data", fake_records, "--records", "100,100"],
         ["comma list '100,100' names '100' twice"]),
        (["bench", "run", empty, "--threads", "two"], ["--threads", "'two'"]),
        (["bench", "run", empty, "--threads", "1,2,1"], ["--threads", "names 1 twice"]),
        (["bench", "run", empty, "--delegate", "none,none"], ["--delegate",
                                                               "names none twice"]),
        (["bench", "run", empty, empty], ["ARTIFACTS", "twice"]),
        (["bench", "run", empty, "--out", table / "x"], ["--out", "cannot create it"]),
        (["bench", "detector", "--data", fake_records, "--json", table / "x.json"],
         ["--json", "cannot create"]),
        (["bench", "detector", "--data", garbled], [str(garbled / "100.hea"), "line 1",
                                                   "'garbage' is not 'NAME NSIG"]),
        (["device", "score", events, "--record", fake_records / "100", "--json",
          table / "x.json"], ["--json", "cannot create"]),
        (["bench", "run", empty, "--batch", "0"], ["--batch", "'0'"]),
        (["train", "beat", "--data", fake_records, "--test-records", "100", "--out",
          tmp_path / "r"], ["--test-records", "--split record", "--split beat"]),
        (["train", "emotion-ecg", "--data", empty, "--out", tmp_path / "e"],
         ["--data", "--dataset synth", "ignored"]),
        (["train", "emotion-speech", "--synth-per-class", "5", "--test-actors", "04",
          "--momentum", "0.9", "--out", tmp_path / "sp"], ["--momentum", "SGD", "adam"]),
        (["evaluate", empty, "--csv", table, "--split", "all"], ["--split", "--csv",
                                                                  "scored whole"]),
        (["train", "beat", "--arch", "resnet1d", "--data", fake_records, "--before", "0.3",
          "--out", tmp_path / "r"], ["--before", "centered window", "--window centered"]),
        (["train", "beat", "--arch", "tiny", "--data", fake_records,
          "--s-rule-irregularity", "0.2", "--out", tmp_path / "r"],
         ["--s-rule-irregularity", "--s-rule network"]),
        (["bench", "run", empty, "--threads", "1,100000"], ["--threads", "at most 256"]),
        (["bench", "run", empty, "--min-seconds", "inf"], ["--min-seconds", "'inf'",
                                                           "not a finite number"]),
        (["bench", "run", empty, "--min-seconds", "nan"], ["--min-seconds", "'nan'"]),
        (["bench", "run", empty, "--pin", "4096"], ["--pin", "'4096'", "4096"]),
        (["bench", "compare", table], [str(table), "not a bench.json"]),
        (["data", "synth", "--out", tmp_path / "s", "--minutes", "0"], ["--minutes", "0"]),
        (["data", "synth", "--out", tmp_path / "s", "--fs", "0"], ["--fs", "0"]),
        (["data", "synth", "--out", tmp_path / "s", "--n-records", "0"], ["--n-records"]),
        (["data", "synth", "--out", tmp_path / "s", "--seed", "-1"], ["--seed", "-1"]),
        (["device", "reliability", "fuzz", "--seed", "-3"], ["--seed", "-3"]),
        (["device", "run", "--config", toml(tmp_path, 'threads = "two"')],
         [".toml: ", "threads", "'two'", "integer"]),
        (["device", "run", "--config", toml(tmp_path, 'out = "x.jsonl"')],
         [".toml: ", "out", "'x.jsonl'", "list of strings"]),
        (["device", "run", "--config", toml(tmp_path, "speed = -1")],
         [".toml: ", "speed", "-1"]),
        (["device", "run", "--config", toml(tmp_path, "api_port = 70000")],
         [".toml: ", "api_port", "70000"]),
        (["device", "run", "--model", "art", "--source", "replay:rec", "--speed", "-1"],
         ["--speed", "'-1'", "'max'"]),
        (["device", "run", "--model", "art", "--source", "replay:rec", "--speed", "nan"],
         ["--speed", "'nan'"]),
        (["device", "run", "--model", "art", "--source", "replay:rec", "--speed", "fast"],
         ["--speed", "'fast'"]),
        (["device", "run", "--model", "art", "--source", "stdin", "--fs", "-3"],
         ["--fs", "-3"]),
        (["device", "run", "--model", "art", "--source", "stdin", "--threads", "0"],
         ["--threads", "0"]),
        (["device", "run", "--model", "art", "--source", "stdin", "--threads", "100000"],
         ["--threads", "100000", "256"]),
        (["device", "run", "--config", toml(tmp_path, "threads = 100000")],
         [".toml: ", "threads 100000", "at most 256"]),
        (["device", "run", "--model", "art", "--source", "stdin", "--log-level", "BOGUS"],
         ["--log-level", "'BOGUS' is not one of"]),
        (["device", "score", events, "--record", tmp_path / "999"], ["999.hea"]),
        (["device", "info", empty], [str(empty / "manifest.json"), "no manifest"]),
        (["device", "status", "--api", f"http://127.0.0.1:{free_port()}"],
         ["no daemon API answers", "127.0.0.1"]),
        (["device", "status", "--api", "127.0.0.1:8787"], ["--api", "expected a URL"]),
        *[(["data", "nst", *nst, "--snr", snr], ["--snr", "-20 to 60 dB"])
          for snr in ("nan", "inf", "-inf", "1000", "-100", "", "12,nan", "6,,", ",6")],
        (["data", "nst", *nst, "--seed", "-5"], ["--seed", "-5"]),
        (["bench", "noise-stress", "--record", tmp_path / "118", "--noise", tmp_path / "ma",
          "--snr", "nan"], ["--snr", "'nan'"]),
        (["device", "score", events, "--record", tmp_path / "118", "--json", events],
         ["--json", str(events), "also an input"]),
        (["device", "review", events, "--record", tmp_path / "118", "--out", events],
         ["--out", "also an input"]),
        (["device", "review", events, "--record", tmp_path / "118", "--out",
          tmp_path / "118.hea"], ["--out", "118.hea", "also an input"]),
        # the record given with an extension is the same record: its files are inputs
        (["device", "review", events, "--record", tmp_path / "118.hea", "--out",
          tmp_path / "118.dat"], ["--out", "118.dat", "also an input"]),
        (["device", "score", events, "--record", tmp_path / "118.hea", "--json",
          tmp_path / "118.atr"], ["--json", "118.atr", "also an input"]),
        (["bench", "detector", "--data", fake_records, "--json", fake_records / "100.atr"],
         ["--json", "100.atr", "also an input"]),
        (["device", "run", "--model", "art", "--source", "replay:rec", "--sink",
          tmp_path / "run.jsonl", "--json", tmp_path / "run.jsonl"],
         ["--json", "run.jsonl", "also an input"]),
        (["device", "run", "--model", "art", "--source", "replay:rec", "--sink",
          f"sqlite:{tmp_path / 'run.db'}", "--json", tmp_path / "run.db"],
         ["--json", "run.db", "also an input"]),
        (["firmware", "sensor", "--synth", "--speed", "0"], ["--speed"]),
        # flags that would be taken and do nothing without the option they belong to
        (["device", "run", "--model", "art", "--source", "replay:rec", "--probation", "5"],
         ["--probation is for --ota"]),
        (["device", "run", "--model", "art", "--source", "replay:rec", "--models-dir", "m"],
         ["--models-dir is for --ota"]),
        (["device", "run", "--model", "art", "--source", "replay:rec", "--api-host",
          "0.0.0.0"], ["--api-host is for --api-port"]),
        # the same as config keys whose feature the file never mentions (they were taken
        # and did nothing, exit 0)
        *[(["device", "run", "--config", toml(tmp_path, body)],
           [".toml: ", f"{key} is for {needs} (or its flag)"])
          for body, key, needs in (
              ('api_host = "0.0.0.0"', "api_host", "api_port"),
              ('api_token_file = "nonexist"', "api_token_file", "api_port"),
              ('[ota]\nmodels_dir = "m"', "[ota] models_dir", "enabled"),
              ("[ota]\nprobation_s = 5.0", "[ota] probation_s", "enabled"))],
        (["device", "run", "--config", toml(tmp_path, 'fallback = "cpuu"')],
         ["fallback 'cpuu'", "['none', 'cpu']"]),
        (["device", "run", "--model", "art", "--source", "stdin", "--fs", "360", "--speed",
          "2"], ["--speed paces a replay", "stdin"]),
        (["device", "run", "--model", "art", "--source", "replay:rec", "--sink", "-",
          "--sink", "stdout"], ["'stdout' given twice"]),
        (["device", "run", "--model", "art", "--source", "replay:rec", "--sink",
          "mqtt://127.0.0.1:1/a?site=s&device=d", "--sink",
          "mqtt://127.0.0.1:1/b?site=s&device=d"], ["would share the spool"]),
        (["device", "run", "--model", "art", "--source", "replay:rec", "--sink",
          tmp_path / "ev.db", "--sink",
          f"mqtt://127.0.0.1:1/a?site=s&device=d&spool={tmp_path / 'ev.db'}"],
         ["the spool of 'mqtt://127.0.0.1:1/a", f"is the sink file {tmp_path / 'ev.db'}"]),
        (["device", "run", "--model", "art", "--source", "replay:rec", "--sink",
          "mqtt://127.0.0.1:1/a?rate=inf"], ["mqtt rate inf: expected a finite number"]),
        (["device", "run", "--model", "art", "--source", "replay:rec", "--sink",
          "mqtt://127.0.0.1:1/a?drain_on_stop_s=nan"], ["drain_on_stop_s nan"]),
        (["device", "run", "--config", toml(tmp_path, 'out = ["mqtt://127.0.0.1/a"]\n'
                                                      '[mqtt]\nhost = "10.9.9.9"')],
         ["mqtt host = '10.9.9.9'", "sink URL"]),
        (["device", "status", "--api", "http://[::1"], ["--api", "not a URL"]),
        (["firmware", "sensor", "--synth", "--gain", "inf"], ["--gain", "'inf'"]),
        (["device", "reliability", "fuzz", "--target", "protocol,bogus", "--inputs", "10"],
         ["--target", "unknown target 'bogus'"]),
        (["fleet", "tail", "--broker", "mqtt://127.0.0.1:1/v", "--device", "#"],
         ["--device", "'#'", "without '#', '+' or '/'"]),
        (["fleet", "tail", "--broker", "mqtt://u:secretpw@127.0.0.1:1/v"],
         ["mqtt://...@127.0.0.1:1/v"]),
        (["train", "emotion-ecg", "--threshold", "nan", "--out", tmp_path / "t"],
         ["--threshold", "'nan'"]),
        (["convert", empty, "--prune-epochs", "7", "--out", tmp_path / "c"],
         ["--prune-epochs is the fine-tuning of --prune"]),
        # a --json written over the data it reads
        (["bench", "stream", empty, "--data", fake_records, "--json",
          fake_records / "100.hea"], ["--json", "100.hea", "also an input"]),
        (["firmware", "mcu", empty, "--data", fake_records, "--json",
          fake_records / "208.dat"], ["--json", "208.dat", "also an input"]),
        (["bench", "stream", empty, "--chunk", "0"], ["--chunk", "0"]),
        (["bench", "stream", empty, "--chunk", "inf"], ["--chunk", "inf"]),
        (["firmware", "sensor", "--synth", "--minutes", "-1"], ["--minutes"]),
        # no sample at all: "cannot reshape array of size 0"
        (["firmware", "sensor", "--synth", "--minutes", "0.00001"], ["--minutes", "1e-05"]),
        # beyond a float32 in the hello frame: an OverflowError traceback
        (["firmware", "sensor", "--synth", "--gain", "1e39"], ["--gain", "1e+39"]),
        (["firmware", "sensor", "--synth", "--faults", "drift=nan"],
         ["fault drift: 'nan' is not a finite number"]),
        (["firmware", "sensor", "--synth", "--port", "tcp:127.0.0.1:99999"],
         ["tcp:127.0.0.1:99999", "99999 is not a TCP port"]),
        (["firmware", "sensor", "--synth", "--wait", "-1"], ["--wait", "-1"]),
        (["firmware", "sensor", "--synth", "--wait", "nan"], ["--wait", "nan"]),
    ]


def test_bad_input_gets_one_line_naming_the_thing(tmp_path, fake_records):
    for args, words in cases(tmp_path, fake_records):
        line = error_line(invoke(args))
        missing = [w for w in words if w not in line]
        assert not missing, (args, line, missing)


def test_an_output_that_is_an_input_leaves_the_input_as_it_was(tmp_path):
    events = tmp_path / "ev.jsonl"
    body = '{"type": "beat", "seq": 1, "sample": 100, "class": "N"}\n'
    events.write_text(body)
    for args in (["device", "score", events, "--record", tmp_path / "118", "--json", events],
                 ["device", "review", events, "--record", tmp_path / "118", "--out", events],
                 ["device", "run", "--model", "art", "--source", "replay:rec", "--sink",
                  events, "--append", "--json", events]):
        error_line(invoke(args))
        assert events.read_text() == body, args


def test_events_files_that_are_not_this_records_events_are_refused(tmp_path, synth_dir):
    """Scored, they would read as Se 0 %: an empty file, rows that are not events, and
    events whose samples lie outside the record (another, longer record's)."""
    record = synth_dir / "s000"
    empty, rows, other = (tmp_path / f"{n}.jsonl" for n in ("empty", "rows", "other"))
    empty.write_text("")
    rows.write_text("[1, 2, 3]\n[4]\n")
    other.write_text('{"type": "beat", "seq": 1, "sample": 100, "class": "N"}\n'
                     '{"type": "beat", "seq": 2, "sample": 99000000, "class": "N"}\n')
    for cmd in (["device", "score"], ["device", "review"]):
        for path, words in ((empty, ["holds no events"]), (rows, ["event 1", "list"]),
                            (other, ["seq 2", "99000000", "outside record s000"])):
            extra = ["--out", tmp_path / "r.html"] if cmd[1] == "review" else []
            line = error_line(invoke([*cmd, path, "--record", record, *extra]))
            assert all(w in line for w in [str(path) if path != other else "", *words]), line


def test_a_noise_stress_record_needs_more_than_the_learning_period(tmp_path, synth_dir,
                                                                   data_dir):
    line = error_line(invoke(["data", "nst", "--record", synth_dir / "s000", "--noise",
                              data_dir / "nstdb-noise" / "ma", "--snr", "6", "--out",
                              tmp_path]))
    assert "s000" in line and "180.0 s long" in line and "300-s" in line
    assert not list(tmp_path.glob("*.dat"))


def test_bench_run_refuses_a_record_directory_for_a_model_that_takes_rr(tmp_path):
    """A WFDB directory gives windows only; an RR-input model used to be benchmarked on
    its artifact's held-out file instead, silently, with that file's accuracy."""
    from types import SimpleNamespace

    from vitaledge.device.bench.latency import task_inputs

    manifest = SimpleNamespace(task="beat", inputs=[SimpleNamespace(name="beat"),
                                                    SimpleNamespace(name="rr")])
    (tmp_path / "heldout.npz").write_bytes(b"")  # would be read if --data were ignored
    with pytest.raises(ValueError, match=r"not on --data .*recs.*HELDOUT\.npz"):
        task_inputs(manifest, str(tmp_path / "recs"), tmp_path / "cpu-int8")


@pytest.mark.slow
def test_a_directory_in_place_of_the_model_or_manifest_is_named(converted, tmp_path):
    """A folder where model.tflite or manifest.json should be gave a Python traceback
    (IsADirectoryError) from info, selftest, sign, verify and fleet deploy, and a bare
    '[Errno 21] Is a directory' from device run."""
    import shutil

    out, _ = converted
    key = tmp_path / "k.pem"
    assert invoke(["device", "keygen", "--key", key]).exit_code == 0
    for name, what in (("model.tflite", "the model file"), ("manifest.json", "the manifest")):
        bad = tmp_path / name.split(".")[0]
        shutil.copytree(out / "cpu-int8", bad)
        assert invoke(["device", "sign", bad, "--key", key]).exit_code == 0  # for verify
        (bad / name).unlink()
        (bad / name).mkdir()
        want = f"{bad / name}: a directory, not {what}"
        for args in (["device", "selftest", bad], ["device", "sign", bad, "--key", key],
                     ["device", "verify", bad, "--key", f"{key}.pub"],
                     ["device", "run", "--model", bad, "--source", "stdin"],
                     ["fleet", "deploy", "--broker", "mqtt://127.0.0.1:9/x", bad,
                      "--device", "d1"]):
            r = invoke(args)
            assert r.exit_code == 1 and "Traceback" not in r.output, (args, r.output)
            assert r.output.strip().splitlines()[-1].endswith(want), (args, r.output)
        r = invoke(["device", "info", bad])
        assert r.exit_code == 1 and want in r.output, r.output
    bad = tmp_path / "vectors"  # the self-test vectors: said to be missing (Is a directory)
    shutil.copytree(out / "cpu-int8", bad)
    assert invoke(["device", "sign", bad, "--key", key]).exit_code == 0
    (bad / "selftest.npz").unlink()
    (bad / "selftest.npz").mkdir()
    want = f"{bad / 'selftest.npz'}: a directory, not the self-test vectors file"
    for args in (["device", "selftest", bad], ["device", "verify", bad, "--key", f"{key}.pub"],
                 ["device", "info", bad]):
        r = invoke(args)
        assert r.exit_code == 1 and want in r.output, (args, r.output)


@pytest.mark.slow
def test_a_corrupt_model_is_neither_described_as_fine_nor_signed(converted, tmp_path):
    import hashlib
    import json
    import shutil

    out, _ = converted
    key = tmp_path / "k.pem"
    assert invoke(["device", "keygen", "--key", key]).exit_code == 0
    bad = tmp_path / "bad"
    shutil.copytree(out / "cpu-int8", bad)
    model = bad / "model.tflite"
    model.write_bytes(b"\0" * 64 + model.read_bytes()[64:])  # damaged in place
    line = error_line(invoke(["device", "sign", bad, "--key", key]))
    assert "not signed" in line and "sha256" in line
    r = invoke(["device", "info", bad])
    assert r.exit_code == 1 and "MISMATCH" in r.output
    assert r.output.strip().splitlines()[-1].startswith("Error: ")
    assert "does not match its manifest" in r.output
    # garbage whose sha256 and size were written into the manifest: whole, but no model
    model.write_bytes(b"garbage " * 100)
    m = json.loads((bad / "manifest.json").read_text())
    m.update(sha256=hashlib.sha256(model.read_bytes()).hexdigest(), size_bytes=800)
    (bad / "manifest.json").write_text(json.dumps(m))
    line = error_line(invoke(["device", "sign", bad, "--key", key]))
    assert "not a TFLite flatbuffer" in line and "TFL3" in line
    assert not (bad / "manifest.sig").exists()
    r = invoke(["device", "info", bad])  # it said "file matches the manifest", exit 0
    last = r.output.strip().splitlines()[-1]
    assert r.exit_code == 1 and last.startswith(f"Error: {bad}: NOT A MODEL"), r.output
    assert "not a TFLite flatbuffer" in last
    good = tmp_path / "good"  # a copy: the session's artifacts stay unsigned
    shutil.copytree(out / "cpu-int8", good)
    assert invoke(["device", "sign", good, "--key", key]).exit_code == 0
    assert (good / "manifest.sig").exists() and not (out / "cpu-int8" / "manifest.sig").exists()


@pytest.mark.slow
def test_a_sink_file_that_is_not_a_database_is_named(converted, synth_dir, tmp_path):
    out, _ = converted
    db = tmp_path / "events.db"
    db.write_text("not a database\n")
    line = error_line(invoke(["device", "run", "--model", out / "cpu-int8", "--source",
                              f"replay:{synth_dir / 's000'}", "--speed", "max", "--sink", db]))
    assert str(db) in line and "cannot be an events database" in line
    assert db.read_text() == "not a database\n"


def test_speed_accepts_max_and_positive_factors_only():
    from vitaledge.device.stream.daemon_config import DaemonConfig

    for ok in ("max", "1", "0.5", 20, 2.5, 0.001):
        assert DaemonConfig(speed=ok).speed == ok
    for bad in ("-1", "0", 0, "nan", math.inf, "fast", "", "1e-300", 0.0009):
        with pytest.raises(ValueError, match="speed"):
            DaemonConfig(speed=bad)


def test_fsync_takes_batch_never_or_a_positive_interval_only():
    from vitaledge.device.stream.daemon_config import DaemonConfig

    for ok in ("batch", "never", "interval:0.5", "interval:10"):
        assert DaemonConfig(fsync=ok).fsync == ok
    for bad in ("interval:-1", "interval:0", "interval:nan", "interval:inf", "interval:abc",
                "interval:", "always", ""):
        with pytest.raises(ValueError, match=r"^fsync policy .*expected batch, never or "
                                             r"interval:S \(S seconds > 0\)$"):
            DaemonConfig(fsync=bad)


def test_a_binary_config_file_is_named(tmp_path):
    from vitaledge.device.stream.daemon_config import DaemonConfig

    p = tmp_path / "device.toml"
    p.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(p))}: cannot read config: "
                                         r"not UTF-8 text \(byte \d+\)$"):
        DaemonConfig.from_toml(p)


def test_config_types_are_checked_against_the_fields(tmp_path):
    from vitaledge.device.stream.daemon_config import DaemonConfig

    good = toml(tmp_path, 'out = ["a.jsonl", "b.db"]\nthreads = 2\nfs = 360\nspeed = 20')
    cfg = DaemonConfig.from_toml(good, source="stdin")
    assert cfg.out == ["a.jsonl", "b.db"] and cfg.threads == 2 and cfg.fs == 360
    for body, key in (("threads = true", "threads"), ("fs = \"360\"", "fs"),
                      ("out = [1, 2]", "out"), ("api_rate = [20]", "api_rate")):
        with pytest.raises(ValueError, match=rf"device-\d+\.toml: {key} = "):
            DaemonConfig.from_toml(toml(tmp_path, body))
    # a flag's value is checked too, and the file is not blamed for it
    with pytest.raises(ValueError, match=r"^threads 0"):
        DaemonConfig.from_toml(good, threads=0)


def test_a_config_with_no_sink_and_no_api_is_refused(tmp_path):
    """out = [] ran the daemon with every event lost; a --sink flag or an API (whose
    /events serves them) makes it a working configuration."""
    from vitaledge.device.stream.daemon_config import DaemonConfig

    empty = toml(tmp_path, "out = []")
    with pytest.raises(ValueError, match=r"device-\d+\.toml: out = \[\]: no sink and no API"):
        DaemonConfig.from_toml(empty)
    assert DaemonConfig.from_toml(empty, out=["a.jsonl"]).out == ["a.jsonl"]
    assert DaemonConfig.from_toml(toml(tmp_path, "out = []\napi_port = 8080")).out == []


def test_the_config_fs_is_for_sources_without_a_rate_of_their_own(tmp_path):
    """docs/device.toml's fs = 360 is the rate of its tcp source; replaying a 250-Hz
    WFDB record (or a session, or audio) with that file must not be refused for it. A CSV
    has no rate of its own and takes it; an --fs flag still applies to every source."""
    from vitaledge.device.stream.daemon_config import DaemonConfig

    cfg = toml(tmp_path, "fs = 360.0")  # source = "replay:rec": a WFDB record
    assert DaemonConfig.from_toml(cfg).fs is None
    for source in ("replay:s.npz", "replay:a.wav"):
        assert DaemonConfig.from_toml(cfg, source=source).fs is None
    for source in ("replay:ecg.csv", "tcp:127.0.0.1:7000", "stdin", "serial:/dev/ttyUSB0"):
        assert DaemonConfig.from_toml(cfg, source=source).fs == 360.0
    assert DaemonConfig.from_toml(cfg, fs=250.0).fs == 250.0  # the flag is kept


def test_the_config_fs_is_held_to_its_sources_bounds(tmp_path):
    """fs = 5 was taken by the config (only > 0 was asked) and refused later by the source
    with another message; now the config says the source's range at once: 10-10,000 Hz
    for an ECG source, up to 192 kHz for audio, the widest while no source is named."""
    from vitaledge.device.stream.daemon_config import DaemonConfig

    for fs in (5.0, 20_000.0, float("nan")):
        with pytest.raises(ValueError, match=r"^fs \S+: expected a sample rate of "
                                             r"10-10000 Hz \(the range stdin may have\)"):
            DaemonConfig(source="stdin", fs=fs)
    assert DaemonConfig(source="stdin", fs=360.0).fs == 360.0
    for source in ("stdin", "stdin-pcm", ""):  # the bounds themselves are rates a source has
        assert DaemonConfig(source=source, fs=10.0).fs == 10.0
    assert DaemonConfig(source="stdin", fs=10_000.0).fs == 10_000.0
    assert DaemonConfig(source="stdin-pcm", fs=48_000.0).fs == 48_000.0
    with pytest.raises(ValueError, match=r"of 10-192000 Hz"):
        DaemonConfig(source="stdin-pcm", fs=200_000.0)
    assert DaemonConfig(fs=48_000.0).fs == 48_000.0  # no source yet
    # an unknown source is named as such when opened, not through its rate
    assert DaemonConfig(source="foo:1", fs=20_000.0).fs == 20_000.0
    with pytest.raises(ValueError, match=r"^fs -1.0: expected a sample rate > 0 Hz$"):
        DaemonConfig(source="foo:1", fs=-1.0)
    # the file's rate is held to the bounds of the source that will run (--source)
    cfg = tmp_path / "pcm.toml"
    cfg.write_text('model = "art"\nsource = "stdin"\nfs = 16000.0\n')
    assert DaemonConfig.from_toml(cfg, source="stdin-pcm").fs == 16_000.0
    with pytest.raises(ValueError, match=rf"^{re.escape(str(cfg))}: fs 16000.0: expected "):
        DaemonConfig.from_toml(cfg)
    # a file's fs that the running source ignores or --fs replaces is not held to anything
    assert DaemonConfig.from_toml(cfg, source="replay:rec").fs is None  # a WFDB record's own
    assert DaemonConfig.from_toml(cfg, fs=360.0).fs == 360.0
    wfdb = tmp_path / "wfdb.toml"
    wfdb.write_text('model = "art"\nsource = "replay:rec"\nfs = 20000.0\n')
    assert DaemonConfig.from_toml(wfdb).fs is None


def test_api_port_in_use_names_the_api_port():
    import errno

    from vitaledge.device.stream.api import api_bind_error

    msg = api_bind_error("127.0.0.1", 8787, OSError(errno.EADDRINUSE, "Address in use"))
    assert msg.startswith("API port 8787 on 127.0.0.1 is already in use") and "\n" not in msg


@pytest.mark.slow
def test_api_port_in_use_through_the_cli(converted, synth_dir, tmp_path):
    out, _ = converted
    ev = tmp_path / "ev.jsonl"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = invoke(["device", "run", "--model", out / "cpu-int8", "--source",
                    f"replay:{synth_dir / 's000'}", "--sink", ev, "--api-port", port])
    line = error_line(r)
    assert f"API port {port}" in line and "already in use" in line
    assert ev.read_text() == ""  # nothing was written before the refusal


def leaf_commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from leaf_commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


def test_every_command_refuses_an_unknown_option_in_one_line():
    for path, _ in leaf_commands(main):
        line = error_line(invoke([*path, "--no-such-option"]))
        assert "--no-such-option" in line, (path, line)


def test_every_path_that_must_exist_is_named_when_it_does_not(tmp_path):
    """Each command's path parameters that must exist, given a path that does not: one
    line, the path named (or, when a required option comes first, that option)."""
    ghost = tmp_path / "no-such-thing"
    seen = 0
    for path, cmd in leaf_commands(main):
        for p in cmd.params:
            if not (isinstance(p.type, click.Path) and p.type.exists):
                continue
            args = [ghost] if isinstance(p, click.Argument) else [p.opts[0], ghost]
            line = error_line(invoke([*path, *args]))
            assert str(ghost) in line or "Missing" in line, (path, p.name, line)
            seen += 1
    assert seen > 10


@pytest.mark.slow
def test_garbage_on_the_wire_is_counted_and_a_stream_of_nothing_else_fails(converted,
                                                                           synth_dir,
                                                                           tmp_path):
    """Text that is no sample used to end in "no samples dropped, no signal faults" and
    exit 0: it is counted in the summary, and a stream that held nothing readable fails."""
    from vitaledge.device.io.records import read_record

    out, _ = converted
    args = ["device", "run", "--model", out / "cpu-int8", "--source", "stdin", "--fs", "360",
            "--json", tmp_path / "s.json"]
    garbage = "".join(f"\x01garbage {i} \x7f\n" for i in range(200))
    r = CliRunner().invoke(main, [str(a) for a in args], input=garbage)
    line = r.output.strip().splitlines()[-1]
    assert r.exit_code == 1 and line.startswith("Error: "), r.output
    assert "no sample could be read from stdin" in line and "200 malformed lines" in line
    x = read_record(synth_dir / "s000").signal[: 360 * 30]
    text = "".join(f"{v:.4f}\n" for v in x[:5000]) + "bad\n?\n\n" + "".join(
        f"{v:.4f}\n" for v in x[5000:])
    r = CliRunner().invoke(main, [str(a) for a in args], input=text)
    assert r.exit_code == 0, r.output
    assert "2 malformed lines on the source ignored" in r.output
    assert json.loads((tmp_path / "s.json").read_text())["source_stats"] == {
        "malformed_lines": 2}


@pytest.mark.slow
def test_a_source_that_ends_with_nothing_usable_fails(converted, tmp_path):
    """An empty stdin and a replay whose every sample is NaN ended in "no events" or "all
    cut out as faults" and exit 0: nothing was analysed, so the run fails (its summary
    is still written); one usable stretch among the faults is a run like any other."""
    out, _ = converted
    csv = tmp_path / "nan.csv"
    csv.write_text("nan\n" * 7200)
    for source, stdin, words in (("stdin", "", "stdin ended before its first sample"),
                                 (f"replay:{csv}", None, f"no usable sample in replay:{csv}: "
                                  "every one of its 7,200 samples was a signal fault")):
        js = tmp_path / "s.json"
        r = CliRunner().invoke(main, ["device", "run", "--model", str(out / "cpu-int8"),
                                      "--source", source, "--fs", "360", "--api-port", "0",
                                      "--sink", str(tmp_path / "e.jsonl"), "--append",
                                      "--json", str(js)], input=stdin)
        line = r.output.strip().splitlines()[-1]  # after the run's summary
        assert r.exit_code == 1 and line.startswith(f"Error: {words}"), r.output
        assert json.loads(js.read_text())["stop_requested"] is False
    csv.write_text("nan\n" * 3600 + "0.01\n" * 3600)
    r = CliRunner().invoke(main, ["device", "run", "--model", str(out / "cpu-int8"),
                                  "--source", f"replay:{csv}", "--fs", "360", "--api-port",
                                  "0", "--sink", str(tmp_path / "e2.jsonl")])
    assert r.exit_code == 0, r.output


def test_keygen_into_a_missing_directory_names_the_file_in_words(tmp_path):
    key = tmp_path / "no-such-dir" / "k.pem"
    line = error_line(invoke(["device", "keygen", "--key", key]))
    assert line == f"Error: cannot write {key}: No such file or directory", line


def test_evaluate_does_not_write_its_metrics_over_the_run(tmp_path):
    """evaluate --json on a file of the run it scores (model.keras, config.json) or on the
    CSV it reads is refused before anything is read; the file stays as it was."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "model.keras"):
        (run / name).write_text("keep")
    table = tmp_path / "beats.csv"
    table.write_text("keep")
    for target, words in ((run / "model.keras", [str(run / "model.keras"), "a file of"]),
                          (run / "config.json", ["config.json", "destroy"]),
                          (table, [str(table), "destroy"])):
        line = error_line(invoke(["evaluate", str(run), "--csv", str(table), "--json",
                                  str(target)]))
        assert "--json" in line and all(w in line for w in words), line
        assert target.read_text() == "keep"
    earlier = run / "eval-ds2.json"  # an earlier evaluation's file: replacing it is fine
    earlier.write_text("{}")
    line = error_line(invoke(["evaluate", str(run), "--json", str(earlier)]))
    assert "--json" not in line, line
    # a record of the --data folder, or of the folder the run was trained on (scored again
    # without --data), a converted artifact's siblings and the run it came from: each was
    # written over, exit 0
    data = tmp_path / "data"
    data.mkdir()
    for ext in ("hea", "dat", "atr"):
        (data / f"s000.{ext}").write_text("keep")
    (run / "config.json").write_text(json.dumps({"records": str(data)}))
    art = tmp_path / "art" / "cpu-int8"
    art.mkdir(parents=True)
    (art / "manifest.json").write_text(json.dumps({"source_run": {"path": str(run)}}))
    (art.parent / "heldout.npz").write_text("keep")
    (art.parent / "cpu-fp32").mkdir()
    (art.parent / "cpu-fp32" / "manifest.json").write_text("keep")
    (run / "metrics.json").write_text("keep")
    for model, target in ((run, data / "s000.hea"), (art, data / "s000.dat"),
                          (art, art.parent / "heldout.npz"),
                          (art, art.parent / "cpu-fp32" / "manifest.json"),
                          (art, run / "metrics.json")):
        extra = ["--data", str(data)] if target.parent == data and model == art else []
        line = error_line(invoke(["evaluate", str(model), *extra, "--json", str(target)]))
        assert "--json" in line and str(target.name) in line, (model, target, line)
        assert target.read_text() == "keep"


def test_a_window_the_architecture_cannot_take_is_refused_before_the_run_begins(
        tmp_path, synth_dir):
    """resnet1d's four poolings need more than 12 samples: one line, and no half-written
    run folder left to block the next attempt."""
    out = tmp_path / "r"
    line = error_line(invoke(["train", "beat", "--arch", "resnet1d", "--data", synth_dir,
                              "--window", "centered", "--before", "0.05", "--after", "0.05",
                              "--epochs", "1", "--out", out]))
    assert "'resnet1d' cannot take a window of 12 samples (125 Hz)" in line, line
    assert not out.exists() or not any(out.iterdir())


def test_status_of_a_server_that_is_not_http_is_one_line():
    """An SSH banner or a cut-short body was a BadStatusLine / IncompleteRead traceback;
    an empty JSON object printed "state: ?" and exit 0."""
    import socket
    import threading

    answers = [b"SSH-2.0-OpenSSH_9.6\r\n",
               b"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\n{\"status\"",
               b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{}"]
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)

    def serve():
        for answer in answers:
            conn, _ = srv.accept()
            conn.recv(4096)
            conn.sendall(answer)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{srv.getsockname()[1]}"
    try:
        for said in ("not a whole HTTP answer: BadStatusLine", "not a whole HTTP answer: "
                     "IncompleteRead", "malformed answer: no status field"):
            line = error_line(invoke(["device", "status", "--api", url]))
            assert said in line, line
    finally:
        srv.close()


def test_the_broker_password_is_never_printed():
    line = error_line(invoke(["fleet", "tail", "--broker", "mqtt://u:secretpw@127.0.0.1:1/v"]))
    assert "secretpw" not in line, line


def test_a_live_source_that_never_sends_is_reported_silent():
    """A tcp: source no client connected to, or a board whose every sample was refused,
    never got no_signal (its watch waited for a first sample), and /health said ok."""
    from vitaledge.device.stream.source_watch import SourceWatch

    w = SourceWatch(360.0, live=True, no_signal_s=5.0)
    assert w.check_silence(100.0, 0.0) == [] and not w.silent
    [ev] = w.check_silence(105.5, 0.0)
    assert ev["status"] == "no_signal" and w.silent
    [back] = w.arrived(36, 0, 107.0, 0.1)
    assert back["status"] == "signal_resumed" and not w.silent
    replay = SourceWatch(360.0, live=False)
    assert replay.check_silence(0.0, 0.0) == [] and replay.check_silence(1e6, 0.0) == []


def test_the_mqtt_table_port_is_used_when_the_url_gives_none():
    from vitaledge.device.stream.mqtt import parse_url

    assert parse_url("mqtt://127.0.0.1/vt", {"port": 18831}).port == 18831
    assert parse_url("mqtt://127.0.0.1:1884/vt", {"port": 18831}).port == 1884
    assert parse_url("mqtt://127.0.0.1/vt").port == 1883
    with pytest.raises(ValueError, match=r"unknown option 'prefix' \(the URL's host, port"):
        parse_url("mqtt://127.0.0.1/vt?prefix=x")


@pytest.mark.parametrize("url", ["mqtt://127.0.0.1:1883/ward#7?x=1", "mqtt://h/x/#",
                                 "mqtt://h/x/+"])
def test_a_wildcard_in_the_mqtt_prefix_is_refused(url):
    """'#' starts a URL fragment: mqtt://.../ward#7 published under prefix ward, and a
    fleet command's mqtt://.../x/# watched x; both are refused, as '+' was."""
    from vitaledge.device.stream.mqtt import parse_url

    with pytest.raises(ValueError, match="wildcard"):
        parse_url(url)
    line = error_line(invoke(["fleet", "status", "--broker", url]))
    assert line.startswith("Error: ") and "wildcard" in line, line


def test_fleet_tail_counts_an_event_without_seq_as_malformed():
    from vitaledge.device.fleet.view import Dedup

    d = Dedup()
    for body in ({"x": 1}, {"x": 2}):
        with pytest.raises(ValueError, match="no seq"):
            d.first_time("s/d", body)
    assert d.duplicates == 0


def test_an_output_where_no_file_can_be_made_is_refused_before_the_work(synth_dir, tmp_path):
    """--json /proc/x.json passed the permission check (root may write anywhere, says
    os.access), the command printed its results, then failed writing them."""
    import click

    from vitaledge.device.cli_shared import json_out_ready, out_dir_ready

    proc = Path("/proc")
    if not proc.is_dir():
        pytest.skip("no /proc on this machine")
    r = invoke(["bench", "detector", "--data", synth_dir, "--no-xqrs", "--json",
                proc / "vitaledge-x.json"])
    assert error_line(r).startswith(f"Error: --json {proc / 'vitaledge-x.json'}: cannot "
                                    "write there ("), r.output
    assert r.output.count("\n") == 1  # the line alone: no results before it
    with pytest.raises(click.ClickException, match="a directory, not a file"):
        json_out_ready(tmp_path)
    json_out_ready(tmp_path / "new" / "x.json")  # made, and writable
    assert (tmp_path / "new").is_dir() and not list((tmp_path / "new").iterdir())
    with pytest.raises(click.ClickException, match=r"--out /proc/vx: cannot"):
        out_dir_ready("/proc/vx")


def test_config_keys_of_a_feature_switched_off_on_purpose_are_kept(tmp_path):
    """A key whose feature the file never mentions is refused (it did nothing); one whose
    feature is switched off in the file (api_port = 0, [ota] enabled = false) or switched on
    by a flag is not: turning the API or OTA off must not need the other keys removed."""
    from vitaledge.device.cli import config_keys_that_do_nothing

    for body, port_flag, ota_flag in (
            ('api_port = 0\napi_host = "0.0.0.0"\napi_token_file = "t"', False, False),
            ('api_host = "0.0.0.0"', True, False),  # --api-port given
            ('api_host = "127.0.0.1"', False, False),  # the default, said out loud
            ('[ota]\nenabled = false\nmodels_dir = "m"\nprobation_s = 30.0', False, False),
            ('[ota]\nmodels_dir = "m"', False, True),  # --ota given
            ("[ota]\nprobation_s = 30.0", False, False)):  # its default, said out loud
        config_keys_that_do_nothing(str(toml(tmp_path, body)), port_flag, ota_flag)
    with pytest.raises(click.ClickException, match=r"\.toml: \[ota\] probation_s is for "
                                                   r"enabled \(or its flag\)"):
        config_keys_that_do_nothing(str(toml(tmp_path, "[ota]\nprobation_s = 60.0")),
                                    True, False)
