"""The conversion target table is complete and consistent: every target the manifest schema
knows has one entry and vice versa, each entry's quantizations, tasks, delegate and extras
hook are valid, and the CLI's ``--target`` choices, the checks and the docs come from it."""

import json

import pytest
from click.testing import CliRunner

from vitaledge.convert.targets import (
    FAMILIES,
    TARGETS,
    Built,
    choices,
    converter,
    family_of,
    markdown,
    quant_choices,
    quant_defaults,
    resolve,
    variant_name,
)
from vitaledge.device.model import manifest
from vitaledge.device.model.runtime import DELEGATE_LIBS


def test_table_and_manifest_schema_name_the_same_targets():
    assert set(TARGETS) == set(manifest.TARGETS)
    assert all(name == t.name for name, t in TARGETS.items())


def test_every_task_has_a_family_and_a_target():
    tasks = [t for fam in FAMILIES.values() for t in fam.tasks]
    assert sorted(tasks) == sorted(manifest.TASKS) and len(set(tasks)) == len(tasks)
    for task in manifest.TASKS:
        assert any(task in t.tasks for t in TARGETS.values()), task
        assert task in FAMILIES[family_of(task)].tasks
        assert callable(converter(task))  # its family's module:function imports
    with pytest.raises(ValueError, match="task 'ekg'"):
        family_of("ekg")


def test_quant_choices_and_help_come_from_the_table():
    """``--quant`` offers what some target makes (every quantization the manifest knows) and
    its help gives each target's defaults per family, read from the table."""
    from vitaledge.cli import main

    made = {a for t in TARGETS.values() for q in t.variants.values() for a in q.accepts}
    opt = next(p for p in main.commands["convert"].params if p.name == "quant")
    assert set(opt.type.choices) == made == set(manifest.QUANTS)
    assert list(opt.type.choices) == quant_choices()
    assert quant_defaults("beat") == "cpu none+int8, edgetpu int8, gpu fp16, micro int8"
    assert quant_defaults("emotion") in opt.help and quant_defaults("beat") in opt.help


@pytest.mark.parametrize("name", list(TARGETS))
def test_each_entry_is_consistent(name):
    t = TARGETS[name]
    assert callable(t.extras)
    assert t.delegate in {"xnnpack", "none", *DELEGATE_LIBS}
    assert t.summary and t.adds
    assert set(t.tasks) <= set(manifest.TASKS)
    assert set(t.variants) <= set(FAMILIES) and t.variants
    for q in t.variants.values():
        assert q.default and set(q.default) <= set(q.accepts) <= set(manifest.QUANTS)
    if set(t.variants) != set(FAMILIES):
        assert t.refusal, f"{name} refuses a family without saying why"


def test_extras_hooks_run_on_an_op_list(tmp_path):
    """cpu adds nothing; gpu and edgetpu write their reports from the model's op list (the
    micro hook needs a real model: tests/test_convert.py)."""
    t8 = {"dtype": "int8", "shape": [1, 8]}
    ops = [{"index": 0, "op": "FULLY_CONNECTED", "inputs": [t8], "outputs": [t8]},
           {"index": 1, "op": "UNIDIRECTIONAL_SEQUENCE_RNN", "inputs": [t8], "outputs": [t8]}]
    built = Built(b"", ops, tmp_path, "vitaledge", None)
    assert TARGETS["cpu"].extras(built) == {}
    assert TARGETS["gpu"].extras(built)["gpu"]["unsupported_ops"] == [
        "UNIDIRECTIONAL_SEQUENCE_RNN"]
    assert json.loads((tmp_path / "gpu_ops.json").read_text())["total_ops"] == 2
    rep = TARGETS["edgetpu"].extras(built)["edgetpu"]
    assert rep == {"mapped": 1, "total": 2, "split_at": 1, "fully_mapped": False}
    assert (tmp_path / "edgetpu_report.txt").exists()


def test_cli_target_choices_come_from_the_table(tmp_path):
    from vitaledge.convert.cli import convert_cmd

    assert choices() == [*TARGETS, "all"]
    opt = next(p for p in convert_cmd.params if p.name == "targets")
    assert opt.help.startswith(" | ".join(choices()))
    res = CliRunner().invoke(convert_cmd, [str(tmp_path), "--target", "cpu,tpu", "--out",
                                           str(tmp_path / "out")])
    assert res.exit_code == 2 and "tpu: expected " + " | ".join(choices()) in res.output


def test_resolve_checks_against_the_table(capsys):
    assert resolve(["all"], None) == [(n, q) for n, t in TARGETS.items()
                                       for q in t.variants["beat"].default]
    assert resolve(["gpu", "cpu"], "fp16") == [("gpu", "fp16"), ("cpu", "fp16")]
    # a named target that does not take the quantization was dropped without a word
    with pytest.raises(ValueError, match="target edgetpu takes quantization int8, not none"):
        resolve(["cpu", "edgetpu"], "none")
    assert resolve(["all"], "dynamic") == [("cpu", "dynamic")]
    assert "skipping target edgetpu: it takes quantization int8, not dynamic" in \
        capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown target 'tpu'"):
        resolve(["tpu"], None)
    with pytest.raises(ValueError, match="target edgetpu takes quantization int8, not fp16"):
        resolve(["edgetpu"], "fp16")
    assert resolve(["all"], None, "emotion") == [
        ("cpu", "none"), ("cpu", "fp16"), ("cpu", "int8-fc"), ("cpu", "int8"), ("gpu", "fp16")]
    assert "skipping target micro for emotion models" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no target of \\['micro'\\] makes emotion models"):
        resolve(["micro"], None, "emotion")


def test_variant_names():
    assert variant_name("cpu", "none") == "cpu-fp32"
    assert variant_name("edgetpu", "int8", 0.5) == "edgetpu-int8-pruned50"
    assert variant_name("cpu", "int8", 0.75, qat=True) == "cpu-int8-pruned75-qat"
    assert variant_name("cpu", "none", fused=True) == "cpu-fp32-fused"


def test_docs_table_has_a_row_per_target():
    rows = markdown().splitlines()[2:]
    assert [r.split("|")[1].strip() for r in rows] == list(TARGETS)
