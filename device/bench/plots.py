"""Bench figures: latency spread per variant, and accuracy vs latency vs size.

matplotlib is a training-side dependency; on a device without it the bench saves its
tables and says the plots were skipped."""

from __future__ import annotations

from pathlib import Path


def save_plots(res: dict, out: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    rows = [r for r in res["rows"] if r["status"] != "❌"]
    if not rows:
        return []
    labels = [f"{r['variant']} {r['delegate']} t{r['threads']} b{r['batch']}" for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.5))
    for i, r in enumerate(rows):
        ax.plot([r["min_ms"], r["max_ms"]], [i, i], color="0.75", lw=1)
        ax.plot([r["p50_ms"], r["p99_ms"]], [i, i], color="C0", lw=5, solid_capstyle="butt")
        ax.plot([r["p50_ms"]], [i], "k|", ms=12)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("latency per call (ms): grey min-max, blue p50-p99, tick p50")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    p1 = out / "latency.png"
    fig.savefig(p1, dpi=110)
    plt.close(fig)
    scored = [r for r in rows if r.get("accuracy") is not None]
    paths = [p1]
    if scored:
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for r in scored:
            ax.scatter(r["per_window_ms"], r["accuracy"], s=20 + r["size_bytes"] / 4000,
                       alpha=0.6)
            ax.annotate(f"{r['variant']} t{r['threads']}", (r["per_window_ms"], r["accuracy"]),
                        fontsize=6)
        ax.set_xscale("log")
        ax.set_xlabel("latency per window, p50 (ms)")
        ax.set_ylabel("accuracy")
        ax.set_title("accuracy vs latency (marker area ~ file size)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        p2 = out / "accuracy_latency_size.png"
        fig.savefig(p2, dpi=110)
        plt.close(fig)
        paths.append(p2)
    return paths
