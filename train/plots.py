"""Training figures (matplotlib, headless): history, confusion matrix, ROC curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(history: dict[str, list[float]], path: Path) -> None:
    """Loss and accuracy (and validation macro F1 when logged) per epoch."""
    plt = _plt()
    keys = [("loss", "val_loss"), ("accuracy", "val_accuracy")]
    if "val_macro_f1" in history:
        keys.append(("val_macro_f1",))
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6))
    for ax, group in zip(np.atleast_1d(axes), keys, strict=True):
        for k in group:
            if k in history:
                ax.plot(np.arange(1, len(history[k]) + 1), history[k], label=k)
        ax.set_xlabel("epoch")
        ax.set_title(group[0].replace("val_", "validation "))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion(cm: np.ndarray, labels: list[str], path: Path, normalized: bool) -> None:
    """Confusion matrix heat map; ``normalized`` divides each row by its support."""
    plt = _plt()
    cm = np.asarray(cm, dtype=np.float64)
    if normalized:
        with np.errstate(invalid="ignore", divide="ignore"):
            cm = np.nan_to_num(cm / cm.sum(axis=1, keepdims=True))
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1 if normalized else None)
    fig.colorbar(im, ax=ax)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = cm.max() if cm.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            txt = f"{cm[i, j]:.2f}" if normalized else f"{int(cm[i, j])}"
            ax.text(j, i, txt, ha="center", va="center", fontsize=8,
                    color="white" if cm[i, j] > top / 2 else "black")
    ax.set_title("confusion matrix" + (" (row-normalized)" if normalized else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_ec57(rep: dict, path: Path, title: str = "") -> None:
    """Se and +P per class (gross), with published DS1 -> DS2 figures as markers."""
    plt = _plt()
    classes = list(rep["gross"]["classes"])
    x = np.arange(len(classes))
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for k, (key, label) in enumerate((("se", "Se"), ("ppv", "+P"))):
        vals = [rep["gross"]["classes"][c][key] or 0.0 for c in classes]
        ax.bar(x + (k - 0.5) * 0.38, np.array(vals) * 100, 0.36, label=f"{label} (vitaledge)")
    markers = "os^D"
    for j, pub in enumerate(rep.get("published", [])):
        for k, key in enumerate(("se", "ppv")):
            pts = [(i + (k - 0.5) * 0.38, pub[c][key] * 100) for i, c in enumerate(classes)
                   if c in pub and pub[c].get(key) is not None]
            if pts:
                ax.scatter(*zip(*pts, strict=True), marker=markers[j % 4], color="k", zorder=3,
                           label=pub["method"] if k == 0 else None)
    ax.set_xticks(x, classes)
    ax.set_ylim(0, 105)
    ax.set_ylabel("%")
    ax.set_title(title or f"gross over {rep['gross']['beats']} beats")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_roc(rocs: dict, path: Path) -> None:
    """One-vs-rest ROC curve per class with its AUC (``rocs``: what ``roc_auc`` returns)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    for lab, r in rocs.items():
        ax.plot(r["fpr"], r["tpr"], label=f"{lab} (AUC {r['auc']:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC per class (one vs rest)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
