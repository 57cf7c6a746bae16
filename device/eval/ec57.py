"""Beat classification reported the way the field reports it (ANSI/AAMI EC57; de Chazal et
al. 2004): per class Se, +P, FPR and F1 for N, S, V and F; accuracy and Cohen's kappa; a
gross table over all beats and one row per record.

Q (unclassifiable and paced beats) is reported apart: the inter-patient test set DS2 has
almost none once paced records are excluded, and a model's Q column would say nothing about
arrhythmia. Beats whose reference class is Q are left out of the gross statistics and
counted in ``q_reference``; a beat of another class predicted as Q is an error like any
other.

``PUBLISHED`` holds DS1 -> DS2 figures of published methods, to print beside ours. Only
figures stated in the cited papers are given; ``None`` where we do not quote one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vitaledge.device.eval.metrics import confusion_matrix
from vitaledge.device.io.aami import CLASSES

SCORED = ("N", "S", "V", "F")

#: DS1 -> DS2 results as published (fractions). de Chazal et al., IEEE TBME 51(7):1196-1206,
#: 2004 (linear discriminants, morphology + RR); Mar et al., IEEE TBME 58(8):2168-2177, 2011;
#: Zhang et al., Comput. Biol. Med. 44:1-12, 2014; Mondéjar-Guerra et al., Biomed. Signal
#: Process. Control 47:41-48, 2019 (ensemble of SVMs).
PUBLISHED = [
    {"method": "de Chazal et al. 2004", "accuracy": 0.862,
     "S": {"se": 0.759, "ppv": 0.385}, "V": {"se": 0.777, "ppv": 0.819}},
    {"method": "Mar et al. 2011", "accuracy": 0.899},
    {"method": "Zhang et al. 2014", "accuracy": 0.883},
    {"method": "Mondéjar-Guerra et al. 2019", "accuracy": 0.945},
]


def _div(a: float, b: float) -> float | None:
    return float(a / b) if b else None


def class_stats(cm: np.ndarray, i: int) -> dict:
    """Se, +P, FPR, F1 and counts of class ``i`` from a confusion matrix ``cm[true, pred]``."""
    tp = int(cm[i, i])
    fn = int(cm[i].sum() - tp)
    fp = int(cm[:, i].sum() - tp)
    tn = int(cm.sum() - tp - fn - fp)
    se, ppv = _div(tp, tp + fn), _div(tp, tp + fp)
    f1 = _div(2 * se * ppv, se + ppv) if se is not None and ppv is not None else None
    return {"se": se, "ppv": ppv, "fpr": _div(fp, fp + tn), "f1": f1,
            "tp": tp, "fn": fn, "fp": fp, "support": tp + fn}


def kappa(cm: np.ndarray) -> float | None:
    """Cohen's kappa of a confusion matrix."""
    n = cm.sum()
    if not n:
        return None
    po = np.trace(cm) / n
    pe = float((cm.sum(axis=0) * cm.sum(axis=1)).sum()) / (n * n)
    return float((po - pe) / (1 - pe)) if pe < 1 else None


def table(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str] = CLASSES) -> dict:
    """One row of the report: beats whose reference is Q are counted apart."""
    labels = list(labels)
    q = labels.index("Q") if "Q" in labels else -1
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    keep = y_true != q
    cm = confusion_matrix(y_true[keep], y_pred[keep], len(labels))
    n = int(keep.sum())
    return {
        "beats": n,
        "accuracy": _div(np.trace(cm), n),
        "kappa": kappa(cm),
        "classes": {c: class_stats(cm, labels.index(c)) for c in SCORED if c in labels},
        "confusion": cm.tolist(),
        "q_reference": {"beats": int((~keep).sum()),
                        "predicted": {lab: int(((y_pred == i) & ~keep).sum())
                                      for i, lab in enumerate(labels)}},
    }


def report(y_true: np.ndarray, y_pred: np.ndarray, records: np.ndarray,
           labels: Sequence[str] = CLASSES, note: str = "") -> dict:
    """Gross table and one table per record (records in sorted order)."""
    records = np.asarray(records).astype(str)
    return {
        "labels": list(labels),
        "gross": table(y_true, y_pred, labels),
        "records": {r: table(y_true[records == r], y_pred[records == r], labels)
                    for r in sorted(set(records))},
        "published": PUBLISHED,
        "note": note,
    }


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def _row(name: str, t: dict) -> str:
    cells = [name, str(t["beats"]), _pct(t["accuracy"]),
             "—" if t["kappa"] is None else f"{t['kappa']:.3f}"]
    for c in SCORED:
        s = t["classes"].get(c)
        cells += [_pct(s and s["se"]), _pct(s and s["ppv"])] if s else ["—", "—"]
    return "| " + " | ".join(cells) + " |"


def markdown(rep: dict) -> str:
    """The report as Markdown: gross, per record, Q apart, published figures beside."""
    head = ("| | beats | Acc % | kappa | " + " | ".join(f"{c} Se | {c} +P" for c in SCORED)
            + " |\n|" + "---|" * (4 + 2 * len(SCORED)))
    lines = ["### Gross (all records)", "", head, _row("vitaledge", rep["gross"])]
    for p in rep["published"]:
        t = {"beats": "", "accuracy": p.get("accuracy"), "kappa": None,
             "classes": {c: {"se": p[c].get("se"), "ppv": p[c].get("ppv")}
                         for c in SCORED if c in p}}
        lines.append(_row(p["method"] + " (published)", t))
    g = rep["gross"]
    lines += ["", "Per class (gross): Se, +P, FPR, F1 in %", "",
              "| class | support | Se | +P | FPR | F1 |", "|---|---|---|---|---|---|"]
    for c, s in g["classes"].items():
        lines.append(f"| {c} | {s['support']} | {_pct(s['se'])} | {_pct(s['ppv'])} | "
                     f"{_pct(s['fpr'])} | {_pct(s['f1'])} |")
    lines += ["", "### Per record", "", head]
    lines += [_row(r, t) for r, t in rep["records"].items()]
    q = g["q_reference"]
    lines += ["", f"Q reference beats, reported apart: {q['beats']} "
              f"(predicted as {', '.join(f'{k} {v}' for k, v in q['predicted'].items() if v)})"
              if q["beats"] else "Q reference beats: none."]
    if rep.get("note"):
        lines += ["", rep["note"]]
    return "\n".join(lines) + "\n"
