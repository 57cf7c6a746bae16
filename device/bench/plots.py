"""Bench figures: latency spread per variant, accuracy vs latency vs size, and the noise
stress test's Se and +P against SNR.

matplotlib is a training-side dependency; on a device without it the bench saves its
tables and says the plots were skipped."""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    """matplotlib's pyplot on the headless backend, or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def have_matplotlib() -> bool:
    """Can the figures be drawn here?"""
    return _pyplot() is not None


#: The figures :func:`save_plots` may write: the second only with accuracy columns.
PLOTS = ("latency.png", "accuracy_latency_size.png")


def save_plots(res: dict, out: Path) -> list[Path]:
    """``vitaledge bench run``: the latency spread per variant and, with accuracy figures,
    accuracy against latency and size (none without matplotlib)."""
    plt = _pyplot()
    if plt is None:
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
    p1 = out / PLOTS[0]
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
        p2 = out / PLOTS[1]
        fig.savefig(p2, dpi=110)
        plt.close(fig)
        paths.append(p2)
    return paths


def save_noise_stress_plot(res: dict, path: Path) -> str | None:
    """``vitaledge bench noise-stress``: Se and +P against SNR per noise (None, or why the
    plot was skipped)."""
    plt = _pyplot()
    if plt is None:
        return "matplotlib is not installed: plot skipped"
    noises = sorted({k.split(" ")[0] for k in res["by_noise_snr"]})
    if not noises:
        return "no noise records: plot skipped"
    snrs = res["snrs"]
    fig, axes = plt.subplots(1, len(noises), figsize=(5 * len(noises), 3.6), squeeze=False)
    series = [("ungated", "vitaledge"), ("outside_flagged", "vitaledge, outside flagged"),
              ("xqrs", "XQRS")]
    for ax, nz in zip(axes[0], noises, strict=True):
        for key, label in series:
            # the SNRs this noise was scored at (ready-made records need not cover them all)
            pts = [(float(s), g[key]) for s in snrs
                   if key in (g := res["by_noise_snr"].get(f"{nz} {s}") or {})]
            if not pts:
                continue
            xs, gs = [x for x, _ in pts], [g for _, g in pts]
            def pct(v):  # undefined (no beat, no detection): a gap in the line
                return float("nan") if v is None else 100 * v

            ax.plot(xs, [pct(g["se"]) for g in gs], "o-", label=f"{label} Se")
            ax.plot(xs, [pct(g["ppv"]) for g in gs], "s--", label=f"{label} +P")
        ax.set_title(f"noise: {nz}")
        ax.set_xlabel("SNR (dB)")
        ax.set_ylabel("%")
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
