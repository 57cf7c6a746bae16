"""The fusion rule: the network's F calls are decided as N, before the dominant-beat and
premature-beat rules, and the rule travels in the manifest's signal spec."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vitaledge.device.dsp.fusion import FusionRule
from vitaledge.device.dsp.premature import PrematureRule
from vitaledge.device.dsp.rr import FEATURES, RRSpec
from vitaledge.device.dsp.spec_fields import SpecError
from vitaledge.device.dsp.windows import WindowSpec
from vitaledge.device.inputs.beat import BeatSignal

LABELS = ["N", "S", "V", "F", "Q"]


def test_f_calls_become_the_rules_class_and_nothing_else_moves():
    pred = np.array([0, 1, 2, 3, 4, 3])
    assert FusionRule().apply(pred, LABELS).tolist() == [0, 1, 2, 0, 4, 0]
    assert FusionRule("V").apply(pred, LABELS).tolist() == [0, 1, 2, 2, 4, 2]
    assert FusionRule().apply(pred, ["N", "S", "V"]).tolist() == pred.tolist()  # no F
    assert pred.tolist() == [0, 1, 2, 3, 4, 3]  # not changed in place


def test_the_rule_round_trips_and_refuses_what_it_cannot_do():
    assert FusionRule.from_dict(FusionRule().to_dict()) == FusionRule()
    with pytest.raises(SpecError, match=r"fusion\.as_class: expected one of \['N', 'V', 'Q'\]"):
        FusionRule.from_dict({"as_class": "F"})
    with pytest.raises(SpecError, match=r"fusion: unknown fields \['to'\]"):
        FusionRule.from_dict({"as_class": "N", "to": "N"})


def _rr_rows(pre_rel: list[float]) -> np.ndarray:
    rows = np.zeros((len(pre_rel), len(FEATURES)))
    for i, p in enumerate(pre_rel):
        rows[i] = [0.8 * p, 0.8, 0.8, 0.8, p, 1.0, 1.0, 0.02]
    return rows


def test_an_f_call_is_decided_as_n_before_the_timing_rule():
    """An F call that comes early in a regular rhythm is S (the premature-beat rule sees
    it as the N beat it was decided as); on time it is N; without the rule it stays F."""
    rule = PrematureRule(["pre_rel"], [-20.0], -3.0, 0.8, max_irregularity=0.1)
    base = dict(window=WindowSpec.centered(), rr=RRSpec(), premature=rule)
    probs = np.array([[0.1, 0.1, 0.1, 0.6, 0.1]] * 2)  # both argmax F
    rr = _rr_rows([0.6, 1.0])
    with_rule = BeatSignal(**base, fusion=FusionRule())
    assert with_rule.decide(probs, LABELS, {"rr": rr}).tolist() == [1, 0]
    assert BeatSignal(**base).decide(probs, LABELS, {"rr": rr}).tolist() == [3, 3]
    alone = BeatSignal(window=WindowSpec.centered(), fusion=FusionRule())
    assert alone.decide(probs, LABELS).tolist() == [0, 0]


def test_the_spec_carries_the_rule_and_older_specs_read_without_it():
    sig = BeatSignal(window=WindowSpec.centered(), rr=RRSpec(), fusion=FusionRule())
    d = json.loads(json.dumps(sig.to_dict()))
    assert d["fusion"] == {"as_class": "N"}
    assert BeatSignal.from_dict(d) == sig
    del d["fusion"]
    assert BeatSignal.from_dict(d).fusion is None
    with pytest.raises(SpecError, match=r"signal\.fusion\.as_class"):
        BeatSignal.from_dict({**d, "fusion": {"as_class": "S"}})


@pytest.mark.slow
def test_train_beat_gives_rr_models_the_rule_by_default(synth_dir, tmp_path):
    from click.testing import CliRunner

    from vitaledge.cli import main

    common = ["--data", str(synth_dir), "--split", "record", "--test-records", "s003",
              "--epochs", "1"]
    r = CliRunner().invoke(main, ["train", "beat", "--arch", "tiny-rr", *common, "--out",
                                  str(tmp_path / "rr")])
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "rr" / "config.json").read_text())
    assert cfg["f_rule"] == "normal" and cfg["fusion"] == {"as_class": "N"}
    assert cfg["ensemble"] == 6  # RR models' default too: six networks averaged
    r = CliRunner().invoke(main, ["train", "beat", "--arch", "tiny-rr", *common, "--f-rule",
                                  "network", "--ensemble", "1", "--out", str(tmp_path / "net")])
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "net" / "config.json").read_text())
    assert cfg["f_rule"] == "network" and cfg["fusion"] is None
