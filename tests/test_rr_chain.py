"""A beat model with RR features through the whole chain: train on detected beats ->
convert (cpu int8, micro) -> manifest with two inputs -> runtime -> daemon stream equal to
the batch computation -> bench -> MCU check -> firmware export."""

import json

import numpy as np
import pytest

from vitaledge.convert.results import OK

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rr_run(synth_dir, tmp_path_factory):
    from vitaledge.device.dsp.windows import WindowSpec
    from vitaledge.train.config import BeatTrainConfig
    from vitaledge.train.fit import train_beat

    run = tmp_path_factory.mktemp("rr-run")
    cfg = BeatTrainConfig(arch="tiny-rr", records=str(synth_dir), record_list=["s000", "s001",
                          "s002"], window=WindowSpec.centered(), split="record",
                          test_records=["s002"], anchor="detected", balance="class-weight",
                          epochs=12, patience=12, learning_rate=3e-3, seed=2, s_rule="timing")
    metrics = train_beat(cfg, run, verbose=0)
    return run, metrics


@pytest.fixture(scope="module")
def rr_art(rr_run, tmp_path_factory):
    from vitaledge.convert.pipeline import ConvertOptions, convert_run

    run, _ = rr_run
    out = tmp_path_factory.mktemp("rr-art")
    results = convert_run(run, out, ConvertOptions(targets=["cpu", "micro"], max_drop=10.0))
    return out, {r.variant: r for r in results}


def test_training_used_detected_beats_and_rr_features(rr_run):
    run, metrics = rr_run
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["anchor"] == "detected" and cfg["rr"]["features"][0] == "pre_rr"
    # the premature-beat rule was fitted on the training patients: earlier means S
    rule = cfg["premature"]
    assert rule["terms"][0] == "pre_rel" and rule["weights"][0] < 0
    assert "network_only" in metrics
    assert metrics["data"]["anchor"] == "detected"
    assert metrics["accuracy"] > 0.6  # learns the simulated patients' classes
    rep = json.loads((run / "ec57.json").read_text())  # a record split is by patient
    assert list(rep["records"]) == ["s002"]


def test_manifest_has_both_inputs_and_artifacts_agree_with_keras(rr_art):
    from vitaledge.device.model.manifest import input_key, load_manifest

    out, results = rr_art
    for name in ("cpu-fp32", "cpu-int8", "micro-int8"):
        assert results[name].status == OK, (name, results[name])
        m, _ = load_manifest(out / name)
        assert sorted(input_key(t.name) for t in m.inputs) == ["beat", "rr"]
        assert m.signal.rr is not None and m.signal.input_names() == ["beat", "rr"]
        assert m.signal.premature is not None  # the N/S rule travels with the model
    assert results["cpu-fp32"].metrics["agreement_with_keras"] == 1.0
    assert results["cpu-int8"].metrics["agreement_with_keras"] >= 0.95


@pytest.mark.parametrize("chunk", [7, 360, 10_000])
def test_the_stream_computes_what_training_computed(rr_art, synth_dir, chunk):
    """Detected peaks, windows and RR features: the daemon's pipeline over a record in
    chunks gives the batch (training-time) inputs' probabilities for every beat."""
    from vitaledge.device.io.beats import beats_from_record
    from vitaledge.device.io.records import read_record
    from vitaledge.device.model.runtime import Model
    from vitaledge.device.stream.pipeline import run_record

    out, _ = rr_art
    m = Model(out / "cpu-int8")
    rec = read_record(synth_dir / "s003")
    batch = beats_from_record(rec, m.manifest.signal.window, "detected", m.manifest.signal.rr)
    want = m.predict(batch.inputs())
    events = run_record(m, rec.signal, rec.fs, chunk)
    got = {e["sample"]: e for e in events}
    assert len(batch) > 150 and set(batch.sample) <= set(got)
    probs = np.array([[got[s]["probabilities"][lab] for lab in m.labels] for s in batch.sample])
    np.testing.assert_allclose(probs, want, atol=1e-4)  # events round to 4 decimals
    # and the classes, N/S decided by the premature-beat rule, are the batch decision's
    labels = [m.labels[k] for k in m.decide(want, batch.inputs())]
    assert [got[s]["class"] for s in batch.sample] == labels


def test_bench_mcu_and_export_take_both_inputs(rr_art, synth_dir, tmp_path):
    from vitaledge.device.bench.latency import run_bench
    from vitaledge.firmware_sim.export import export_firmware
    from vitaledge.firmware_sim.mcu import simulate_mcu
    from vitaledge.firmware_sim.profiles import PROFILES

    out, _ = rr_art
    res = run_bench([out / "cpu-int8"], threads=[1], delegates=["xnnpack"], batches=[1],
                    warmup=5, runs=20)
    assert [r.status for r in res.rows] == [OK] and res.rows[0].accuracy is not None
    r = simulate_mcu(out / "micro-int8", PROFILES["cortex-m4-256k"], synth_dir, n_beats=300)
    assert r["agreement"]["beats"] == 300
    assert r["agreement"]["litert"]["none"]["argmax_agreement"] >= 0.99
    export_firmware(out / "micro-int8", tmp_path / "fw")
    header = (tmp_path / "fw" / "model_config.h").read_text()
    assert "_RR_INPUT_INDEX" in header and "_BEAT_SCALE" in header
    rule = json.loads((out / "micro-int8" / "manifest.json").read_text())["signal"]["premature"]
    assert f"_PREMATURE_WEIGHT_PRE_REL {rule['weights'][0]!r}f" in header
    assert f"_PREMATURE_MAX_IRREGULARITY {rule['max_irregularity']!r}f" in header


def test_patient_template_model_streams_what_training_computed(synth_dir, tmp_path):
    """tiny-rrt (beat + RR features + the patient's running template): trained, converted,
    and the daemon's pipeline gives the batch inputs' probabilities."""
    from vitaledge.convert.pipeline import ConvertOptions, convert_run
    from vitaledge.device.dsp.template import templates
    from vitaledge.device.dsp.windows import WindowSpec
    from vitaledge.device.io.beats import beats_from_record
    from vitaledge.device.io.records import read_record
    from vitaledge.device.model.runtime import Model
    from vitaledge.device.stream.pipeline import run_record
    from vitaledge.train.config import BeatTrainConfig
    from vitaledge.train.fit import train_beat

    cfg = BeatTrainConfig(arch="tiny-rrt", records=str(synth_dir), record_list=["s000", "s001"],
                          window=WindowSpec.centered(), split="record", test_records=["s001"],
                          anchor="detected", epochs=3, patience=3, seed=4, v_rule="template")
    train_beat(cfg, tmp_path / "run", verbose=0)
    convert_run(tmp_path / "run", tmp_path / "art", ConvertOptions(targets=["cpu"],
                                                                   quant="none"))
    m = Model(tmp_path / "art" / "cpu-fp32")
    assert m.manifest.signal.input_names() == ["beat", "rr", "template"]
    rec = read_record(synth_dir / "s002")
    sig = m.manifest.signal
    batch = beats_from_record(rec, sig.window, "detected", sig.rr, sig.template)
    # the template is the median of the windows before each beat
    np.testing.assert_array_equal(batch.template[5],
                                  templates(batch.X[:6], sig.template)[5])
    want = m.predict(batch.inputs())
    got = {e["sample"]: e for e in run_record(m, rec.signal, rec.fs, 360)}
    probs = np.array([[got[s]["probabilities"][lab] for lab in m.labels] for s in batch.sample])
    np.testing.assert_allclose(probs, want, atol=1e-4)
    # the dominant-beat rule travels with the model and decides the same on the stream
    assert sig.dominant is not None and sig.premature is None
    labels = [m.labels[k] for k in m.decide(want, batch.inputs())]
    assert [got[s]["class"] for s in batch.sample] == labels


def test_evaluate_scores_an_rr_artifact_on_other_records(rr_art, synth_dir):
    """vitaledge evaluate on a converted RR model and records it has not seen: the same
    beats (detected) and inputs as the device makes."""
    from vitaledge.device.io.beats import beats_from_dir
    from vitaledge.device.model.runtime import Model
    from vitaledge.train.evaluate import evaluate_model

    out, _ = rr_art
    metrics, _ = evaluate_model(out / "cpu-int8", records=str(synth_dir), record_list=["s003"],
                                split="all")
    m = Model(out / "cpu-int8")
    sig = m.manifest.signal
    b = beats_from_dir(synth_dir, sig.window, ["s003"], anchor="detected", rr=sig.rr)
    # the device's decision: the network, then the premature-beat rule (with its gate)
    acc = float(np.mean(m.decide(m.predict(b.inputs()), b.inputs()) == b.y))
    assert metrics["n"] == len(b) and metrics["accuracy"] == pytest.approx(acc)


def test_pruning_a_multi_input_model(rr_run, tmp_path):
    """Pruning fine-tunes the two-input model on (window, RR features) and the pruned int8
    artifact keeps both inputs, the decision rule and the measured sparsity."""
    from vitaledge.convert.pipeline import ConvertOptions, convert_run
    from vitaledge.device.model.manifest import input_key, load_manifest

    run, _ = rr_run
    results = {r.variant: r for r in convert_run(run, tmp_path, ConvertOptions(
        targets=["cpu"], quant="int8", sparsities=[0.5], prune_epochs=1, max_drop=100.0))}
    assert list(results) == ["cpu-int8-pruned50"]
    r = results["cpu-int8-pruned50"]
    assert r.status == OK, r
    m, _ = load_manifest(tmp_path / "cpu-int8-pruned50")
    assert sorted(input_key(t.name) for t in m.inputs) == ["beat", "rr"]
    assert m.signal.premature is not None
    assert m.pruning["target_sparsity"] == 0.5
    assert 0.49 <= m.pruning["measured_sparsity"] <= 0.51
    assert r.metrics["agreement_with_keras"] >= 0.9  # against the pruned Keras model
