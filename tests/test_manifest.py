import copy
import dataclasses
import json

import numpy as np
import pytest

from vitaledge.device.dsp.rr import RRSpec
from vitaledge.device.dsp.windows import WindowSpec
from vitaledge.device.inputs import emotion_ecg
from vitaledge.device.inputs import multimodal as mm
from vitaledge.device.inputs.beat import BeatSignal
from vitaledge.device.inputs.mel import SpeechSignal
from vitaledge.device.io.heldout import HeldoutError, read_heldout, write_heldout
from vitaledge.device.model.manifest import (
    SCHEMA_VERSION,
    SIGNAL_SPECS,
    Manifest,
    ManifestError,
    load_manifest,
)

BEAT_SIGNAL = {"kind": "beat", "window": WindowSpec.kachuee().to_dict(), "lead": "MLII"}

VALID = {
    "schema_version": 1, "task": "beat", "labels": ["N", "S", "V", "F", "Q"],
    "model_file": "model.tflite", "sha256": "0" * 64, "size_bytes": 10, "target": "cpu",
    "quantization": "int8",
    "input": {"name": "x", "shape": [1, 187, 1], "dtype": "int8",
              "quantization": {"scale": 0.0039, "zero_point": -128}},
    "output": {"name": "y", "shape": [1, 5], "dtype": "int8",
               "quantization": {"scale": 0.0039, "zero_point": -128}},
    "signal": BEAT_SIGNAL, "pruning": None, "source_run": {}, "metrics": {},
    "created": "2026-01-01T00:00:00+00:00", "vitaledge_version": "0.1.0", "extra": {},
}


def test_valid_manifest_round_trips():
    m = Manifest.from_dict(copy.deepcopy(VALID))
    assert m.input.quantization.zero_point == -128
    assert Manifest.from_dict(json.loads(json.dumps(m.to_dict()))) == m


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(hop=3), r"unknown field\(s\) \['hop'\]"),
    (lambda d: d.pop("sha256"), r"missing field\(s\) \['sha256'\]"),
    (lambda d: d["input"].update(extra=1), r"input: unknown field"),
    (lambda d: d["input"].update(quantization=None), "required for dtype int8"),
    (lambda d: d["input"].update(shape=[1, -3]), "positive integers"),
    (lambda d: d["input"]["quantization"].update(scale=0), "must be > 0"),
    (lambda d: d.update(task="dance"), "task"),
    (lambda d: d.update(target="fpga"), "target"),
    (lambda d: d.update(sha256="abc"), "64 lowercase hex"),
    (lambda d: d.update(model_file="../../etc/passwd"), "plain file name"),
    (lambda d: d["output"].update(shape=[1, 4]), "4 != 5 labels"),
    (lambda d: d.update(size_bytes="10"), "expected int"),
    (lambda d: d.update(schema_version=5), r"reads versions \(1, 2, 3, 4\)"),
    (lambda d: d.update(schema_version=3, extra_inputs=[]),
     r"missing field\(s\) \['output_kind'\]"),
    (lambda d: d["extra"].update(output="log-probabilities"), "output_kind"),
    (lambda d: d.update(signal=[]), r"manifest\.signal: expected dict"),
    (lambda d: d.update(schema_version=2), r"missing field\(s\) \['extra_inputs'\]"),
    (lambda d: d.update(schema_version=2, extra_inputs=[{"name": "face"}]),
     r"extra_inputs\[0\]: missing field"),
    # labels a beat model's decision could not use: the daemon died at the first beat
    (lambda d: d.update(labels=list("ABCDE")), r"labels: \['A', 'B', 'C', 'D', 'E'\] not "
                                               "AAMI beat classes"),
    (lambda d: d.update(labels=["N", "N", "S", "V", "Q"]), r"labels: \['N'\] given more "
                                                          "than once"),
    # an order the filter design would take minutes and a gigabyte over
    (lambda d: d["signal"]["window"]["filter"].update(order=200),
     "signal.window.filter.order: expected an integer from 1 to 8, got 200"),
    (lambda d: d["extra"].update(micro={"c_array": "m", "arena_bytes": 1}),
     "arena_bytes: expected an integer of at least 1024"),
])
def test_invalid_manifests_name_the_field(mutate, message):
    d = copy.deepcopy(VALID)
    mutate(d)
    with pytest.raises(ManifestError, match=message):
        Manifest.from_dict(d)


def test_version_1_reads_as_one_input_and_version_2_carries_extra_inputs():
    v1 = Manifest.from_dict(copy.deepcopy(VALID))
    assert v1.extra_inputs == [] and [t.name for t in v1.inputs] == ["x"]
    two = copy.deepcopy(VALID)
    two["input"]["name"] = "serving_default_beat:0"
    two["signal"]["rr"] = RRSpec().to_dict()
    rr = {"name": "serving_default_rr:0", "shape": [1, 7], "dtype": "float32",
          "quantization": None}
    v2 = Manifest.from_dict({**two, "schema_version": 2, "extra_inputs": [rr]})
    assert [t.name for t in v2.inputs] == ["serving_default_beat:0", "serving_default_rr:0"]
    assert Manifest.from_dict(json.loads(json.dumps(v2.to_dict()))) == v2


def test_a_beat_model_with_rr_features_needs_both_inputs():
    """The multi-input manifest round-trips; a missing or misnamed input is refused."""
    two = copy.deepcopy(VALID)
    two["input"]["name"] = "serving_default_beat:0"
    two["signal"]["rr"] = RRSpec().to_dict()
    rr = {"name": "serving_default_rr:0", "shape": [1, 7], "dtype": "float32",
          "quantization": None}
    three = {**two, "schema_version": 3, "output_kind": "probabilities"}
    m = Manifest.from_dict({**three, "extra_inputs": [rr]})
    assert m.signal.rr == RRSpec() and m.signal.input_names() == ["beat", "rr"]
    assert Manifest.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    with pytest.raises(ManifestError, match=r"makes inputs \['beat', 'rr'\], the model has 1"):
        Manifest.from_dict({**three, "extra_inputs": []})
    with pytest.raises(ManifestError, match=r"the model takes \['beat', 'face'\]"):
        Manifest.from_dict({**three, "extra_inputs": [{**rr, "name": "serving_default_face:0"}]})
    with pytest.raises(ManifestError, match="the model has 2"):  # rr input, no rr spec
        Manifest.from_dict({**copy.deepcopy(VALID), "schema_version": 3,
                            "output_kind": "probabilities", "extra_inputs": [rr]})


def test_missing_manifest_and_missing_model_file(tmp_path):
    with pytest.raises(ManifestError, match="no manifest"):
        load_manifest(tmp_path)
    with pytest.raises(ManifestError, match=r"nomodel: no such model directory"):
        load_manifest(tmp_path / "nomodel")  # a mistyped --model: not "no manifest"
    (tmp_path / "manifest.json").write_text(json.dumps(VALID))
    with pytest.raises(ManifestError, match="model file named by the manifest is missing"):
        load_manifest(tmp_path)


def test_a_model_file_alone_is_named_as_one(tmp_path):
    """A .tflite copied out of its artifact (no manifest.json beside it) was read as the
    manifest: "not valid JSON: 'utf-8' codec can't decode byte 0x90"."""
    (tmp_path / "model.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(range(256)))
    with pytest.raises(ManifestError, match=r"model\.tflite: a model file with no "
                                            r"manifest\.json beside it"):
        load_manifest(tmp_path / "model.tflite")


def test_the_model_file_given_for_its_artifact_directory(tmp_path):
    """``--model art/model.tflite`` reads the manifest beside it (it said "not valid JSON");
    another .tflite there is not that manifest's model, and an empty model is named."""
    import hashlib

    from vitaledge.device.model.runtime import Model, ModelLoadError

    content = b"\x00" * 10
    (tmp_path / "model.tflite").write_bytes(content)
    (tmp_path / "other.tflite").write_bytes(content)
    valid = {**VALID, "sha256": hashlib.sha256(content).hexdigest()}
    (tmp_path / "manifest.json").write_text(json.dumps(valid))
    m, model_path = load_manifest(tmp_path / "model.tflite")
    assert model_path == tmp_path / "model.tflite" and m.model_file == "model.tflite"
    with pytest.raises(ManifestError, match=r"other\.tflite: not the model of the manifest "
                                            r"beside it .* names model\.tflite"):
        load_manifest(tmp_path / "other.tflite")
    (tmp_path / "model.tflite").write_bytes(b"")
    empty = {**VALID, "sha256": hashlib.sha256(b"").hexdigest(), "size_bytes": 0}
    (tmp_path / "manifest.json").write_text(json.dumps(empty))
    with pytest.raises(ModelLoadError, match=r"model\.tflite: the model file is empty"):
        Model(tmp_path)


# --------------------------------------------------------------------------- signal specs

SIGNALS = {"beat": BEAT_SIGNAL, "emotion-ecg": emotion_ecg.default_signal(),
           "emotion-multimodal": mm.default_signal(), "emotion-speech": SpeechSignal().to_dict()}


def _with_signal(task: str, signal: dict) -> dict:
    return {**copy.deepcopy(VALID), "schema_version": SCHEMA_VERSION, "extra_inputs": [],
            "output_kind": "probabilities", "selftest": None, "task": task, "signal": signal}


@pytest.mark.parametrize("task", list(SIGNALS))
def test_each_task_reads_its_signal_spec_typed(task):
    m = Manifest.from_dict(_with_signal(task, copy.deepcopy(SIGNALS[task])))
    assert isinstance(m.signal, SIGNAL_SPECS[task])
    assert m.to_dict()["signal"] == SIGNALS[task]
    assert Manifest.from_dict(json.loads(json.dumps(m.to_dict()))) == m


@pytest.mark.parametrize("task, mutate, field, message", [
    ("beat", lambda s: s["window"].update(length="x"), "signal.window.length",
     "expected int, got 'x'"),
    ("beat", lambda s: s["window"].update(fs=-125.0), "signal.window.fs",
     r"-125.0 Hz is outside 10-10000 Hz"),
    # accepted by info and selftest; bench run, bench stream and bench noise-stress hung
    # in the resampler's filter design
    ("beat", lambda s: s["window"].update(fs=1e9), "signal.window.fs",
     r"1000000000.0 Hz is outside 10-10000 Hz"),
    ("emotion-ecg", lambda s: s.update(fs=5.0), "signal.fs", "5.0 Hz is outside"),
    ("emotion-multimodal", lambda s: s.update(physio_fs=1e6), "signal.physio_fs",
     "1000000.0 Hz is outside 1-1000 Hz"),
    ("emotion-multimodal", lambda s: s.update(physio_fs=0.5), "signal.physio_fs",
     "0.5 Hz is outside 1-1000 Hz"),
    ("emotion-speech", lambda s: s.update(sample_rate=1e7), "signal",
     "sample_rate must be 10-192000 Hz"),
    ("beat", lambda s: s["window"].update(convention="sideways"),
     "signal.window.convention", "not one of"),
    ("beat", lambda s: s["window"]["filter"].update(order="2"), "signal.window.filter.order",
     "expected int"),
    ("beat", lambda s: s.pop("lead"), "signal", r"missing fields \['lead'\]"),
    # read as the default 187 samples, then refused naming a 187/87 mismatch elsewhere
    ("beat", lambda s: s["window"].pop("length"), "signal.window",
     r"missing fields \['length'\]"),
    ("beat", lambda s: s.update(kind="rhythm"), "signal.kind", "is not 'beat'"),
    ("emotion-ecg", lambda s: s.update(n_windows=0), "signal.n_windows", "positive"),
    ("emotion-ecg", lambda s: s.update(skip_s=-1.0), "signal.skip_s", ">= 0"),
    ("emotion-ecg", lambda s: s.update(pad_short="yes"), "signal.pad_short", "expected bool"),
    ("emotion-ecg", lambda s: s.update(typo=1), "signal", r"unknown fields \['typo'\]"),
    ("emotion-ecg", lambda s: s.update(filter={"low_hz": "0.5"}), "signal.filter.low_hz",
     "expected float"),
    ("emotion-multimodal", lambda s: s.update(feature_std=[0.0] * len(s["feature_std"])),
     "signal.feature_std", "positive"),
    ("emotion-multimodal", lambda s: s.update(feature_mean=[0.0]), "signal.feature_mean",
     "values"),
    ("emotion-multimodal", lambda s: s.update(features=["hr"]), "signal.features",
     "not the ones"),
    ("emotion-multimodal", lambda s: s.update(face_size=4.5), "signal.face_size",
     "expected int"),
    ("emotion-speech", lambda s: s.update(n_mels="many"), "signal.n_mels", "expected int"),
    ("emotion-speech", lambda s: s.pop("hop"), "signal", r"missing keys \['hop'\]"),
    ("emotion-speech", lambda s: s.update(duration_s=float("inf")), "signal.duration_s",
     "expected float"),
])
def test_bad_signal_field_is_a_manifest_error_naming_it(task, mutate, field, message):
    sig = copy.deepcopy(SIGNALS[task])
    mutate(sig)
    with pytest.raises(ManifestError, match=rf"^manifest: {field}: .*{message}"):
        Manifest.from_dict(_with_signal(task, sig))


def test_a_bad_signal_in_a_file_names_the_file_and_the_field(tmp_path):
    d = copy.deepcopy(VALID)
    d["signal"]["window"]["length"] = "x"
    (tmp_path / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(ManifestError, match=r"manifest.json: signal.window.length: expected "
                                            r"int, got 'x'"):
        load_manifest(tmp_path, verify_file=False)


def test_stage_inputs_take_the_typed_spec():
    spec = SIGNAL_SPECS["emotion-ecg"].from_dict(emotion_ecg.default_signal())
    x = np.sin(np.arange(70 * 128) / 9.0)
    np.testing.assert_array_equal(emotion_ecg.segments(x, 128.0, spec),
                                  emotion_ecg.segments(x, 128.0, emotion_ecg.default_signal()))
    assert BeatSignal.from_dict(BEAT_SIGNAL).window == WindowSpec.kachuee()


# --------------------------------------------------------------------------- versions, output


def test_versions_1_and_2_read_to_the_same_typed_manifest_as_3():
    v1 = {**copy.deepcopy(VALID), "extra": {"output": "logits", "ops": ["FULLY_CONNECTED"]}}
    v2 = {**copy.deepcopy(v1), "schema_version": 2, "extra_inputs": []}
    v3 = {**copy.deepcopy(VALID), "schema_version": 3, "extra_inputs": [],
          "extra": {"ops": ["FULLY_CONNECTED"]}, "output_kind": "logits"}
    m1, m2, m3 = (Manifest.from_dict(d) for d in (v1, v2, v3))
    assert m1.output_kind == m2.output_kind == "logits" and "output" not in m1.extra
    assert dataclasses.replace(m1, schema_version=3) == dataclasses.replace(
        m2, schema_version=3) == m3
    assert isinstance(m1.signal, BeatSignal) and m1.signal == m3.signal
    # without extra.output an old manifest's model outputs probabilities
    assert Manifest.from_dict(copy.deepcopy(VALID)).output_kind == "probabilities"


@pytest.mark.parametrize("kind", ["probabilities", "logits"])
def test_output_kind_round_trips(kind, tmp_path):
    m = Manifest.from_dict({**copy.deepcopy(VALID), "schema_version": 3, "extra_inputs": [],
                            "output_kind": kind})
    m.save(tmp_path / "manifest.json")
    raw = json.loads((tmp_path / "manifest.json").read_text())
    assert raw["output_kind"] == kind and raw["schema_version"] == 3
    back, _ = load_manifest(tmp_path, verify_file=False)
    assert back == m and back.output_kind == kind


# --------------------------------------------------------------------------- heldout.npz


def test_heldout_round_trip_single_input(tmp_path):
    X, y = np.random.default_rng(0).standard_normal((7, 187)), np.arange(7) % 5
    write_heldout(tmp_path / "heldout.npz", X, y, BEAT_SIGNAL)
    h = read_heldout(tmp_path / "heldout.npz")
    assert len(h.inputs) == 1 and h.inputs[0].dtype == np.float32
    np.testing.assert_array_equal(h.x, X.astype(np.float32))
    np.testing.assert_array_equal(h.y, y)
    assert h.y.dtype == np.int64 and h.signal == BEAT_SIGNAL
    assert not list(tmp_path.glob("*.tmp"))


def test_heldout_round_trip_multi_input(tmp_path):
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((4, 320, 2)), rng.standard_normal((4, 8)),
          rng.standard_normal((4, 48, 48, 1))]
    sig = mm.default_signal()
    write_heldout(tmp_path / "heldout.npz", xs, [0, 1, 2, 3], sig)
    h = read_heldout(tmp_path / "heldout.npz")
    assert isinstance(h.x, list) and [a.shape for a in h.x] == [a.shape for a in xs]
    for a, b in zip(h.inputs, xs, strict=True):
        np.testing.assert_array_equal(a, b.astype(np.float32))
    assert h.signal == sig and h.y.tolist() == [0, 1, 2, 3]


def test_heldout_reads_the_older_beat_layout_and_refuses_garbage(tmp_path):
    X = np.ones((3, 187), np.float32)
    window = WindowSpec.kachuee().to_dict()
    np.savez_compressed(tmp_path / "old.npz", X=X, y=np.zeros(3, int), window=json.dumps(window))
    h = read_heldout(tmp_path / "old.npz")
    assert h.signal == {"kind": "beat", "window": window}
    np.testing.assert_array_equal(h.x, X)
    np.savez_compressed(tmp_path / "bad.npz", Z=X)
    with pytest.raises(HeldoutError, match="bad.npz: expected arrays X_0"):
        read_heldout(tmp_path / "bad.npz")
    with pytest.raises(HeldoutError, match="no held-out file"):
        read_heldout(tmp_path / "missing.npz")


def test_rows_problem_names_an_input_whose_rows_the_tensor_does_not_take():
    """firmware mcu and bench run fed such a file to the model: numpy's 'cannot reshape
    array of size 10 into shape (1,87,1)' (or a failed row) instead of the file's fault."""
    m = Manifest.from_dict(VALID)  # one input, 1x187x1
    assert m.rows_problem([np.zeros((4, 187, 1))]) is None
    assert m.rows_problem([np.zeros((4, 187))]) is None  # the same samples per row
    assert m.rows_problem([np.zeros((4, 10, 1))]) == (
        "input 0 (x) has rows of [10, 1]; the model's tensor takes [187, 1]")
    assert m.rows_problem([np.zeros((4, 187, 1))] * 2) == (
        "2 input arrays for a model of 1 inputs")


def test_a_beat_model_lacking_a_class_its_rules_decide_is_refused():
    """A four-class beat model (no V) with the dominant-beat rule: the rule's
    labels.index('V') failed at the first beat."""
    from vitaledge.device.dsp.dominant import DominantRule
    from vitaledge.device.dsp.template import TemplateSpec

    sig = BeatSignal(window=WindowSpec.kachuee(), rr=RRSpec(), template=TemplateSpec(),
                     dominant=DominantRule()).to_dict()
    d = _with_signal("beat", sig)
    d["labels"] = ["N", "S", "F", "Q"]
    d["output"]["shape"] = [1, 4]
    with pytest.raises(ManifestError, match=r"lack 'V', which the dominant-beat rule decides"):
        Manifest.from_dict(d)


def test_a_multimodal_physio_rate_of_a_few_hz_is_a_models():
    """The physio sequence may be resampled to 1-1000 Hz (--physio-fs; 4 Hz is usual for
    GSR): the records' 10 Hz floor refused what training made."""
    from vitaledge.device.inputs.multimodal import MultimodalSignal, default_signal

    assert MultimodalSignal.from_dict(default_signal(physio_fs=4.0)).physio_fs == 4.0


@pytest.mark.parametrize("write", ["manifest", "heldout"])
def test_a_failed_write_of_an_artifact_file_leaves_the_earlier_one_and_no_temporary(
        tmp_path, monkeypatch, write):
    """The manifest and the held-out inputs are written through write_atomic: a failure
    (a full disk at the rename) left their .tmp file beside the earlier one."""
    import os

    target = tmp_path / ("manifest.json" if write == "manifest" else "heldout.npz")
    target.write_bytes(b"earlier")

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError, match="No space"):
        if write == "manifest":
            Manifest.from_dict(copy.deepcopy(VALID)).save(target)
        else:
            write_heldout(target, np.zeros((2, 187, 1)), np.array([0, 1]), BEAT_SIGNAL)
    assert target.read_bytes() == b"earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
