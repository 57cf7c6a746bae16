import copy
import json

import pytest

from vitaledge.device.model.manifest import Manifest, ManifestError, load_manifest

VALID = {
    "schema_version": 1, "task": "beat", "labels": ["N", "S", "V", "F", "Q"],
    "model_file": "model.tflite", "sha256": "0" * 64, "size_bytes": 10, "target": "cpu",
    "quantization": "int8",
    "input": {"name": "x", "shape": [1, 187, 1], "dtype": "int8",
              "quantization": {"scale": 0.0039, "zero_point": -128}},
    "output": {"name": "y", "shape": [1, 5], "dtype": "int8",
               "quantization": {"scale": 0.0039, "zero_point": -128}},
    "signal": {"kind": "beat"}, "pruning": None, "source_run": {}, "metrics": {},
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
    (lambda d: d.update(schema_version=3), r"reads versions \(1, 2\)"),
    (lambda d: d.update(schema_version=2), r"missing field\(s\) \['extra_inputs'\]"),
    (lambda d: d.update(schema_version=2, extra_inputs=[{"name": "face"}]),
     r"extra_inputs\[0\]: missing field"),
])
def test_invalid_manifests_name_the_field(mutate, message):
    d = copy.deepcopy(VALID)
    mutate(d)
    with pytest.raises(ManifestError, match=message):
        Manifest.from_dict(d)


def test_version_1_reads_as_one_input_and_version_2_carries_extra_inputs():
    v1 = Manifest.from_dict(copy.deepcopy(VALID))
    assert v1.extra_inputs == [] and [t.name for t in v1.inputs] == ["x"]
    face = {"name": "face", "shape": [1, 48, 48, 1], "dtype": "float32", "quantization": None}
    v2 = Manifest.from_dict({**copy.deepcopy(VALID), "schema_version": 2,
                             "extra_inputs": [face]})
    assert [t.name for t in v2.inputs] == ["x", "face"]
    assert Manifest.from_dict(json.loads(json.dumps(v2.to_dict()))) == v2


def test_missing_manifest_and_missing_model_file(tmp_path):
    with pytest.raises(ManifestError, match="no manifest"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(VALID))
    with pytest.raises(ManifestError, match="model file named by the manifest is missing"):
        load_manifest(tmp_path)
