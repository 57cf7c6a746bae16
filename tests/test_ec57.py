"""The EC57-style report: numbers checked by hand on a small confusion."""

import numpy as np
import pytest

from vitaledge.device.eval.ec57 import kappa, markdown, report, table

N, S, V, F, Q = range(5)


def test_per_class_figures_by_hand():
    # 10 N (1 called S), 4 S (2 called N), 5 V (all V), 1 F (called V), 2 Q (called N)
    y = np.array([N] * 10 + [S] * 4 + [V] * 5 + [F] + [Q] * 2)
    p = np.array([N] * 9 + [S] + [N, N, S, S] + [V] * 5 + [V] + [N, N])
    t = table(y, p)
    assert t["beats"] == 20  # Q reference beats apart
    assert t["accuracy"] == pytest.approx(16 / 20)
    s = t["classes"]["S"]
    assert (s["tp"], s["fn"], s["fp"]) == (2, 2, 1)
    assert s["se"] == pytest.approx(0.5) and s["ppv"] == pytest.approx(2 / 3)
    assert s["fpr"] == pytest.approx(1 / 16)
    assert s["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    v = t["classes"]["V"]
    assert v["se"] == 1.0 and v["ppv"] == pytest.approx(5 / 6)
    assert t["classes"]["F"]["se"] == 0.0 and t["classes"]["F"]["ppv"] is None
    assert t["q_reference"] == {"beats": 2, "predicted": {"N": 2, "S": 0, "V": 0, "F": 0,
                                                          "Q": 0}}


def test_kappa_matches_its_definition():
    cm = np.array([[20, 5], [10, 15]])
    po, pe = 35 / 50, (30 * 25 + 20 * 25) / 50 ** 2
    assert kappa(cm) == pytest.approx((po - pe) / (1 - pe))
    assert kappa(np.diag([3, 4])) == pytest.approx(1.0)


def test_report_has_gross_and_per_record_rows_and_prints_published_figures():
    y = np.array([N, N, S, V, N, V])
    p = np.array([N, S, S, V, N, N])
    rec = np.array(["100", "100", "100", "232", "232", "232"])
    r = report(y, p, rec, note="DS2 here is partial.")
    assert list(r["records"]) == ["100", "232"]
    assert r["records"]["232"]["classes"]["V"]["se"] == pytest.approx(0.5)
    md = markdown(r)
    assert "| vitaledge | 6 | 66.7 |" in md
    assert "de Chazal et al. 2004 (published)" in md and "| 75.9 | 38.5 |" in md
    assert md.rstrip().endswith("DS2 here is partial.")
