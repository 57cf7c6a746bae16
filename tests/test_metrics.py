import numpy as np
import pytest
from sklearn.metrics import classification_report, confusion_matrix

from vitaledge.device.eval.metrics import classification_metrics, format_report


def test_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(1)
    y = rng.choice(5, 2000, p=[0.6, 0.1, 0.15, 0.05, 0.1])
    pred = np.where(rng.random(2000) < 0.8, y, rng.choice(5, 2000))
    m = classification_metrics(y, pred, list("NSVFQ"))
    ref = classification_report(y, pred, output_dict=True, zero_division=0)
    assert m["accuracy"] == pytest.approx(ref["accuracy"])
    for avg in ("macro", "weighted"):
        for k in ("precision", "recall", "f1"):
            assert m[avg][k] == pytest.approx(ref[f"{avg} avg"][k if k != "f1" else "f1-score"])
    assert m["confusion_matrix"] == confusion_matrix(y, pred).tolist()
    assert m["per_class"]["V"]["support"] == int(np.sum(y == 2))
    assert "macro avg" in format_report(m)


def test_absent_classes_do_not_drag_the_macro_average():
    y = np.array([0, 0, 1, 1])
    m = classification_metrics(y, y, list("NSVFQ"))
    assert m["macro"]["f1"] == 1.0 and m["per_class"]["F"]["support"] == 0


def test_the_confusion_table_keeps_long_labels_apart():
    """Speech labels ("fearful", "surprised") are wider than the beat classes' columns:
    each column is as wide as its longest label plus a space ("fearsurprise" could not be
    read), and the beat table is laid out as before."""
    from vitaledge.device.eval.metrics import format_confusion

    speech = format_confusion({"labels": ["neutral", "fearful", "surprised"],
                               "confusion_matrix": [[1, 20, 3], [4, 5, 6], [7, 8, 900]]})
    head, *rows = speech.splitlines()
    assert head.split() == ["true\\pred", "neutral", "fearful", "surprised"]
    assert rows[2].split() == ["surprised", "7", "8", "900"]
    assert len({len(line) for line in speech.splitlines()}) == 1
    beat = format_confusion({"labels": list("NSVFQ"), "confusion_matrix": [[2237] * 5] * 5})
    assert beat.splitlines()[0] == "true\\pred" + "".join(f"{c:>8}" for c in "NSVFQ")
