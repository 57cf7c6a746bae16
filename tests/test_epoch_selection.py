"""The validation figure that picks a beat model's epoch (vitaledge.train.fit.selection_f1):
classes with a handful of validation beats, or none, do not decide it."""

from __future__ import annotations

import numpy as np

from vitaledge.device.eval.metrics import classification_metrics
from vitaledge.device.io.aami import CLASSES


def _metrics(pairs: list[tuple[str, str, int]]) -> dict:
    """Metrics of ``n`` beats of true class t predicted as p for each (t, p, n)."""
    y = np.concatenate([[CLASSES.index(t)] * n for t, _, n in pairs])
    yp = np.concatenate([[CLASSES.index(p)] * n for _, p, n in pairs])
    return classification_metrics(y, yp, list(CLASSES))


def test_a_class_with_a_handful_of_validation_beats_does_not_pick_the_epoch():
    from vitaledge.train.fit import selection_f1

    # two validation patients as in DS1 fold 1 (101 and 116): thousands of N, a hundred
    # V, three S; two epochs that differ only in one N beat called F, a class the
    # validation patients do not have
    a = _metrics([("N", "N", 4000), ("V", "V", 100), ("V", "N", 9), ("S", "S", 1),
                  ("S", "N", 2)])
    b = _metrics([("N", "N", 3999), ("N", "F", 1), ("V", "V", 100), ("V", "N", 9),
                  ("S", "S", 1), ("S", "N", 2)])
    # the plain macro average drops by a fifth for that one beat (F counts, with F1 0) ...
    assert a["macro"]["f1"] - b["macro"]["f1"] > 0.15
    # ... the selection figure is the N and V F1 of both, nearly equal
    for m in (a, b):
        n, v = m["per_class"]["N"]["f1"], m["per_class"]["V"]["f1"]
        assert selection_f1(m, 20) == np.mean([n, v])
    assert abs(selection_f1(a, 20) - selection_f1(b, 20)) < 0.001


def test_with_fewer_than_two_well_supported_classes_every_class_present_counts():
    from vitaledge.train.fit import selection_f1

    m = _metrics([("N", "N", 500), ("S", "S", 5), ("S", "N", 5), ("N", "V", 2)])
    f1 = [m["per_class"][c]["f1"] for c in ("N", "S")]  # V predicted, never present
    assert selection_f1(m, 20) == np.mean(f1)
    assert selection_f1(m, 1) == np.mean(f1)
