"""Conversion of a trained (synthetic-data) run: every artifact verified, manifests valid,
sparsity reached, quantization parameters consistent, C files compile, bad models refused."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from vitaledge.device.io.heldout import read_heldout
from vitaledge.device.model.manifest import OUTPUT_KINDS

pytestmark = pytest.mark.slow


def test_every_target_and_variant_is_built_and_verified(converted):
    out, results = converted
    assert set(results) == {"cpu-fp32", "cpu-int8", "edgetpu-int8", "gpu-fp16", "micro-int8",
                            "cpu-fp32-pruned50", "cpu-int8-pruned50", "edgetpu-int8-pruned50",
                            "gpu-fp16-pruned50", "micro-int8-pruned50"}
    for name, r in results.items():
        assert r.status != "❌", (name, r.error)
        m = r.metrics
        assert m["n"] > 100 and 0.0 <= m["accuracy"] <= 1.0
        assert m["agreement_with_keras"] > 0.9, name
    fp32, int8 = results["cpu-fp32"].metrics, results["cpu-int8"].metrics
    assert fp32["agreement_with_keras"] == 1.0 and fp32["max_prob_diff"] < 1e-4
    assert results["cpu-int8"].size_bytes < 0.5 * results["cpu-fp32"].size_bytes
    assert int8["accuracy_drop_points"] < 2.0
    summary = json.loads((out / "convert_summary.json").read_text())
    assert len(summary["artifacts"]) == 10
    assert "cpu-int8" in (out / "convert_summary.txt").read_text()


def test_manifests_validate_and_match_their_files(converted):
    from vitaledge.device.model.manifest import load_manifest, sha256_file

    out, results = converted
    for name in results:
        m, path = load_manifest(out / name)
        assert m.sha256 == sha256_file(path) and m.size_bytes == path.stat().st_size
        assert m.labels == ["N", "S", "V", "F", "Q"]
        assert m.signal.window.convention == "kachuee" and m.output_kind in OUTPUT_KINDS
        assert m.metrics["accuracy"] == results[name].metrics["accuracy"]
        assert m.source_run["arch"] == "tiny"


def test_sparsity_is_really_reached(converted):
    from vitaledge.device.model.manifest import load_manifest

    out, _ = converted
    m, _ = load_manifest(out / "cpu-fp32-pruned50")
    assert m.pruning["target_sparsity"] == 0.5
    assert m.pruning["measured_sparsity"] >= 0.49
    for layer, sp in m.pruning["per_layer"].items():
        assert sp >= 0.45, layer
    unpruned, _ = load_manifest(out / "cpu-fp32")
    assert unpruned.pruning is None
    assert m.extra["gzip_bytes"] < 0.85 * unpruned.extra["gzip_bytes"]


def test_quantization_parameters_round_trip(converted, tiny_run):
    from vitaledge.device.model.manifest import load_manifest
    from vitaledge.device.model.runtime import Model

    out, _ = converted
    m, _ = load_manifest(out / "cpu-int8")
    q = m.input.quantization
    assert m.input.dtype == "int8" and q is not None and q.scale > 0
    model = Model(out / "cpu-int8")
    x = np.linspace(0, 1, 187, dtype=np.float32)[None]
    xq = model.quantize_input(x)
    back = (xq.astype(np.float32) - q.zero_point) * q.scale
    assert np.max(np.abs(back - x)) <= q.scale / 2 + 1e-7
    detail = model.interpreter.get_input_details()[0]
    assert detail["quantization"] == pytest.approx((q.scale, q.zero_point))
    assert m.output.quantization.scale == pytest.approx(1 / 256)


def test_edgetpu_gpu_micro_extras(converted):
    out, _ = converted
    rep = json.loads((out / "edgetpu-int8" / "edgetpu_report.json").read_text())
    assert rep["total"] == len(rep["ops"]) > 3
    assert all(r["supported"] for r in rep["ops"] if r["runs_on"] == "edgetpu")
    # a Conv1D network is CONV_2D over [1, 1, n, c] activations: all of it maps (the rank
    # rule read against the [out, 1, k, in] filters split it at the first convolution)
    assert rep["fully_mapped"] and rep["mapped"] == rep["total"], rep["ops"]
    assert "edgetpu_compiler" in (out / "edgetpu-int8" / "edgetpu_report.txt").read_text()
    gpu = json.loads((out / "gpu-fp16" / "gpu_ops.json").read_text())
    assert gpu["total_ops"] > 3
    man = json.loads((out / "micro-int8" / "manifest.json").read_text())
    assert "AddConv2D" in man["extra"]["micro"]["resolver"]
    assert man["extra"]["micro"]["arena_bytes"] > 1024


def test_micro_arena_is_the_smallest_that_runs(converted):
    from vitaledge.convert.targets import micro_sample
    from vitaledge.firmware_sim.tflm import runs_in_arena

    out, _ = converted
    content = (out / "micro-int8" / "model.tflite").read_bytes()
    arena = json.loads((out / "micro-int8" / "manifest.json").read_text())["extra"]["micro"][
        "arena_bytes"]
    sample = micro_sample(content, np.random.default_rng(0).random((1, 187)).astype(np.float32))
    assert runs_in_arena(content, arena, sample)
    assert not runs_in_arena(content, arena - 256, sample)


def test_micro_artifact_ends_at_the_logits(converted, tmp_path):
    """micro artifacts have no SOFTMAX and say so; predict still returns probabilities whose
    argmax is the cpu-int8 artifact's on the held-out beats."""
    from vitaledge.device.model.manifest import ManifestError
    from vitaledge.device.model.runtime import Model

    out, _ = converted
    for v in ("micro-int8", "micro-int8-pruned50"):
        man = json.loads((out / v / "manifest.json").read_text())
        assert man["output_kind"] == "logits" and "SOFTMAX" not in man["extra"]["ops"]
    cpu = json.loads((out / "cpu-int8" / "manifest.json").read_text())
    assert cpu["output_kind"] == "probabilities" and "SOFTMAX" in cpu["extra"]["ops"]
    X = read_heldout(out / "heldout.npz").x
    micro = Model(out / "micro-int8", delegate="none")
    assert micro.output_kind == "logits"
    p = micro.predict(X)
    assert p.shape == (len(X), 5) and np.all(p >= 0)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    ref = Model(out / "cpu-int8").predict(X)
    assert np.mean(p.argmax(1) == ref.argmax(1)) >= 0.99
    raw = micro.invoke_raw(micro.quantize_input(X[:1].reshape(micro.input_shape)))
    assert raw.dtype == np.int8  # invoke_raw stays the raw logits
    bad = tmp_path / "bad"
    shutil.copytree(out / "micro-int8", bad)
    man = json.loads((bad / "manifest.json").read_text())
    man["output_kind"] = "log-probabilities"
    (bad / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ManifestError, match="output_kind"):
        Model(bad)


def test_logits_model_removes_each_kind_of_final_softmax():
    from vitaledge.convert.logits import logits_model
    from vitaledge.device.model.runtime import softmax
    from vitaledge.train.backend import keras

    L = keras.layers
    x = np.random.default_rng(0).random((4, 6)).astype(np.float32)
    for head in (lambda t: L.Dense(3, activation="softmax")(t),
                 lambda t: L.Activation("softmax")(L.Dense(3)(t)),
                 lambda t: L.Softmax()(L.Dense(3)(t))):
        inp = L.Input((6,))
        model = keras.Model(inp, head(inp))
        z = logits_model(model)(x).numpy()
        np.testing.assert_allclose(softmax(z), model(x).numpy(), atol=1e-6)
    inp = L.Input((6,))
    assert logits_model(keras.Model(inp, L.Dense(3)(inp))) is None
    assert np.allclose(softmax(np.array([[1e4, 0.0, -1e4]], np.float32)), [[1, 0, 0]])


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
def test_micro_c_files_compile(converted, tmp_path):
    out, _ = converted
    d = out / "micro-int8"
    src = d / "model_data.cc"
    text = src.read_text()
    assert "alignas(16) const unsigned char vitaledge_model_data[]" in text
    obj = tmp_path / "model_data.o"
    subprocess.run(["gcc", "-c", "-std=c++17", "-Wall", "-Werror", f"-I{d}", str(src), "-o",
                    str(obj)], check=True)
    nm = subprocess.run(["nm", str(obj)], capture_output=True, text=True, check=True).stdout
    assert "vitaledge_model_data" in nm and "vitaledge_model_data_len" in nm
    size = (d / "model.tflite").stat().st_size
    assert f"vitaledge_model_data_len = {size};" in text


def test_corrupt_and_truncated_models_are_refused(converted, tmp_path):
    from vitaledge.device.model.manifest import ManifestError, sha256_file
    from vitaledge.device.model.runtime import Model, ModelLoadError

    out, _ = converted
    bad = tmp_path / "bad"
    shutil.copytree(out / "cpu-int8", bad)
    data = bytearray((bad / "model.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / "model.tflite").write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="sha256 .* does not match"):
        Model(bad)
    (bad / "model.tflite").write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(ManifestError, match="bytes, manifest says"):
        Model(bad)
    # a truncated file whose manifest was updated to match still cannot load
    man = json.loads((bad / "manifest.json").read_text())
    man["sha256"] = sha256_file(bad / "model.tflite")
    man["size_bytes"] = (bad / "model.tflite").stat().st_size
    (bad / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ModelLoadError, match=f"^the interpreter refused "
                                             f"{re.escape(str(bad / 'model.tflite'))}: "):
        Model(bad)
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        Model(bad)


def test_resnet1d_int8_runs_under_xnnpack():
    """The skip-connection model converts to full int8 and runs with XNNPACK on (the
    delegate is not disabled), and XNNPACK really is in the graph."""
    from vitaledge.convert.quantize import to_tflite
    from vitaledge.device.model.runtime import get_backend, make_interpreter, ops_details
    from vitaledge.train import zoo

    model = zoo.build("resnet1d", (187, 1), 5)
    rep = np.random.default_rng(0).random((64, 187, 1)).astype(np.float32)
    content = to_tflite(model, "int8", rep)
    interp = make_interpreter(content, get_backend(), threads=1, delegate="xnnpack")
    d = interp.get_input_details()[0]
    interp.set_tensor(d["index"], np.zeros(d["shape"], np.int8))
    interp.invoke()
    # the delegated graph: the interpreter's own op listing (runtime.list_ops reads the
    # undelegated one)
    ops = [o["op_name"] for o in ops_details(interp)]
    assert "DELEGATE" in ops, ops  # XNNPACK took (part of) the graph


def test_quantization_aware_training_annotates_conv1d(tiny_run, tmp_path):
    from vitaledge.convert.pipeline import ConvertOptions, convert_run
    from vitaledge.device.model.manifest import load_manifest

    run, metrics = tiny_run
    results = convert_run(run, tmp_path, ConvertOptions(targets=["cpu"], quant="int8",
                                                        qat=True, max_drop=5.0))
    assert [r.variant for r in results] == ["cpu-int8-qat"]
    r = results[0]
    assert r.status != "❌", r.error
    assert r.metrics["accuracy"] >= metrics["accuracy"] - 0.05
    m, _ = load_manifest(tmp_path / "cpu-int8-qat")
    assert m.extra["qat"] is True and m.input.dtype == "int8"


def test_evaluate_accepts_a_converted_artifact(converted):
    from vitaledge.train.evaluate import evaluate_model

    out, results = converted
    metrics, text = evaluate_model(out / "cpu-int8")
    assert metrics["n"] == results["cpu-int8"].metrics["n"]
    assert metrics["accuracy"] == pytest.approx(results["cpu-int8"].metrics["accuracy"])
    assert "ai-edge-litert" in metrics["model"] and "int8" in metrics["model"]


def test_evaluate_refuses_an_artifact_whose_source_run_was_trained_again(converted, tmp_path):
    """A run trained again (other seed, other split) after its conversion lent the old
    artifact its new held-out beats, some of them the artifact's training beats, exit 0."""
    import json
    import shutil

    from vitaledge.train.evaluate import evaluate_model

    out, _ = converted
    art = tmp_path / "cpu-int8"
    shutil.copytree(out / "cpu-int8", art)
    m = json.loads((art / "manifest.json").read_text())
    run = tmp_path / "run"
    shutil.copytree(m["source_run"]["path"], run)
    m["source_run"]["path"] = str(run)
    (art / "manifest.json").write_text(json.dumps(m))
    assert evaluate_model(art)[0]["n"] > 0  # the run as converted: scored
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, "seed": cfg["seed"] + 1}))
    with pytest.raises(ValueError, match=f"{art}: its source run {run} was trained again"):
        evaluate_model(art)


def test_a_refused_convert_overwrite_leaves_the_earlier_conversion(converted, tiny_run,
                                                                  tmp_path):
    """--overwrite removed the earlier artifacts first, then refused the option (micro with
    --quant fp16): the folder was left empty."""
    import shutil

    from conftest import error_line, invoke

    out, _ = converted
    run, _ = tiny_run
    art = tmp_path / "art"
    shutil.copytree(out, art)
    before = sorted(p.name for p in art.iterdir())
    line = error_line(invoke(["convert", run, "--target", "micro", "--quant", "fp16",
                              "--out", art, "--overwrite"]))
    assert "micro takes quantization int8, not fp16" in line, line
    assert sorted(p.name for p in art.iterdir()) == before
    assert (art / "cpu-int8" / "model.tflite").is_file()
    (art / "notes.txt").write_text("mine")
    ok = invoke(["convert", run, "--target", "cpu", "--quant", "int8", "--out", art,
                 "--overwrite"])
    assert ok.exit_code == 0, ok.output  # accepted: the earlier conversion goes, then
    assert sorted(p.name for p in art.iterdir()) == [  # the new one is written
        "convert_summary.json", "convert_summary.txt", "cpu-int8", "heldout.npz", "notes.txt"]


def test_a_convert_overwrite_that_fails_part_way_puts_the_earlier_conversion_back(
        converted, tiny_run, tmp_path, monkeypatch):
    """--overwrite removed the earlier artifacts just before writing: a conversion that
    then failed (a full disk, Ctrl-C) left neither the earlier conversion nor a new one.
    Now they are set aside while it writes and come back, byte for byte, when it fails;
    what it had written, a half artifact too, is removed; the user's own file stays."""
    import hashlib
    import shutil

    from conftest import invoke

    import vitaledge.convert.pipeline as pipeline
    from vitaledge.train.run_dir import ASIDE

    out, _ = converted
    run, _ = tiny_run
    art = tmp_path / "art"
    shutil.copytree(out, art)
    (art / "notes.txt").write_text("mine")

    def digests() -> dict:
        return {str(p.relative_to(art)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(art.rglob("*")) if p.is_file()}
    before = digests()

    def fails(exc):
        def write_heldout(path, *args):
            assert (art / ASIDE / "cpu-int8" / "manifest.json").is_file()  # set aside
            assert not (art / "cpu-int8").exists()
            path.write_bytes(b"half")
            (art / "cpu-int8").mkdir()  # an artifact half written: no manifest yet
            (art / "cpu-int8" / "model.tflite").write_bytes(b"half")
            (art / "cpu-fp32").mkdir()
            (art / "cpu-fp32" / "manifest.json").write_text("{}")
            (art / "gpu-fp16").mkdir()  # a new name, half written: no manifest either
            (art / "gpu-fp16" / "model.tflite").write_bytes(b"half")
            raise exc
        return write_heldout

    monkeypatch.setattr(pipeline, "write_heldout",
                        fails(OSError(28, "No space left on device", str(art / "heldout.npz"))))
    r = invoke(["convert", run, "--target", "cpu", "--quant", "int8", "--out", art,
                "--overwrite"])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
    assert "Traceback" not in r.output  # its progress lines and the one error line
    assert [x for x in r.output.splitlines() if x.startswith("Error")] == [
        f"Error: {art / 'heldout.npz'}: No space left on device"]
    assert digests() == before
    monkeypatch.setattr(pipeline, "write_heldout", fails(KeyboardInterrupt()))
    r = invoke(["convert", run, "--target", "cpu", "--quant", "int8", "--out", art,
                "--overwrite"])
    assert r.exit_code != 0 and isinstance(r.exception, (KeyboardInterrupt, SystemExit))
    assert digests() == before
    monkeypatch.undo()
    # every target failing (a full disk inside TensorFlow's converter is one): exit 2, and
    # the earlier conversion back, not an empty folder
    import vitaledge.convert.variants as variants

    def refuse(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(variants, "to_tflite", refuse)
    r = invoke(["convert", run, "--target", "cpu", "--quant", "int8", "--out", art,
                "--overwrite"])
    assert r.exit_code == 2 and "failed: cpu-int8" in r.output, r.output
    assert digests() == before


def test_the_edgetpu_rank_rule_reads_activations_not_filters():
    from vitaledge.convert.edgetpu import compatibility

    def t(shape, dtype="int8"):
        return {"shape": shape, "dtype": dtype}

    conv = {"index": 0, "op": "CONV_2D", "inputs": [t([1, 1, 187, 1]), t([16, 1, 7, 1]),
                                                     t([16], "int32")],
            "outputs": [t([1, 1, 181, 16])]}
    assert compatibility([conv])["fully_mapped"]
    five_d = {**conv, "inputs": [t([2, 1, 1, 187, 1]), *conv["inputs"][1:]]}
    rep = compatibility([five_d, {**conv, "index": 1}])
    assert rep["split_at"] == 0 and "outside the three innermost" in rep["ops"][0]["reason"]
    float_w = {**conv, "inputs": [conv["inputs"][0], t([16, 1, 7, 1], "float32")]}
    assert "not 8-bit" in compatibility([float_w])["ops"][0]["reason"]


def test_multi_input_int8_conversion_does_not_tell_the_user_to_migrate():
    """TensorFlow's calibrator builds a tf.lite.Interpreter for a model of several inputs
    and warns that the class is deprecated: code of TensorFlow's, not the user's, so the
    converter keeps that warning out of a convert run's output."""
    import warnings

    from vitaledge.convert.quantize import to_tflite
    from vitaledge.train.backend import keras

    L = keras.layers
    beat, rr = L.Input((32, 1), name="beat"), L.Input((4,), name="rr")
    x = L.Concatenate()([L.Flatten()(L.Conv1D(4, 3)(beat)), rr])
    model = keras.Model([beat, rr], L.Dense(5, activation="softmax")(x))
    rng = np.random.default_rng(0)
    rep = [rng.random((16, 32, 1)).astype(np.float32), rng.random((16, 4)).astype(np.float32)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        content = to_tflite(model, "int8", rep)
    assert content[4:8] == b"TFL3"
    told = [str(w.message) for w in caught if "Interpreter is deprecated" in str(w.message)]
    assert not told, told
