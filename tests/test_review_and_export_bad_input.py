"""QA findings on ``device review``, ``firmware export`` and the beat window spec:

- non-finite numbers (NaN, Infinity: JSON Lines can hold them) in a beat event's
  probabilities or a quality status event's span are one ``Error:`` line naming the events
  file, the event and the field, not a traceback; the page already there is kept;
- a hand-edited manifest's ``extra.micro`` (C array name, arena size) is checked when the
  manifest is read: one line naming manifest.json and the field, nothing exported;
- labels reach ``model_config.h`` as valid C string literals (escaped);
- ``signal.window.rr_factor`` / ``rr_context`` must be positive (one line naming them).

The export tests use a one-layer int8 model made here with TensorFlow, not a trained one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import error_line, invoke

from vitaledge.device.dsp.windows import WindowSpec


def snapshot(d: Path) -> dict:
    return {p.relative_to(d): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


# ---- device review: non-finite numbers in the events ---------------------------------------

@pytest.fixture(scope="module")
def record(tmp_path_factory) -> Path:
    """One 30 s synthetic record."""
    from vitaledge.firmware_sim.patients.ecg import synth_database

    d = tmp_path_factory.mktemp("rec")
    synth_database(d, n_records=1, minutes=0.5, seed=3)
    return d / "s000"


def _beat(seq: int, sample: int, **kw) -> dict:
    return {"type": "beat", "time": sample / 360, "sample": sample, "class": "N",
            "probabilities": {"N": 0.9, "S": 0.05, "V": 0.03, "F": 0.01, "Q": 0.01},
            "seq": seq, "run": "r1", **kw}


def _status(**kw) -> dict:
    return {"type": "status", "status": "doubtful", "time": 2.0, "start": 0.0, "end": 2.0,
            "start_sample": 0, "end_sample": 720, "reason": "noise", "run": "r1", **kw}


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("rows, where, what", [
    ([_beat(1, 360), _beat(2, 720, probabilities={"N": NAN})],
     "beat event seq 2", "probability 'N' is nan, not a finite number"),
    ([_beat(1, 360, probabilities={"N": 0.5, "V": INF}), _beat(2, 720)],
     "beat event seq 1", "probability 'V' is inf, not a finite number"),
    ([_beat(1, 360), _status(start_sample=NAN, seq=3), _beat(4, 720)],
     "status event seq 3", "'start_sample' is nan, not a finite number"),
    ([_beat(1, 360), _status(status="unreadable", end_sample=-INF, seq=5)],
     "status event seq 5", "'end_sample' is -inf, not a finite number"),
    # no seq: the event itself names it
    ([_beat(1, 360), _status(start=NAN, start_sample=None, end_sample=None)],
     "status event {'type': 'status'", "'start' is nan, not a finite number"),
])
def test_review_refuses_non_finite_numbers_in_one_line_and_keeps_the_page(
        record, tmp_path, rows, where, what):
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(r) + "\n" for r in rows))  # NaN, Infinity literals
    out = tmp_path / "review.html"
    out.write_text("old page")
    r = invoke(["device", "review", events, "--record", record, "--out", out])
    line = error_line(r)
    assert r.exit_code == 1, r.output
    assert line.startswith(f"Error: {events}: {where}"), line
    assert line.endswith(what), line
    assert out.read_text() == "old page"
    assert not list(tmp_path.glob(".review.html.*"))  # no temporary page left behind


def test_review_of_finite_events_still_writes_the_page(record, tmp_path):
    """Status events placed in seconds only (float start/end) and probabilities of other
    classes: a page, as before."""
    events = tmp_path / "events.jsonl"
    rows = [_beat(1, 360), _status(start=0.5, end=1.5, start_sample=None, end_sample=None,
                                   status="unreadable", seq=2), _beat(3, 720)]
    events.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "review.html"
    r = invoke(["device", "review", events, "--record", record, "--out", out])
    assert r.exit_code == 0, r.output
    assert "2 beats" in r.output and out.stat().st_size > 1000


# ---- firmware export: a hand-edited manifest ------------------------------------------------

LABELS = ["N", "S", "V", "F", "Q"]


@pytest.fixture(scope="module")
def micro_artifact(tmp_path_factory) -> Path:
    """A full-int8 one-layer beat model (187-sample window in, 5 int8 logits out) with a
    valid schema-4 manifest for the micro target."""
    from vitaledge.device.inputs.beat import BeatSignal
    from vitaledge.device.model.manifest import SCHEMA_VERSION, Manifest
    from vitaledge.device.model.runtime import get_backend, make_interpreter
    from vitaledge.train.backend import keras, tf

    inp = keras.layers.Input((187, 1), name="beat")
    model = keras.Model(inp, keras.layers.Dense(5)(keras.layers.Flatten()(inp)))
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    conv.representative_dataset = lambda: ([rng.random((1, 187, 1), np.float32)]
                                           for _ in range(8))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    content = conv.convert()
    art = tmp_path_factory.mktemp("art") / "micro-int8"
    art.mkdir()
    (art / "model.tflite").write_bytes(content)
    interp = make_interpreter(content, get_backend(), threads=1, delegate="none")
    (i,), (o,) = interp.get_input_details(), interp.get_output_details()

    def spec(d):
        scale, zp = d["quantization"]
        return {"name": d["name"], "shape": [int(s) for s in d["shape"]], "dtype": "int8",
                "quantization": {"scale": float(scale), "zero_point": int(zp)}}

    man = {
        "schema_version": SCHEMA_VERSION, "task": "beat", "labels": LABELS,
        "model_file": "model.tflite", "sha256": hashlib.sha256(content).hexdigest(),
        "size_bytes": len(content), "target": "micro", "quantization": "int8",
        "input": spec(i), "extra_inputs": [], "output": spec(o), "output_kind": "logits",
        "signal": BeatSignal(window=WindowSpec.kachuee()).to_dict(), "pruning": None,
        "source_run": {}, "metrics": {}, "created": "2026-01-01T00:00:00+00:00",
        "vitaledge_version": "0.1.0", "selftest": None,
        "extra": {"micro": {"ops": ["FULLY_CONNECTED"], "arena_bytes": 4096,
                            "c_array": "vitaledge_model_data"}},
    }
    Manifest.from_dict(json.loads(json.dumps(man)))  # valid as written
    (art / "manifest.json").write_text(json.dumps(man, indent=2))
    return art


def _edited(art: Path, tmp_path: Path, edit) -> Path:
    """A copy of the artifact with its manifest edited by ``edit(manifest_dict)``."""
    copy = tmp_path / "edited"
    shutil.copytree(art, copy)
    man = json.loads((copy / "manifest.json").read_text())
    edit(man)
    (copy / "manifest.json").write_text(json.dumps(man, indent=2))
    return copy


def test_export_of_the_unedited_artifact_works(micro_artifact, tmp_path):
    r = invoke(["firmware", "export", micro_artifact, "--out", tmp_path / "fw"])
    assert r.exit_code == 0, r.output
    cfg = (tmp_path / "fw" / "model_config.h").read_text()
    assert "#define VITALEDGE_ARENA_BYTES 4512" in cfg  # 4096 + 10 %, to 16 bytes
    assert 'vitaledge_labels[] = {"N", "S", "V", "F", "Q"};' in cfg


def test_export_onto_a_folder_of_a_bundle_name_writes_nothing(micro_artifact, tmp_path):
    """A folder named README.md in --out failed the export after four of its files were
    written (--overwrite); a bundle is written whole or not at all."""
    out = tmp_path / "fw"
    (out / "README.md").mkdir(parents=True)
    line = error_line(invoke(["firmware", "export", micro_artifact, "--out", out,
                              "--overwrite"]))
    assert f"{out / 'README.md'}: not a file (a folder?)" in line, line
    assert sorted(p.name for p in out.iterdir()) == ["README.md"]
    (out / "README.md").rmdir()
    r = invoke(["firmware", "export", micro_artifact, "--out", out])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["model_data.cc", "model_data.h", "op_resolver.cc", "model_config.h", "README.md",
         "manifest.json", "export.json"])  # and no staging folder left


@pytest.mark.parametrize("edit, field, got", [
    (lambda m: m["extra"]["micro"].update(c_array=5), "extra.micro.c_array", "got 5"),
    (lambda m: m["extra"]["micro"].update(c_array=""), "extra.micro.c_array", "got ''"),
    (lambda m: m["extra"].update(micro="x"), "extra.micro", "expected an object, got str"),
    (lambda m: m["extra"]["micro"].update(arena_bytes="big"), "extra.micro.arena_bytes",
     "got 'big'"),
    (lambda m: m["extra"]["micro"].update(arena_bytes=-5), "extra.micro.arena_bytes",
     "got -5"),
    (lambda m: m["extra"]["micro"].update(arena_bytes=0), "extra.micro.arena_bytes",
     "got 0"),
    (lambda m: m["extra"]["micro"].update(arena_bytes=True), "extra.micro.arena_bytes",
     "got True"),
    (lambda m: m["extra"]["micro"].update(arena_bytes=4096.5), "extra.micro.arena_bytes",
     "got 4096.5"),
])
def test_export_refuses_a_bad_extra_micro_in_one_line_writing_nothing(
        micro_artifact, tmp_path, edit, field, got):
    art = _edited(micro_artifact, tmp_path, edit)
    out = tmp_path / "fw"
    r = invoke(["firmware", "export", art, "--out", out])
    line = error_line(r)
    assert r.exit_code == 1, r.output
    assert line.startswith(f"Error: {art / 'manifest.json'}: {field}: "), line
    assert line.endswith(got), line
    assert not out.exists()


def test_export_escapes_labels_into_valid_c_string_literals(micro_artifact, tmp_path):
    """A manifest's labels reach C source as string literals. A beat model's labels are
    AAMI classes now (the manifest refuses others), so the escaping is checked on the
    function that writes them, with labels of every kind that needs it, compiled."""
    from vitaledge.firmware_sim.export import c_string

    labels = ["N", 'S"x', "V\nw", "F\\", "Q??/"]
    literals = [c_string(lab) for lab in labels]
    assert ", ".join(literals) == r'"N", "S\"x", "V\012w", "F\\", "Q\?\?/"'
    r = invoke(["firmware", "export", micro_artifact, "--out", tmp_path / "fw"])
    assert r.exit_code == 0, r.output
    cfg = (tmp_path / "fw" / "model_config.h").read_text()
    assert 'vitaledge_labels[] = {"N", "S", "V", "F", "Q"};' in cfg
    if not shutil.which("gcc"):
        return
    main_c = tmp_path / "labels.c"
    main_c.write_text('#include <stdio.h>\nstatic const char* const labels[] = {'
                      + ", ".join(literals) + '};\nint main(void) {\n'
                      "  for (int i = 0; i < 5; i++)\n"
                      '    printf("%s|", labels[i]);\n  return 0;\n}\n')
    exe = tmp_path / "labels"
    c = subprocess.run(["gcc", "-std=c99", "-Wall", "-Werror", "-trigraphs",
                        str(main_c), "-o", str(exe)], capture_output=True, text=True)
    assert c.returncode == 0, c.stderr
    ran = subprocess.run([str(exe)], capture_output=True, text=True, check=True)
    assert ran.stdout == "".join(f"{lab}|" for lab in labels)


# ---- the window spec: rr_factor, rr_context -------------------------------------------------

@pytest.mark.parametrize("field, value", [("rr_factor", -1), ("rr_factor", 0),
                                          ("rr_context", -1), ("rr_context", 0)])
def test_device_run_refuses_a_non_positive_rr_factor_or_context(
        micro_artifact, record, tmp_path, field, value):
    art = _edited(micro_artifact, tmp_path,
                  lambda m: m["signal"]["window"].update({field: value}))
    sink = tmp_path / "ev.jsonl"
    r = invoke(["device", "run", "--model", art, "--source", f"replay:{record}",
                "--speed", "max", "--sink", sink])
    line = error_line(r)
    assert r.exit_code == 1, r.output
    assert f"{art / 'manifest.json'}: signal.window.{field}: " in line, line
    assert f"expected a positive number, got {value}" in line, line
    assert not sink.exists()
    with pytest.raises(ValueError, match=rf"^{field}: expected a positive number"):
        WindowSpec.kachuee(**{field: value})


# ---- docs/firmware.md: the sensor's pty path ------------------------------------------------

def test_firmware_doc_waits_for_the_sensor_to_print_its_pty_before_using_it():
    """The sensor takes seconds to print its pty path: reading sensor.out right after
    starting it in the background gets nothing."""
    doc = (Path(__file__).parent.parent / "docs" / "firmware.md").read_text()
    lines = [ln.strip() for ln in doc.splitlines()]
    uses = [i for i, ln in enumerate(lines) if "$(head -1 sensor.out)" in ln]
    assert uses, "the board-and-daemon example is gone"
    for i in uses:
        start = max(k for k, ln in enumerate(lines[:i]) if "> sensor.out" in ln)
        assert any("until [ -s sensor.out ]" in ln for ln in lines[start:i]), lines[start:i + 1]
