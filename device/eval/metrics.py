"""Classification metrics in plain numpy, so the device side can score itself.

The same functions serve training reports, conversion checks and the bench, so one
number means one thing everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts ``cm[t, p]`` of true class t predicted as p."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), 0.0)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray,
                           labels: Sequence[str]) -> dict:
    """Accuracy, per-class and macro/weighted precision, recall, F1, and the confusion matrix.

    Classes with no support and no predictions are reported but left out of the macro
    average (they carry no information about the model), as scikit-learn does when the
    ``labels`` argument lists only the classes present.
    """
    k = len(labels)
    cm = confusion_matrix(y_true, y_pred, k)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    present = (support > 0) | (predicted > 0)
    n = support.sum()
    per_class = {
        lab: {"precision": float(precision[i]), "recall": float(recall[i]),
              "f1": float(f1[i]), "support": int(support[i])}
        for i, lab in enumerate(labels)
    }

    def avg(v: np.ndarray, w: np.ndarray | None) -> float:
        if w is None:
            return float(v[present].mean()) if present.any() else 0.0
        return float((v * w).sum() / w.sum()) if w.sum() > 0 else 0.0

    return {
        "n": int(n),
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro": {"precision": avg(precision, None), "recall": avg(recall, None),
                  "f1": avg(f1, None)},
        "weighted": {"precision": avg(precision, support), "recall": avg(recall, support),
                     "f1": avg(f1, support)},
        "per_class": per_class,
        "labels": list(labels),
        "confusion_matrix": cm.tolist(),
    }


def format_report(m: dict) -> str:
    """A classification report in the familiar scikit-learn text layout."""
    lines = [f"{'':>12}{'precision':>10}{'recall':>10}{'f1-score':>10}{'support':>10}", ""]
    for lab, pc in m["per_class"].items():
        lines.append(f"{lab:>12}{pc['precision']:>10.4f}{pc['recall']:>10.4f}"
                     f"{pc['f1']:>10.4f}{pc['support']:>10d}")
    lines.append("")
    lines.append(f"{'accuracy':>12}{'':>10}{'':>10}{m['accuracy']:>10.4f}{m['n']:>10d}")
    for name in ("macro", "weighted"):
        a = m[name]
        lines.append(f"{name + ' avg':>12}{a['precision']:>10.4f}{a['recall']:>10.4f}"
                     f"{a['f1']:>10.4f}{m['n']:>10d}")
    return "\n".join(lines)


def format_confusion(m: dict) -> str:
    """Confusion matrix as text, rows = true class, columns = predicted."""
    labels = [str(lab) for lab in m["labels"]]
    # a column as wide as its longest label and count, and a space apart ("surprised")
    w = max(7, *(len(lab) for lab in labels),
            *(len(str(v)) for row in m["confusion_matrix"] for v in row)) + 1
    first = max(9, *(len(lab) for lab in labels))
    head = "true\\pred".ljust(first) + "".join(f"{lab:>{w}}" for lab in labels)
    rows = [head] + [f"{lab:>{first}}" + "".join(f"{v:>{w}d}" for v in row)
                     for lab, row in zip(labels, m["confusion_matrix"], strict=True)]
    return "\n".join(rows)
