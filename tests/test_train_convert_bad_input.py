"""Bad input to ``train beat``, ``convert`` and ``evaluate`` gets one ``Error:`` line
naming the option or file at fault and a non-zero exit, never a traceback, and fails
before any work: no model is trained or converted here, and nothing is written."""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import error_line, invoke

from vitaledge.device.dsp.windows import WindowSpec
from vitaledge.train.config import BeatTrainConfig


def keras_archive(config: bytes = b'{"class_name": "Functional"}') -> bytes:
    """Bytes laid out as a ``.keras`` archive (what is in it is never loaded here)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("metadata.json", b'{"keras_version": "2.19.0"}')
        z.writestr("config.json", config)
        z.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 40)
    return buf.getvalue()


def beat_run(tmp_path, model: bytes | None, name: str = "run"):
    """A beat run directory (config.json) with ``model`` as its model.keras (None: none)."""
    run = tmp_path / name
    run.mkdir()
    BeatTrainConfig(arch="tiny", records=str(tmp_path), window=WindowSpec.kachuee()
                    ).save(run / "config.json")
    if model is not None:
        (run / "model.keras").write_bytes(model)
    return run


# ----------------------------------------------------------------------- train beat options

TRAIN_BAD = [
    (["--fs", "nan"], ["--fs", "nan", "10-10000"]),
    (["--fs", "0"], ["--fs", "10", "10000"]),
    (["--fs", "inf"], ["--fs"]),
    (["--fs", "1e6"], ["--fs", "10000"]),
    (["--fs", "x"], ["--fs", "'x'"]),
    (["--before", "nan"], ["--before", "finite"]),
    (["--before", "-0.1"], ["--before"]),
    (["--before", "1e9"], ["--before", "0<=x<=5"]),
    (["--after", "1e6"], ["--after"]),
    (["--after", "0"], ["--after"]),
    (["--after", "inf"], ["--after", "inf"]),
    (["--window", "centered", "--before", "0", "--after", "0.001"],
     ["--before", "--after", "length"]),
    (["--epochs", "-1"], ["--epochs", "-1"]),
    (["--epochs", "0"], ["--epochs"]),
    (["--batch-size", "0"], ["--batch-size"]),
    (["--lr", "nan"], ["--lr", "finite"]),
    (["--lr", "0"], ["--lr"]),
    (["--lr", "-1e-3"], ["--lr"]),
    (["--patience", "-1"], ["--patience"]),
    (["--seed", "-1"], ["--seed", "-1"]),
    (["--val-fraction", "0"], ["--val-fraction"]),
    (["--val-fraction", "1"], ["--val-fraction"]),
    (["--val-fraction", "nan"], ["--val-fraction", "finite"]),
    (["--test-fraction", "1.5"], ["--test-fraction"]),
    (["--test-fraction", "-0.2"], ["--test-fraction"]),
    (["--s-rule-threshold", "nan"], ["--s-rule-threshold", "finite"]),
]


@pytest.mark.parametrize("bad,words", TRAIN_BAD, ids=[" ".join(a) for a, _ in TRAIN_BAD])
def test_train_beat_refuses_a_bad_number_before_any_work(tmp_path, bad, words):
    out = tmp_path / "out"
    line = error_line(invoke(["train", "beat", "--arch", "tiny", "--data", tmp_path,
                              *bad, "--out", out]))
    for w in words:
        assert w in line, line
    assert not out.exists()  # nothing started


def test_train_beat_accepts_the_edges_of_its_ranges():
    """The checks above refuse no sensible value (parsed only: nothing runs)."""
    from vitaledge.train.cli import train_beat_cmd

    for args, want in ((["--fs", "10"], 10.0), (["--fs", "10000"], 10_000.0),
                       (["--fs", "360"], 360.0), (["--before", "0"], 0.0),
                       (["--patience", "0"], 0), (["--seed", "0"], 0),
                       (["--seed", "4294967295"], 4294967295), (["--epochs", "1"], 1),
                       (["--val-fraction", "0.5"], 0.5), (["--lr", "3e-3"], 0.003)):
        ctx = train_beat_cmd.make_context("beat", [*args, "--out", "r"])
        assert ctx.params[args[0][2:].replace("-", "_")] == want, args


# -------------------------------------------------------------------------- convert options

CONVERT_BAD = [
    (["--max-drop", "nan"], ["--max-drop", "nan", "finite"]),
    (["--max-drop", "inf"], ["--max-drop", "finite"]),
    (["--max-drop", "-1"], ["--max-drop", "-1"]),
    (["--prune", "1"], ["--prune", "[0, 1)"]),
    (["--prune", "nan"], ["--prune", "nan"]),
    (["--prune", "0,-0.5"], ["--prune", "-0.5"]),
    (["--prune", "abc"], ["--prune", "'abc'", "not a number"]),
    (["--prune", "0,,0.5"], ["--prune", "not a number"]),
    (["--prune-epochs", "0"], ["--prune-epochs"]),
    (["--representative", "0"], ["--representative"]),
    (["--representative", "-5"], ["--representative"]),
    (["--threads", "0"], ["--threads"]),
    (["--threads", "999999"], ["--threads"]),
    (["--prune", "0.5,0.5"], ["--prune", "0.5 given twice"]),
    (["--prune-epochs", "99999999999999999999"], ["--prune-epochs"]),
    (["--target", "cpu,micro,cpu"], ["--target", "cpu given twice"]),
]


@pytest.mark.parametrize("bad,words", CONVERT_BAD, ids=[" ".join(a) for a, _ in CONVERT_BAD])
def test_convert_refuses_a_bad_number_before_any_work(tmp_path, bad, words):
    """Checked as the options are parsed: a NaN --max-drop used to pass, the whole
    conversion run, and then 'accuracy dropped more than nan points' exit 1."""
    run = beat_run(tmp_path, keras_archive())
    out = tmp_path / "art"
    line = error_line(invoke(["convert", run, *bad, "--out", out]))
    for w in words:
        assert w in line, line
    assert not out.exists()


def test_convert_accepts_the_edges_of_its_ranges(tmp_path):
    from vitaledge.convert.cli import convert_cmd

    for args, want in ((["--max-drop", "0"], 0.0), (["--max-drop", "5"], 5.0),
                       (["--prune", "0,0.5,0.75"], "0,0.5,0.75"), (["--prune", "0"], "0"),
                       (["--representative", "1"], 1), (["--threads", "4"], 4)):
        ctx = convert_cmd.make_context("convert", [str(tmp_path), *args, "--out", "a"])
        assert ctx.params[args[0][2:].replace("-", "_")] == want, args


# ------------------------------------------------------------------ missing or corrupt model

def corrupt_models() -> dict[str, tuple[bytes, list[str]]]:
    """name -> (model.keras bytes, words the message must hold)."""
    good = keras_archive()
    flipped = bytearray(good)
    at = good.index(b"\x89HDF") + 100  # inside the stored weights member
    flipped[at] ^= 0xFF
    return {
        "truncated": (good[:len(good) // 2], ["not a Keras model", "truncated or corrupt"]),
        "garbage": (b"garbage " * 100, ["not a Keras model", "800 bytes"]),
        "empty": (b"", ["not a Keras model", "0 bytes"]),
        "bad-crc": (bytes(flipped), ["corrupt Keras model archive", "model.weights.h5",
                                     "CRC"]),
        "no-config": (_zip({"model.weights.h5": b"\x89HDF\r\n\x1a\n"}),
                      ["no config.json"]),
    }


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


CORRUPT = corrupt_models()


def test_convert_names_a_missing_model_keras(tmp_path):
    run = beat_run(tmp_path, None)
    out = tmp_path / "art"
    line = error_line(invoke(["convert", run, "--out", out]))
    assert str(run / "model.keras") in line and "missing" in line, line
    assert not out.exists()


@pytest.mark.parametrize("kind", list(CORRUPT))
def test_convert_names_a_corrupt_model_keras_and_keeps_what_out_holds(tmp_path, kind):
    data, words = CORRUPT[kind]
    run = beat_run(tmp_path, data)
    out = tmp_path / "art"
    out.mkdir()
    (out / "earlier.txt").write_text("kept\n")  # an earlier conversion's file
    line = error_line(invoke(["convert", run, "--out", out]))
    assert str(run / "model.keras") in line, line
    for w in words:
        assert w in line, line
    assert (out / "earlier.txt").read_text() == "kept\n"
    assert sorted(p.name for p in out.iterdir()) == ["earlier.txt"]
    assert (run / "model.keras").read_bytes() == data  # the run is left as it was


@pytest.mark.parametrize("kind", list(CORRUPT))
@pytest.mark.parametrize("as_file", [False, True], ids=["run-dir", "model-file"])
def test_evaluate_names_a_corrupt_model_keras_before_reading_data(tmp_path, kind, as_file):
    """The model is checked before the data: ``--data`` here is an empty directory that
    would be an error of its own."""
    data, words = CORRUPT[kind]
    run = beat_run(tmp_path, data)
    empty = tmp_path / "empty"
    empty.mkdir()
    json_out = tmp_path / "m.json"
    line = error_line(invoke(["evaluate", run / "model.keras" if as_file else run,
                              "--data", empty, "--json", json_out]))
    assert str(run / "model.keras") in line, line
    for w in words:
        assert w in line, line
    assert not json_out.exists()


def test_evaluate_names_a_missing_model_keras(tmp_path):
    run = beat_run(tmp_path, None)
    line = error_line(invoke(["evaluate", run]))
    assert str(run / "model.keras") in line and "missing" in line, line


def test_evaluate_names_the_runs_record_directory_when_it_is_not_here(tmp_path):
    """A run keeps its --data path as given (relative to where it was trained); evaluated
    from elsewhere it used to fail with the bare path and no hint."""
    run = beat_run(tmp_path, keras_archive())
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, "records": "../elsewhere/mitdb"}))
    line = error_line(invoke(["evaluate", run]))
    assert "../elsewhere/mitdb" in line and "give --data DIR" in line, line


@pytest.mark.parametrize("body,words", [("[]", "expected a JSON object, got []"),
                                         ("null", "expected a JSON object, got null"),
                                         ('{"task": "zzz"}', "task 'zzz' is not one of beat")])
def test_evaluate_names_a_config_json_that_is_not_a_run_config(tmp_path, body, words):
    """Valid JSON of the wrong shape, or a task no model is trained for: named, before any
    data is read (it was an AttributeError, or the unknown task evaluated as a beat run)."""
    run = beat_run(tmp_path, keras_archive())
    (run / "config.json").write_text(body)
    line = error_line(invoke(["evaluate", run]))
    assert str(run / "config.json") in line and words in line, line


@pytest.mark.parametrize("field, value, words", [
    ("seed", "zero", "seed: expected int, got 'zero'"),
    ("seed", 1.5, "seed: expected int, got 1.5"),
    ("seed", -1, "seed: -1 is out of range"),
    ("records", 123, "records: expected str | None, got 123"),
    ("record_list", [1, 2], "record_list: expected a list of names (strings), got [1, 2]"),
    ("val_fraction", "x", "val_fraction: expected float, got 'x'"),
    ("test_fraction", 1.5, "test_fraction: 1.5 is not a fraction from 0 to under 1"),
    ("rr", "bogus", "rr: expected dict | None, got 'bogus'"),
    ("s_rule", "bogus", "s_rule: 'bogus', expected one of network, timing"),
    ("vote", 3, "vote: expected str, got 3"),
    ("s_rule_threshold", 5.0, "s_rule_threshold: 5.0 is not a probability between 0 and 1"),
])
def test_evaluate_and_convert_name_a_config_field_of_the_wrong_kind(tmp_path, field, value,
                                                                    words):
    """A config.json edited by hand: a wrong type was a TypeError traceback from deep in
    the data (seed, records, record_list, val_fraction), a message that named nothing
    (rr), or was accepted and ignored (s_rule, vote). Now one line naming the field, from
    evaluate and convert alike, before any data is read."""
    run = beat_run(tmp_path, keras_archive())
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, field: value}))
    for cmd in (["evaluate", run], ["convert", run, "--out", tmp_path / "art"]):
        res = invoke(cmd)
        assert res.exit_code == 1, res.output
        line = error_line(res)
        assert f"{run / 'config.json'}: not a valid training config: {words}" in line, line


@pytest.mark.parametrize("edit, words", [
    (lambda c: c.update(rr={"local_beats": 10, "long_s": 300.0, "min_rr_s": 0.2,
                            "max_rr_s": 2.5, "irregular_beats": 20,
                            "features": ["pre_rr", "post_rr", "local_rr", "long_rr",
                                         "pre_rel", "post_rel", "local_rel",
                                         "irregularity"]}),
     "the model takes 1 input(s) (beat), the data 2 (beat, rr)"),
    (lambda c: c["window"].update(length=150),
     "the model's input beat is [187, 1] per beat, the data's [150, 1]"),
])
def test_a_model_that_is_not_its_configs_is_named_in_one_line(tiny_run, tmp_path, edit,
                                                               words):
    """config.json describing other inputs than the model takes (RR features added, another
    window length; a model copied from another run) was Keras's 14-line dump of its graph's
    frames from evaluate and convert."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run[0], run)
    cfg = json.loads((run / "config.json").read_text())
    edit(cfg)
    (run / "config.json").write_text(json.dumps(cfg))
    for cmd in (["evaluate", run], ["convert", run, "--target", "cpu", "--out", tmp_path / "a"]):
        res = invoke(cmd)
        assert res.exit_code == 1, res.output
        line = error_line(res)
        assert words in line and "the model and config.json are not of one run" in line, line
        assert "in user code" not in res.output, res.output


def test_evaluate_an_emotion_run_names_its_corrupt_model(tmp_path):
    run = tmp_path / "emo"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"task": "emotion-ecg", "labels": ["a", "b"]}))
    (run / "model.keras").write_bytes(CORRUPT["truncated"][0])
    line = error_line(invoke(["evaluate", run]))
    assert str(run / "model.keras") in line and "not a Keras model" in line, line


def test_a_sound_archive_or_hdf5_passes_the_check(tmp_path):
    """The check refuses no file Keras could load: a .keras archive, or legacy HDF5."""
    from vitaledge.train.run_files import check_keras_file

    (tmp_path / "a.keras").write_bytes(keras_archive())
    (tmp_path / "b.keras").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    check_keras_file(tmp_path / "a.keras")
    check_keras_file(tmp_path / "b.keras")


def test_a_model_keras_cannot_load_is_a_value_error_naming_it(tmp_path):
    """Past the structural check (a whole archive, but its config is not JSON): Keras's
    own error, as a ValueError naming the file."""
    from vitaledge.train.run_files import load_keras

    path = tmp_path / "model.keras"
    path.write_bytes(keras_archive(config=b"{garbage"))
    with pytest.raises(ValueError, match=r"model\.keras: cannot load the Keras model"):
        load_keras(path)


# -------------------------------------------------------------- a converted artifact's model

def garbage_artifact(tmp_path, model: bytes = b"garbage " * 100):
    """An artifact whose model.tflite is garbage (``model``) with the manifest's sha256
    and size written to match it: whole as a file, but no model."""
    art = tmp_path / "cpu-int8"
    art.mkdir()
    (art / "model.tflite").write_bytes(model)
    q = {"scale": 0.0039, "zero_point": -128}
    manifest = {
        "schema_version": 1, "task": "beat", "labels": ["N", "S", "V", "F", "Q"],
        "model_file": "model.tflite", "sha256": hashlib.sha256(model).hexdigest(),
        "size_bytes": len(model), "target": "cpu", "quantization": "int8",
        "input": {"name": "x", "shape": [1, 187, 1], "dtype": "int8", "quantization": q},
        "output": {"name": "y", "shape": [1, 5], "dtype": "int8", "quantization": q},
        "signal": {"kind": "beat", "window": WindowSpec.kachuee().to_dict(), "lead": "MLII"},
        "pruning": None, "source_run": {"path": str(tmp_path / "run")}, "metrics": {},
        "created": "2026-01-01T00:00:00+00:00", "vitaledge_version": "0.1.0", "extra": {},
    }
    (art / "manifest.json").write_text(json.dumps(manifest))
    return art


def test_evaluate_names_an_artifact_model_the_interpreter_refuses(tmp_path):
    """It used to end a 50-line chained traceback (ModelLoadError); ``device run`` said
    it in one line, and now so does evaluate, naming the file."""
    art = garbage_artifact(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    for target in (art, art / "model.tflite"):
        line = error_line(invoke(["evaluate", target, "--data", empty]))
        assert f"the interpreter refused {art / 'model.tflite'}: " in line, line
        assert line.count(str(art / "model.tflite")) == 1, line  # named once


def test_every_command_names_a_model_the_interpreter_refuses(tmp_path, synth_dir, data_dir):
    """bench stream and bench noise-stress --model ended a 54-line traceback on a model
    the interpreter refuses (device run, firmware mcu and evaluate said it in one line);
    device run did not say which of its two models it was."""
    art = garbage_artifact(tmp_path)
    model = str(art / "model.tflite")
    runs = {
        "bench stream": ["bench", "stream", art, "--data", synth_dir, "--records", "s000"],
        "bench noise-stress": ["bench", "noise-stress", "--record", data_dir / "mitdb" / "100",
                               "--noise", data_dir / "nstdb-noise" / "ma", "--snr", "6",
                               "--no-xqrs", "--model", art],
        "firmware mcu": ["firmware", "mcu", art, "--data", synth_dir],
        "device run --model": ["device", "run", "--model", art, "--source",
                               f"replay:{synth_dir / 's000'}", "--speed", "max", "--sink",
                               tmp_path / "a.jsonl", "--api-port", "0"],
    }
    for name, args in runs.items():
        line = error_line(invoke(args))
        assert f"the interpreter refused {model}: " in line, (name, line)
        assert line.count(model) == 1, (name, line)
    assert not (tmp_path / "a.jsonl").exists()
    # an empty model file: firmware export said "`model_path` or `model_content` must be
    # specified", naming neither the file nor what was wrong with it
    (tmp_path / "e").mkdir()
    empty = garbage_artifact(tmp_path / "e", model=b"")
    line = error_line(invoke(["firmware", "export", empty, "--out", tmp_path / "fw"]))
    assert f"{empty / 'model.tflite'}: the model file is empty (0 bytes)" in line, line


# ------------------------------------------------------------- --out holding an earlier run

def earlier_run(path):
    """A directory holding an earlier run's files, and their bytes."""
    path.mkdir()
    files = {"model.keras": keras_archive(), "metrics.json": b'{"accuracy": 0.97}\n',
             "config.json": b"{}\n", "history.csv": b"epoch,loss\n0,1.0\n"}
    for name, data in files.items():
        (path / name).write_bytes(data)
    return files


def assert_untouched(path, files):
    assert {p.name: p.read_bytes() for p in path.iterdir()} == files


TRAIN_COMMANDS = [
    ["train", "beat", "--arch", "tiny", "--data", "{data}"],
    ["train", "emotion-ecg"],
    ["train", "emotion-multimodal"],
    ["train", "emotion-speech", "--synth-per-class", "2"],
]


@pytest.mark.parametrize("cmd", TRAIN_COMMANDS, ids=[c[1] for c in TRAIN_COMMANDS])
def test_train_refuses_an_out_holding_an_earlier_run(tmp_path, cmd):
    out = tmp_path / "run"
    files = earlier_run(out)
    line = error_line(invoke([a.format(data=tmp_path) for a in cmd] + ["--out", out]))
    assert f"--out {out}" in line and "already holds" in line and "--overwrite" in line, line
    assert "config.json, history.csv, metrics.json and 1 more" in line, line
    assert_untouched(out, files)


def test_train_refuses_an_out_that_is_a_file_even_with_overwrite(tmp_path):
    out = tmp_path / "run"
    out.write_text("notes\n")
    line = error_line(invoke(["train", "beat", "--data", tmp_path, "--out", out,
                              "--overwrite"]))
    assert "--out" in line and str(out) in line and "is a file" in line, line
    assert out.read_text() == "notes\n"


@pytest.mark.parametrize("cmd", [["train", "beat", "--arch", "tiny", "--data", "{data}"],
                                 ["train", "emotion-ecg"], ["train", "emotion-multimodal"],
                                 ["demo"]])
def test_an_out_under_a_file_is_named_in_one_line(tmp_path, cmd):
    """--out below a regular file gave a 39-line NotADirectoryError traceback from the
    training (and the demo), after the data was read."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine\n")
    out = blocker / "run"
    res = invoke([a.format(data=tmp_path) for a in cmd] + ["--out", out])
    assert res.exit_code == 1, res.output
    assert error_line(res) == f"Error: --out {out}: {blocker} is a file, not a directory"
    assert blocker.read_text() == "mine\n"


@pytest.mark.parametrize("args, option", [(["--minutes", "nan"], "--minutes"),
                                          (["--minutes", "0"], "--minutes"),
                                          (["--n-records", "0"], "--n-records"),
                                          (["--epochs", "0"], "--epochs")])
def test_demo_refuses_implausible_sizes_before_it_starts(tmp_path, args, option):
    res = invoke(["demo", "--out", tmp_path / "d", *args])
    assert res.exit_code == 2 and f"Invalid value for '{option}'" in res.output, res.output
    assert not (tmp_path / "d").exists()


def test_train_beat_overwrite_lets_the_run_start(tmp_path):
    """With --overwrite the check passes and the next error is the data's own (an empty
    --data directory), so the run got as far as reading it. A run refused there keeps the
    earlier run, byte for byte: --overwrite used to remove it before the data was read, so
    a mistyped --data cost the earlier model (a reviewer's truncated .dat did)."""
    out = tmp_path / "run"
    files = earlier_run(out)
    (out / "notes.txt").write_text("mine")
    empty = tmp_path / "empty"
    empty.mkdir()
    line = error_line(invoke(["train", "beat", "--arch", "tiny", "--data", empty, "--out",
                              out, "--overwrite"]))
    assert "already holds" not in line and str(empty) in line, line
    assert_untouched(out, {**files, "notes.txt": b"mine"})


def test_replacing_sets_the_earlier_run_aside_and_returns_it_on_failure(tmp_path,
                                                                         monkeypatch):
    """What ``--overwrite`` does around a run: the earlier outputs leave while it writes;
    a failure (an error or Ctrl-C) removes what it wrote and brings them back, a success
    removes them; the user's own files are never touched, and a folder left aside by a
    killed run is not written over."""
    import shutil

    import click

    from vitaledge.train.run_dir import ASIDE, RUN_OUTPUTS, replacing

    out = tmp_path / "run"
    files = earlier_run(out)
    (out / "fold-1").mkdir()
    (out / "fold-1" / "model.keras").write_bytes(b"fold")
    (out / "notes.txt").write_bytes(b"mine")
    for exc in (ValueError("bad data"), KeyboardInterrupt()):
        with pytest.raises(type(exc)), replacing(out, RUN_OUTPUTS, True):
            assert sorted(p.name for p in out.iterdir()) == [ASIDE, "notes.txt"]
            (out / "config.json").write_bytes(b"new")  # the failed run's half
            (out / "metrics.json").write_bytes(b"new")
            (out / "mel").mkdir(exist_ok=True)  # a --cache folder the user put in --out
            (out / "mel" / "clip.npy").write_bytes(b"cached")
            raise exc
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == {
            **files, "notes.txt": b"mine"}
        assert (out / "fold-1" / "model.keras").read_bytes() == b"fold"
        assert (out / "mel" / "clip.npy").read_bytes() == b"cached"  # not the run's
        shutil.rmtree(out / "mel")
    with replacing(out, RUN_OUTPUTS, False):  # no --overwrite: nothing moves
        assert (out / "model.keras").exists()
    with replacing(out, RUN_OUTPUTS, True):
        (out / "model.keras").write_bytes(b"new model")
    assert sorted(p.name for p in out.iterdir()) == ["model.keras", "notes.txt"]
    # a move that fails part-way (a folder the user cannot write): the moved ones come back
    # and nothing is removed; it used to delete the ones not moved yet
    (out / "metrics.json").write_bytes(b"m")
    (out / "splits.npz").write_bytes(b"s")
    rename = Path.rename

    def refuse(self, target):
        if self.name == "splits.npz":
            raise PermissionError(13, "Permission denied", str(self))
        return rename(self, target)
    with monkeypatch.context() as m:
        m.setattr(Path, "rename", refuse)
        with pytest.raises(click.ClickException, match=r"cannot set the earlier outputs "
                                                       r"aside \(.*splits\.npz\): Permission"):
            with replacing(out, RUN_OUTPUTS, True):
                pass
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {
        "model.keras": b"new model", "metrics.json": b"m", "splits.npz": b"s",
        "notes.txt": b"mine"}
    (out / ASIDE).mkdir()
    with pytest.raises(click.ClickException, match="left from an interrupted run"):
        with replacing(out, RUN_OUTPUTS, True):
            pass
    assert (out / "model.keras").read_bytes() == b"new model"


def test_speech_fold_checks_its_own_fold_directory(tmp_path):
    """``--fold N`` writes ``--out/fold-N`` beside the other folds' directories: those and
    the folds summary are this run's own, only ``fold-N`` holding files is refused."""
    out = tmp_path / "folds"
    (out / "fold-1").mkdir(parents=True)
    (out / "fold-1" / "metrics.json").write_text("{}\n")
    (out / "folds.json").write_text("{}\n")
    args = ["train", "emotion-speech", "--synth-per-class", "2", "--split", "actors",
            "--out", out]
    line = error_line(invoke([*args, "--fold", "1"]))
    assert f"--out {out / 'fold-1'}: already holds metrics.json" in line, line
    r = invoke([*args, "--fold", "2", "--data", tmp_path / "missing"])
    assert "already holds" not in r.output, r.output  # fold-2 is new: the check passed
    (out / "model.keras").write_bytes(b"an unrelated run's model")  # not a fold run's own
    line = error_line(invoke([*args, "--fold", "2"]))
    assert f"--out {out}: already holds model.keras" in line, line


def test_convert_refuses_an_out_holding_earlier_artifacts(tmp_path):
    run = beat_run(tmp_path, keras_archive())
    out = tmp_path / "art"
    files = earlier_run(out)
    line = error_line(invoke(["convert", run, "--out", out]))
    assert f"--out {out}: already holds" in line and "--overwrite" in line, line
    assert_untouched(out, files)
    line = error_line(invoke(["convert", run, "--out", run]))  # the run itself
    assert f"--out {run}: already holds config.json, model.keras" in line, line


@pytest.mark.parametrize("tf_config,writes", [
    (None, True),
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}, True),
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}, False),
    ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "worker",
                                                                 "index": 0}}, False),
    ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "chief",
                                                                 "index": 0}}, True),
])
def test_only_the_process_that_writes_out_checks_it(tmp_path, monkeypatch, tf_config,
                                                    writes):
    """A multi-worker cluster's other workers write nothing into --out (the chief may
    already have), so only the chief refuses one that holds files; a command that never
    runs as a worker (``convert``, the emotion trainers) checks whatever TF_CONFIG says."""
    import click

    from vitaledge.train.run_dir import check_fresh, writes_out

    environ = {} if tf_config is None else {"TF_CONFIG": json.dumps(tf_config)}
    assert writes_out(environ) is writes
    out = tmp_path / "run"
    earlier_run(out)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    if writes:
        with pytest.raises(click.ClickException, match="already holds"):
            check_fresh(out, overwrite=False, cluster=True)
    else:
        check_fresh(out, overwrite=False, cluster=True)
    with pytest.raises(click.ClickException, match="already holds"):
        check_fresh(out, overwrite=False)


def test_a_garbled_tf_config_is_named():
    import click

    from vitaledge.train.run_dir import writes_out

    with pytest.raises(click.ClickException, match="TF_CONFIG"):
        writes_out({"TF_CONFIG": "{not json"})


@pytest.mark.parametrize("content,words", [
    (b"", "empty file (0 bytes), not a valid .npz"),
    (b"PK\x03\x04 not the rest of a zip", "not a valid .npz"),
    (None, "no train_record/train_sample arrays"),
    # gone (a run copied without it): evaluate and convert scored a changed folder in silence
    ("missing", "missing, so the beats rebuilt from the run's config cannot be checked")])
def test_a_damaged_splits_npz_is_named(tmp_path, content, words):
    """convert and evaluate check the run's splits.npz: a damaged one gave numpy's or
    zipfile's words (or named the run directory), not the file."""
    import numpy as np

    from vitaledge.train.data import check_split_ids

    path = tmp_path / "splits.npz"
    if content is None:
        np.savez(path, other=np.zeros(3))
    elif content != "missing":
        path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(f"{path}: {words}")):
        check_split_ids(path, None, None, None)


def test_a_diverged_fit_is_an_error_and_leaves_no_model(tmp_path):
    """A loss of NaN (train beat --lr 1e300) wrote model.keras and 'run written', exit 0."""
    from vitaledge.train.backend import check_converged

    check_converged({"loss": [0.9, 0.5], "val_loss": [1.0, 0.7]})  # a sound fit passes
    ckpt = tmp_path / "model.keras"
    for history in ({"loss": [0.9, float("nan")]}, {"loss": [0.9], "val_loss": [float("inf")]}):
        ckpt.write_bytes(b"weights of a diverged fit")
        with pytest.raises(ValueError, match=r"^training diverged: (val_)?loss is (nan|inf) at "
                                             r"epoch \d"):
            check_converged(history, ckpt)
        assert not ckpt.exists()


@pytest.mark.parametrize("args,words", [
    (["--lr", "nan"], "'--lr'"), (["--momentum", "1"], "'--momentum'"),
    (["--augment", "-1"], "'--augment'"), (["--snr", "nan,10"], "--snr"),
    (["--snr", "30,15"], "LOW <= HIGH"), (["--sample-rate", "1e9"], "'--sample-rate'"),
    (["--duration", "inf"], "'--duration'"), (["--batch-size", "0"], "'--batch-size'"),
    (["--width", "0"], "'--width'"), (["--time-budget", "nan"], "'--time-budget'")])
def test_train_speech_refuses_a_bad_number_before_any_work(tmp_path, args, words):
    line = error_line(invoke(["train", "emotion-speech", "--synth-per-class", "2",
                              "--out", tmp_path / "r", *args]))
    assert words in line, line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("cmd,args,words", [
    ("emotion-ecg", ["--lr", "-1"], "'--lr'"),
    ("emotion-ecg", ["--dropout", "1"], "'--dropout'"),
    ("emotion-ecg", ["--synth-seconds", "1e12"], "'--synth-seconds'"),
    ("emotion-multimodal", ["--window-seconds", "1e9"], "'--window-seconds'"),
    ("emotion-multimodal", ["--physio-fs", "1e9"], "'--physio-fs'"),
    ("emotion-multimodal", ["--conv-layers", "0"], "'--conv-layers'"),
    ("emotion-multimodal", ["--synth-per-class", "0"], "'--synth-per-class'")])
def test_train_emotion_refuses_a_bad_number_before_any_work(tmp_path, cmd, args, words):
    line = error_line(invoke(["train", cmd, "--out", tmp_path / "r", *args]))
    assert words in line, line
    assert not (tmp_path / "r").exists()


def test_train_beat_takes_one_data_set(tmp_path):
    """--csv-train beside --data was ignored, yet recorded in config.json."""
    csv = tmp_path / "t.csv"
    csv.write_text("0," * 187 + "0\n")
    for args, words in ((["--data", tmp_path, "--csv-train", csv], "not both"),
                        (["--data", tmp_path, "--csv-test", csv], "not both"),
                        (["--csv-test", csv], "give --data DIR or --csv-train FILE")):
        line = error_line(invoke(["train", "beat", *args, "--out", tmp_path / "r"]))
        assert words in line, line
        assert not (tmp_path / "r").exists()


def test_the_multimodal_grid_is_checked_as_the_options_are():
    """';;;', a key twice (the last won), an empty value and conv_layers=0 ran, exit 0."""
    from vitaledge.train.emotion import DEFAULT_GRID, parse_grid

    assert parse_grid("") == DEFAULT_GRID
    assert parse_grid("conv_layers=1,2; dropout=0.5") == {"conv_layers": [1, 2],
                                                          "dropout": [0.5]}
    for text, words in ((";;;", "names no KEY"), ("conv_layers=1;conv_layers=2", "twice"),
                        ("dropout=0.2,,0.5", "an empty value"),
                        ("conv_layers=0", "conv_layers=0 is outside 1..8"),
                        ("dropout=nan", "dropout=nan is outside"),
                        ("dropout=1", "dropout=1.0 is outside"), ("width=2", "KEY one of")):
        with pytest.raises(ValueError, match=re.escape(words)):
            parse_grid(text)


@pytest.mark.parametrize("args,words", [
    (["--lstm-units", "16"], "--lstm-units: cnn_speech does not take it (only tdcnnlstm_speech"),
    (["--pools", "2,2,2,2"], "--pools: cnn_speech does not take it")])
def test_train_speech_refuses_a_network_option_its_network_does_not_take(tmp_path, args, words):
    """The default (robust) recipe's cnn_speech has no LSTM and pools of its own: both
    options were dropped silently and the run recorded them in config.json."""
    line = error_line(invoke(["train", "emotion-speech", "--synth-per-class", "2",
                              "--out", tmp_path / "r", *args]))
    assert words in line, line
    assert not (tmp_path / "r").exists()


def test_a_face_halved_to_nothing_is_one_line_naming_the_option():
    """--conv-layers 8 halved the 48-pixel face below one pixel and Keras printed a
    many-line traceback."""
    from vitaledge.train import zoo

    shapes = {"physio": (480, 2), "features": (8,), "face": (48, 48, 1)}
    for name in ("hybrid_multimodal", "cnn_face"):
        with pytest.raises(ValueError, match=r"^conv_layers 6: 6 halvings of the 48-pixel "
                                             r"face leave nothing \(at most 5\)$"):
            zoo.get(name, "emotion-multimodal").build(shapes, 5, conv_layers=6)
    assert zoo.get("cnn_face", "emotion-multimodal").build(
        shapes, 5, conv_layers=5).output_shape == (None, 5)


def test_evaluate_on_a_speaker_folds_directory_names_a_fold(tmp_path):
    """A --split actors run's top directory holds fold-N runs and folds.json, no config:
    evaluate said only 'no config.json or manifest.json'."""
    (tmp_path / "fold-1").mkdir()
    (tmp_path / "fold-2").mkdir()
    (tmp_path / "folds.json").write_text("{}")
    line = error_line(invoke(["evaluate", tmp_path]))
    assert "a K-fold run directory (fold-1, fold-2 here)" in line, line
    assert f"give one of its folds, e.g. {tmp_path / 'fold-1'}" in line, line


def test_evaluate_records_without_data_is_refused(tmp_path):
    """--records without --data was ignored: the run's own held-out beats were scored and
    the JSON said record_list None."""
    run = beat_run(tmp_path, keras_archive())
    line = error_line(invoke(["evaluate", run, "--records", "100"]))
    assert "--records" in line and "give --data too" in line, line


def test_an_empty_folder_left_by_a_failed_run_does_not_block_the_next(tmp_path):
    """A fold run that failed before training left an empty fold-1/, and the same command
    was then refused ('already holds fold-1'); a folder with a file in it still counts."""
    import click

    from vitaledge.train.run_dir import check_fresh

    out = tmp_path / "folds"
    (out / "fold-1" / "logs").mkdir(parents=True)
    check_fresh(out, overwrite=False)
    (out / "fold-1" / "logs" / "events.out").write_text("x")
    with pytest.raises(click.ClickException, match="already holds fold-1"):
        check_fresh(out, overwrite=False)


def test_evaluate_split_all_of_a_kaggle_run_asks_for_the_rows(tmp_path):
    """A run trained on Kaggle CSV rows has no WFDB directory for --split all to read: one
    line asking for --csv (it was a TypeError from deep in the record reader)."""
    run = beat_run(tmp_path, keras_archive())
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, "records": None,
                                                 "csv_train": str(tmp_path / "train.csv")}))
    line = error_line(invoke(["evaluate", run, "--split", "all"]))
    assert "trained on Kaggle CSV rows: give --csv FILE" in line, line


def test_overwrite_removes_the_earlier_runs_outputs_and_nothing_else(tmp_path):
    """train --overwrite that failed, was stopped or changed layout left the earlier
    model.keras (or fold-1/) beside the new config.json, and evaluate and convert used the
    earlier model, exit 0; convert --overwrite left earlier artifacts beside new ones."""
    import click

    from vitaledge.train.run_dir import ASIDE, CONVERT_OUTPUTS, RUN_OUTPUTS, check_fresh, replacing

    run = tmp_path / "run"
    (run / "fold-2").mkdir(parents=True)
    (run / "fold-2" / "model.keras").write_text("old")
    (run / "logs-member0").mkdir()
    for name in ("model.keras", "model-member3.keras", "config.json", "metrics.json",
                 "splits.npz", "folds.md", "notes.txt"):
        (run / name).write_text("old")
    with pytest.raises(click.ClickException, match="already holds"):
        check_fresh(run, False)
    check_fresh(run, True)
    with replacing(run, RUN_OUTPUTS, True):
        assert sorted(p.name for p in run.iterdir()) == [ASIDE, "notes.txt"]
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]  # the user's own file
    art = tmp_path / "art"
    (art / "cpu-int8").mkdir(parents=True)
    (art / "cpu-int8" / "manifest.json").write_text("{}")
    (art / "mine").mkdir()
    for name in ("heldout.npz", "convert_summary.json", "readme.md"):
        (art / name).write_text("old")
    with replacing(art, CONVERT_OUTPUTS, True, artifacts=True):
        assert sorted(p.name for p in art.iterdir()) == [ASIDE, "mine", "readme.md"]
    assert sorted(p.name for p in art.iterdir()) == ["mine", "readme.md"]


@pytest.mark.parametrize("change, words", [
    (lambda d: d.pop("test_y"), "missing 'test_y'"),
    (lambda d: d.update(test_y=d["test_y"][:2]), "test_ecg has 4 rows, test_y 2"),
    (lambda d: d.update(test_y=np.array([0, 1, 9, 2])),
     "test_y is int64[4], expected class indices 0 to 3"),
    (lambda d: d["test_ecg"].__setitem__((1, 0), np.nan), "test_ecg holds non-finite values"),
])
def test_a_damaged_emotion_data_npz_is_named(tmp_path, change, words):
    """evaluate on an emotion run whose data.npz lacked test_y, or whose test_y was short
    or held a class the model has not, gave KeyError and IndexError tracebacks; NaN inputs
    gave numbers, exit 0 (convert refused them)."""
    from vitaledge.train.run_files import check_heldout

    data = {"test_ecg": np.zeros((4, 8), np.float32), "test_y": np.array([0, 1, 2, 3])}
    check_heldout(tmp_path / "data.npz", dict(data), 4)  # sound
    change(data)
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'data.npz'}: {words}")):
        check_heldout(tmp_path / "data.npz", data, 4)


def test_evaluate_reproduces_a_run_that_held_no_test_beats(tmp_path, synth_dir):
    """A --split none run scores its validation beats (metrics.json: evaluated_on
    validation) and convert verifies on them; evaluate said "no beats to evaluate"."""
    run = tmp_path / "run"
    r = invoke(["train", "beat", "--arch", "tiny", "--data", synth_dir, "--epochs", "1",
                "--split", "none", "--out", run])
    assert r.exit_code == 0, r.output
    trained = json.loads((run / "metrics.json").read_text())
    assert trained["evaluated_on"] == "validation"
    r = invoke(["evaluate", run, "--json", tmp_path / "m.json"])
    assert r.exit_code == 0, r.output
    again = json.loads((tmp_path / "m.json").read_text())
    assert again["accuracy"] == pytest.approx(trained["accuracy"], abs=1e-9)
    assert again["n"] == trained["n"] and again["data"]["set"] == "validation"


@pytest.mark.parametrize("args, flag, readers", [
    (["beat", "--split", "beat", "--folds", "10"], "--folds", "--split patients"),
    (["beat", "--split", "patients", "--test-fraction", "0.3"], "--test-fraction",
     "--split beat"),
    (["beat", "--split", "dechazal", "--test-records", "100"], "--test-records",
     "--split record"),
    (["emotion-speech", "--split", "random", "--test-actors", "04"], "--test-actors",
     "--split actor"),
    (["emotion-speech", "--split", "actor", "--test-actors", "04", "--test-fraction", "0.3"],
     "--test-fraction", "--split random"),
    (["emotion-speech", "--split", "none", "--folds", "5"], "--folds", "--split actors"),
    (["emotion-speech", "--split", "random", "--fold", "1"], "--fold", "--split actors"),
])
def test_an_option_the_split_does_not_read_is_refused(tmp_path, args, flag, readers):
    """Each was dropped without a word: ``--folds 10 --split beat`` trained one model on a
    beat split; ``--test-actors 04 --split random`` mixed speaker 04 into training."""
    data = ["--data", tmp_path] if args[0] == "beat" else ["--synth-per-class", "2"]
    line = error_line(invoke(["train", *args, *data, "--out", tmp_path / "r"]))
    split = args[args.index("--split") + 1]
    assert f"{flag}: is read by {readers}; with --split {split} it would be ignored" \
        in line, line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args, flag, readers", [
    (["--threshold", "4"], "--threshold", "--dataset amigos or dreamer"),
    (["--trust-pickle"], "--trust-pickle", "--dataset wesad"),
])
def test_an_option_the_ecg_data_set_does_not_read_is_refused(tmp_path, args, flag, readers):
    """Synthetic trials ignored --threshold and --trust-pickle, and config.json recorded
    them as if they had been used."""
    line = error_line(invoke(["train", "emotion-ecg", *args, "--out", tmp_path / "r"]))
    assert f"{flag}: is read by {readers}; with --dataset synth it would be ignored" \
        in line, line
    line = error_line(invoke(["train", "emotion-ecg", "--dataset", "amigos", "--data",
                              tmp_path, "--synth-subjects", "3", "--out", tmp_path / "r"]))
    assert "--synth-subjects: is read by --dataset synth; with --dataset amigos" in line


def test_the_dechazal_hint_goes_with_test_records_alone(tmp_path):
    line = error_line(invoke(["train", "beat", "--data", tmp_path, "--split", "beat",
                              "--folds", "10", "--test-records", "100", "--out", tmp_path / "r"]))
    assert "--folds: is read by --split patients" in line and "dechazal" not in line, line
    line = error_line(invoke(["train", "beat", "--data", tmp_path, "--split", "beat",
                              "--test-records", "100", "--out", tmp_path / "r"]))
    assert line.endswith("it would be ignored (DS1 -> DS2: --split dechazal)"), line


def test_csv_test_rows_are_the_test_part_and_no_split_is_read(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("0\n")
    for extra, flag in ((["--split", "beat"], "--split"), (["--test-fraction", "0.1"],
                                                           "--test-fraction")):
        line = error_line(invoke(["train", "beat", "--arch", "cnn1d", "--csv-train", table,
                                  "--csv-test", table, *extra, "--out", tmp_path / "r"]))
        assert f"{flag}: the test beats are --csv-test's rows" in line, line
