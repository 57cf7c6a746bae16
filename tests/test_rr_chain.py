"""A beat model with RR features through the whole chain: train on detected beats ->
convert (cpu int8, micro) -> manifest with two inputs -> runtime -> daemon stream equal to
the batch computation -> bench -> MCU check -> firmware export."""

import json
import re
import subprocess

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
    """tiny-rrt (beat + RR features + the patient's running template, with the
    similar-beat vote): trained, converted, and the daemon's pipeline gives the batch
    inputs' probabilities and, for any chunk size, the batch decision's classes."""
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
                          anchor="detected", epochs=3, patience=3, seed=4, v_rule="template",
                          vote="similar")
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
    # the vote and the dominant-beat rule travel with the model and decide the same on the
    # stream, whatever its chunks: the vote's memory carries over from one call to the next
    assert sig.dominant is not None and sig.premature is None and sig.similar is not None
    labels = [m.labels[k] for k in m.decide(want, batch.inputs(), groups=batch.record,
                                            times=batch.sample)]
    assert [got[s]["class"] for s in batch.sample] == labels
    for chunk in (97, 1000):
        events = {e["sample"]: e for e in run_record(m, rec.signal, rec.fs, chunk)}
        assert [events[s]["class"] for s in batch.sample] == labels, chunk
    # the events carry the network's own outputs; the vote moved them before the argmax
    voted = sig.similar.apply(want, batch.X)
    assert np.abs(voted - want).max() > 1e-3
    # a reload of the same model mid-stream (SIGHUP, probation passed) keeps the vote's
    # memory: the stream still decides what the batch decides
    from vitaledge.device.stream.pipeline import BeatPipeline

    pipe = BeatPipeline(m, rec.fs)
    half = len(rec.signal) // 2
    events = pipe.process(rec.signal[:half])
    pipe.swap_model(Model(tmp_path / "art" / "cpu-fp32"))
    events += pipe.process(rec.signal[half:]) + pipe.flush()
    swapped = {e["sample"]: e["class"] for e in events if e["type"] == "beat"}
    assert [swapped[s] for s in batch.sample] == labels
    assert pipe.memory.vote.count == len(swapped)  # every beat, not those since the swap


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
    # the windows are counted, not the inputs (the two-input X was once counted as 2
    # windows and fine-tuned for 400 epochs); few windows are gone over several times an
    # epoch, so the one epoch asked for still takes 400 steps at least
    n_fit = int(np.load(run / "splits.npz")["train_sample"].size)
    assert 64 < n_fit < 400
    assert m.pruning["fine_tune_epochs"] == 1
    assert 400 <= m.pruning["fine_tune_steps"] < 400 + -(-n_fit // 64)
    assert r.metrics["agreement_with_keras"] >= 0.9  # against the pruned Keras model


def test_quantization_aware_training_of_a_multi_input_model(rr_run, tmp_path):
    """--qat validated on the beat windows alone ("expects 2 input(s), but it received 1"),
    so convert --qat failed on every RR model; and its float artifact was the fake-quantized
    network under the plain name."""
    from vitaledge.convert.pipeline import ConvertOptions, convert_run
    from vitaledge.device.model.manifest import input_key, load_manifest

    run, _ = rr_run
    results = {r.variant: r for r in convert_run(run, tmp_path, ConvertOptions(
        targets=["cpu"], quant=None, qat=True, max_drop=100.0))}
    assert set(results) >= {"cpu-int8-qat", "cpu-fp32"}, list(results)
    assert all(r.status == OK for r in results.values()), results
    m, _ = load_manifest(tmp_path / "cpu-int8-qat")
    assert m.extra["qat"] is True and sorted(input_key(t.name) for t in m.inputs) == ["beat",
                                                                                        "rr"]
    fp32, _ = load_manifest(tmp_path / "cpu-fp32")
    assert fp32.extra["qat"] is False
    # the float artifact is the trained network's: it agrees with it on every beat
    assert results["cpu-fp32"].metrics["agreement_with_keras"] == 1.0


def _header_macros(text: str) -> dict[str, str]:
    """``#define NAME VALUE`` lines of a generated header as {NAME: VALUE} (no include guard)."""
    return dict(re.findall(r"^#define (\w+) (\S+)$", text, re.M))


def _c_float(value: str) -> float:
    """A C float literal the header writes (``0.9f``) as the Python float it spells."""
    assert value.endswith("f"), value
    return float(value[:-1])


def test_firmware_header_has_every_input_and_both_rules(synth_dir, tmp_path):
    """tiny-rrt (beat, RR features, template; premature- and dominant-beat rules) -> micro
    int8 -> firmware export: model_config.h gives each of the three inputs the TFLite Micro
    input index, length, scale and zero point the artifact's interpreter reports, the
    template recipe, and every constant of both rules equal to the manifest's (numbers
    parsed from the header, not its strings matched)."""
    import shutil

    from vitaledge.convert.pipeline import ConvertOptions, convert_run
    from vitaledge.device.dsp.windows import WindowSpec
    from vitaledge.device.model.manifest import input_key
    from vitaledge.device.model.runtime import get_backend, make_interpreter
    from vitaledge.firmware_sim.export import export_firmware
    from vitaledge.train.config import BeatTrainConfig
    from vitaledge.train.fit import train_beat

    cfg = BeatTrainConfig(arch="tiny-rrt", records=str(synth_dir),
                          record_list=["s000", "s001", "s002"], window=WindowSpec.centered(),
                          split="record", test_records=["s002"], anchor="detected", epochs=3,
                          patience=3, seed=4, s_rule="timing", v_rule="template",
                          vote="similar", f_rule="normal")
    train_beat(cfg, tmp_path / "run", verbose=0)
    # accuracy is not the point here (three epochs): the artifact only has to be built
    res = convert_run(tmp_path / "run", tmp_path / "art",
                      ConvertOptions(targets=["micro"], max_drop=100.0))
    assert [(r.variant, r.status) for r in res] == [("micro-int8", OK)], res
    art = tmp_path / "art" / "micro-int8"
    man = json.loads((art / "manifest.json").read_text())
    sig = man["signal"]
    assert sig["premature"] is not None and sig["dominant"]["min_corr_any"] is not None
    assert sig["similar"] == {"beats": 300, "min_corr": 0.95}

    export_firmware(art, tmp_path / "fw")
    header = (tmp_path / "fw" / "model_config.h").read_text()
    d = _header_macros(header)
    ident = json.loads((tmp_path / "fw" / "export.json").read_text())["identifier"].upper()

    # every input: its subgraph index names that tensor, and its quantization is the tensor's
    details = make_interpreter((art / man["model_file"]).read_bytes(), get_backend(),
                               threads=1, delegate="none").get_input_details()
    specs = [man["input"], *man["extra_inputs"]]
    assert sorted(input_key(s["name"]) for s in specs) == ["beat", "rr", "template"]
    assert len(details) == 3
    indices = []
    for spec in specs:
        key = f"{ident}_{input_key(spec['name']).upper()}"
        idx = int(d[f"{key}_INPUT_INDEX"])
        indices.append(idx)
        det = details[idx]
        assert det["name"] == spec["name"], key
        assert det["dtype"] == np.int8, key
        scale, zero_point = det["quantization"]
        assert scale > 0, key
        assert _c_float(d[f"{key}_SCALE"]) == scale, key
        assert int(d[f"{key}_ZERO_POINT"]) == zero_point, key
        assert int(d[f"{key}_LENGTH"]) == int(np.prod(det["shape"][1:])), key
    assert sorted(indices) == [0, 1, 2]
    assert int(d[f"{ident}_TEMPLATE_BEATS"]) == sig["template"]["beats"]
    # the bundle's README tells the firmware writer about every input, not only the window
    readme = (tmp_path / "fw" / "README.md").read_text()
    more = readme.split("## More inputs:", 1)[1].split("## Output", 1)[0]
    for spec in specs:
        assert f"`{spec['name']}`" in more
    assert f"`{ident}_TEMPLATE_BEATS`" in more and "post-RR" in more
    # the fusion rule: the argmax's F index becomes N's
    assert sig["fusion"] == {"as_class": "N"}
    labels = man["labels"]
    assert int(d[f"{ident}_FUSION_FROM"]) == labels.index("F") != labels.index("N")
    assert int(d[f"{ident}_FUSION_TO"]) == labels.index("N")
    assert "`*_FUSION_*`" in readme and "fusion.py" in readme
    # the similar-beat vote
    assert int(d[f"{ident}_SIMILAR_BEATS"]) == sig["similar"]["beats"]
    assert _c_float(d[f"{ident}_SIMILAR_MIN_CORR"]) == sig["similar"]["min_corr"]
    assert "`*_SIMILAR_*`" in readme and "similar_beats.py" in readme
    # the micro artifact ends at int8 logits; the vote averages probabilities, so the
    # README's output section asks for the softmax on every beat instead of waiving it
    output = readme.split("## Output", 1)[1]
    assert "vote" in output and "softmax" in output and "no softmax needed" not in output

    # the premature-beat rule, term by term
    pre = sig["premature"]
    p = f"{ident}_PREMATURE"
    assert int(d[f"{p}_TERMS"]) == len(pre["terms"]) > 0
    assert _c_float(d[f"{p}_BIAS"]) == pre["bias"]
    assert _c_float(d[f"{p}_THRESHOLD"]) == pre["threshold"]
    assert _c_float(d[f"{p}_MAX_IRREGULARITY"]) == pre["max_irregularity"]
    weights = {k.removeprefix(f"{p}_WEIGHT_"): _c_float(v) for k, v in d.items()
               if k.startswith(f"{p}_WEIGHT_")}
    assert weights == {t.upper(): w for t, w in zip(pre["terms"], pre["weights"], strict=True)}

    # the dominant-beat rule; the trained defaults repeat a value (0.9: min_pre_rel,
    # min_corr_any, on_time's lower bound, the pause's max_pre_rel), so export copies whose
    # rule has distinct values: three, then without min_corr_any, then all eight
    def dominant_macros(name: str, rule: dict) -> dict[str, float]:
        edited = tmp_path / name
        shutil.copytree(art, edited)
        m2 = json.loads((edited / "manifest.json").read_text())
        m2["signal"]["dominant"] = rule
        (edited / "manifest.json").write_text(json.dumps(m2))
        export_firmware(edited, edited / "fw")
        got = _header_macros((edited / "fw" / "model_config.h").read_text())
        return {k.removeprefix(f"{ident}_DOMINANT_"): _c_float(v) for k, v in got.items()
                if k.startswith(f"{ident}_DOMINANT_")}

    dom = sig["dominant"]
    assert dominant_macros("trained", dom) == {"MIN_CORR": dom["min_corr"],
                                    "MIN_PRE_REL": dom["min_pre_rel"],
                                    "MIN_CORR_ANY": dom["min_corr_any"],
                                    "ON_TIME_LO": dom["on_time"][0],
                                    "ON_TIME_HI": dom["on_time"][1],
                                    "PAUSE_MAX_CORR": dom["compensatory"]["max_corr"],
                                    "PAUSE_MAX_PRE_REL": dom["compensatory"]["max_pre_rel"],
                                    "PAUSE_MIN": dom["compensatory"]["min_pause"]}
    assert dom["on_time"] == [0.9, 1.3]
    assert dom["compensatory"] == {"max_corr": 0.7, "max_pre_rel": 0.9, "min_pause": 1.9}
    distinct = {"min_corr": 0.85, "min_pre_rel": 0.7, "min_corr_any": 0.97}
    assert dominant_macros("distinct", distinct) == {"MIN_CORR": 0.85, "MIN_PRE_REL": 0.7,
                                         "MIN_CORR_ANY": 0.97}
    assert dominant_macros("no-any", {**distinct, "min_corr_any": None}) == {"MIN_CORR": 0.85,
                                                                   "MIN_PRE_REL": 0.7}
    # its own template and the compensatory pause, every value distinct from the others
    own = {**distinct, "on_time": [0.85, 1.25],
           "compensatory": {"max_corr": 0.6, "max_pre_rel": 0.8, "min_pause": 1.95}}
    assert dominant_macros("pause", own) == {"MIN_CORR": 0.85, "MIN_PRE_REL": 0.7,
                                             "MIN_CORR_ANY": 0.97, "ON_TIME_LO": 0.85,
                                             "ON_TIME_HI": 1.25, "PAUSE_MAX_CORR": 0.6,
                                             "PAUSE_MAX_PRE_REL": 0.8, "PAUSE_MIN": 1.95}

    if shutil.which("gcc"):  # the macros are C: every float one a valid float literal
        uses = ", ".join(k for k, v in d.items() if v.endswith("f"))
        (tmp_path / "fw" / "use.cc").write_text(
            f'#include "model_config.h"\nstatic const float used[] = {{{uses}}};\n'
            "float first() { return used[0]; }\n")
        r = subprocess.run(["gcc", "-x", "c++", "-std=c++17", "-Wall", "-Werror",
                            "-fsyntax-only", "use.cc"], cwd=tmp_path / "fw",
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
