from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from vitaledge import __version__
from vitaledge.cli import main


def all_commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, (*prefix, name))


def test_version():
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output


def test_every_command_has_help():
    runner = CliRunner()
    cmds = list(all_commands(main))
    assert ("train", "beat") in cmds and ("data", "synth") in cmds and ("evaluate",) in cmds
    for path in cmds:
        r = runner.invoke(main, [*path, "--help"])
        assert r.exit_code == 0, (path, r.output)
        assert "Usage:" in r.output


def test_train_without_data_is_a_usage_error(tmp_path):
    r = CliRunner().invoke(main, ["train", "beat", "--out", str(tmp_path / "r")])
    assert r.exit_code != 0 and "--data DIR" in r.output
    r = CliRunner().invoke(main, ["train", "beat", "--data", str(tmp_path), "--balance",
                                  "hybrid:x", "--out", str(tmp_path / "r")])
    assert r.exit_code != 0 and "hybrid needs a positive count" in r.output


def test_arch_choices_are_the_zoo_registry():
    from vitaledge.train import zoo
    from vitaledge.train.cli import train_beat_cmd, train_emotion_ecg_cmd

    def choices(cmd):
        return next(p.type.choices for p in cmd.params if p.name == "arch")

    beat = [name for name, arch in zoo.ZOO.items() if arch.task == "beat"]
    assert sorted(choices(train_beat_cmd)) == sorted(beat)
    assert {"cnn1d", "resnet1d", "tiny", "resnet1d-rr", "tiny-rr"} <= set(beat)
    ecg = [name for name, arch in zoo.ZOO.items() if arch.task == "emotion-ecg"]
    assert sorted(choices(train_emotion_ecg_cmd)) == sorted(ecg)
    r = CliRunner().invoke(main, ["train", "beat", "--arch", "cnnlstm_ecg", "--out", "x"])
    assert r.exit_code == 2 and "'cnnlstm_ecg' is not one of" in r.output


def _spy(monkeypatch, module, name):
    """Replace ``module.name`` with a recorder of its arguments."""
    calls = []
    monkeypatch.setattr(module, name, lambda *a, **k: calls.append((a, k)) or [])
    return calls


def test_old_spelling_still_works_and_warns(tmp_path, monkeypatch):
    from vitaledge.firmware_sim.patients import ecg

    calls = _spy(monkeypatch, ecg, "synth_database")
    runner = CliRunner()
    new = runner.invoke(main, ["data", "synth", "--out", str(tmp_path), "--n-records", "3"])
    old = runner.invoke(main, ["data", "synth", "--out", str(tmp_path), "--records", "3"])
    assert new.exit_code == 0 and old.exit_code == 0, old.output
    assert calls[0] == calls[1] and calls[0][1]["n_records"] == 3
    assert "deprecated" not in new.stderr
    assert "--records is deprecated" in old.stderr and "--n-records" in old.stderr
    assert "deprecated" not in old.stdout
    both = runner.invoke(main, ["data", "synth", "--out", str(tmp_path), "--n-records", "2",
                                "--records", "3"])
    assert both.exit_code == 2 and "--n-records once" in both.output
    assert "--records" not in runner.invoke(main, ["data", "synth", "--help"]).output


def test_old_spellings_reach_the_same_call(tmp_path, monkeypatch):
    """--records DIR (now --data DIR) and --record-list (now --records) in bench stream;
    a repeatable sink: device run --out (now --sink) merges with --sink."""
    from vitaledge.device.bench import stream

    calls = _spy(monkeypatch, stream, "bench_stream")
    monkeypatch.setattr(stream, "format_stream", lambda res: "table")
    art = tmp_path / "art"
    art.mkdir()
    runner = CliRunner()
    new = runner.invoke(main, ["bench", "stream", str(art), "--data", str(tmp_path),
                               "--records", "100,101"])
    old = runner.invoke(main, ["bench", "stream", str(art), "--records", str(tmp_path),
                               "--record-list", "100,101"])
    assert new.exit_code == 0 and old.exit_code == 0, old.output
    assert calls[0] == calls[1]
    assert calls[0][0][1] == str(tmp_path) and calls[0][0][3] == ["100", "101"]
    assert "--records DIR is deprecated" in old.stderr and "--record-list" in old.stderr
    missing = runner.invoke(main, ["bench", "stream", str(art)])
    assert missing.exit_code == 2 and "--data" in missing.output


def test_device_run_out_is_the_old_spelling_of_sink(tmp_path, monkeypatch):
    from vitaledge.device.stream import daemon

    seen = []

    class FakeDaemon:
        def __init__(self, cfg):
            seen.append(cfg.out)

        def run(self):
            return {}

    monkeypatch.setattr(daemon, "Daemon", FakeDaemon)
    a, b = str(tmp_path / "a.jsonl"), str(tmp_path / "b.db")
    r = CliRunner().invoke(main, ["device", "run", "--model", "m", "--source", "stdin",
                                  "--sink", a, "--out", b])
    assert r.exit_code == 0, r.output
    assert seen == [[a, b]] and "--out is deprecated" in r.stderr


@pytest.mark.parametrize("stopped, code, words", [
    (True, 0, "frames refused"),  # systemctl stop: exit 0, the summary says what was refused
    (False, 1, "Error: no sample could be read from stdin: 5 frames refused"),
])
def test_a_daemon_stopped_by_a_signal_exits_0_whatever_it_read(monkeypatch, stopped, code,
                                                               words):
    """The exit-1 checks of a run that analysed nothing apply to a source that ended by
    itself; a daemon stopped by a signal before any readable sample exits 0."""
    from vitaledge.device.stream import daemon

    class FakeDaemon:
        def __init__(self, cfg):
            pass

        def run(self):
            return {"samples": 0, "stop_requested": stopped, "realtime_factor": None,
                    "source_stats": {"bad_payloads": 5}, "events_this_run": {}}

    monkeypatch.setattr(daemon, "Daemon", FakeDaemon)
    r = CliRunner().invoke(main, ["device", "run", "--model", "m", "--source", "stdin"])
    assert r.exit_code == code and words in r.output, r.output


def test_keygen_key_and_old_out(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["device", "keygen", "--key", str(tmp_path / "k.pem")])
    assert r.exit_code == 0 and (tmp_path / "k.pem.pub").exists()
    r = runner.invoke(main, ["device", "keygen", "--out", str(tmp_path / "o.pem")])
    assert r.exit_code == 0 and (tmp_path / "o.pem.pub").exists()
    assert "--out is deprecated" in r.stderr and "--key" in r.stderr
    r = runner.invoke(main, ["device", "keygen"])
    assert r.exit_code == 2 and "Missing option '--key'" in r.output


def test_json_results_file_error_is_one_line(tmp_path, monkeypatch):
    from vitaledge.device.bench import detector

    monkeypatch.setattr(detector, "bench_detector", lambda d, with_xqrs, **kw: {"rows": []})
    monkeypatch.setattr(detector, "format_table", lambda res: "table")
    made = tmp_path / "new-dir" / "out.json"  # its folder is made first, as the sinks'
    r = CliRunner().invoke(main, ["bench", "detector", "--data", str(tmp_path), "--no-xqrs",
                                  "--json", str(made)])
    assert r.exit_code == 0 and made.exists(), r.output
    (tmp_path / "a-file").write_text("")
    bad = tmp_path / "a-file" / "out.json"  # a folder that cannot be made: before the bench
    r = CliRunner().invoke(main, ["bench", "detector", "--data", str(tmp_path), "--no-xqrs",
                                  "--json", str(bad)])
    assert r.exit_code == 1 and r.exception is not None
    assert r.stderr.strip().count("\n") == 0 and f"--json {bad}: cannot create" in r.stderr
    assert "table" not in r.stdout
    ok = tmp_path / "ok.json"
    r = CliRunner().invoke(main, ["bench", "detector", "--records", str(tmp_path), "--no-xqrs",
                                  "--json", str(ok)])
    # --records is now the record list; a directory given to it is the old --data
    assert r.exit_code == 0 and ok.exists() and "--records DIR is deprecated" in r.stderr


def test_demo_is_a_click_command_with_the_old_options(tmp_path, monkeypatch):
    import vitaledge.demo as demo

    calls = _spy(monkeypatch, demo, "run")
    runner = CliRunner()
    r = runner.invoke(main, ["demo", "--out", str(tmp_path), "--n-records", "3", "--minutes",
                             "1", "--epochs", "2", "--seed", "4"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["demo", "--out", str(tmp_path), "--records", "3", "--minutes",
                             "1", "--epochs", "2", "--seed", "4"])
    assert r.exit_code == 0 and "--records is deprecated" in r.stderr
    assert calls[0] == calls[1] == ((Path(tmp_path), 1.0, 3, 2), {"seed": 4})


def test_a_run_trained_on_a_relative_folder_converts_from_anywhere(synth_dir, tmp_path,
                                                                   monkeypatch):
    """train stores --data as an absolute path (convert and evaluate read the beats again
    from it); a run whose config still names a folder that is not there is refused naming
    its config.json, not with "data: not a directory"."""
    import json

    monkeypatch.chdir(synth_dir.parent)
    run = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "beat", "--arch", "tiny", "--data", synth_dir.name,
                                  "--split", "record", "--test-records", "s003",
                                  "--epochs", "1", "--out", str(run)])
    assert r.exit_code == 0, r.output
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["records"] == str(synth_dir.resolve())
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["convert", str(run), "--target", "cpu", "--quant", "none",
                                  "--out", str(tmp_path / "art")])
    assert r.exit_code == 0, r.output
    cfg["records"] = "data"  # as runs trained before stored it
    (run / "config.json").write_text(json.dumps(cfg))
    r = CliRunner().invoke(main, ["convert", str(run), "--target", "cpu", "--quant", "none",
                                  "--out", str(tmp_path / "art2")])
    assert r.exit_code == 1
    assert r.output.strip().splitlines()[-1] == (
        f"Error: {run}/config.json: the run's record directory 'data' (as given to train, "
        "relative to where that ran) is not a directory here; convert reads the run's beats "
        "again from it: run convert from that folder")
