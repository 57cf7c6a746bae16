"""What a conversion reports: one row per artifact, its status, and the summary table.

A status is ✅ (built, loaded, verified within ``max_drop``), ❎ (verified but its accuracy
fell more than ``max_drop`` points below the Keras model's) or ❌ (failed to convert,
load or run; ``error`` says why).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

OK, DROP, FAIL = "✅", "❎", "❌"


@dataclass
class Result:
    """One artifact: its variant name, status, directory, sizes and verified metrics."""

    variant: str
    status: str
    path: Path
    size_bytes: int = 0
    gzip_bytes: int = 0
    metrics: dict = field(default_factory=dict)
    error: str = ""


def status(drop_points: float, max_drop: float) -> str:
    """✅ when the accuracy drop (points vs Keras) is within ``max_drop``, else ❎."""
    return OK if drop_points <= max_drop else DROP


def table(results: list[Result], keras_ref: dict) -> str:
    """Ultralytics-style summary: format, status, size, accuracy, agreement, latency."""
    head = (f"{'format':<24}{'status':<8}{'size KB':>9}{'gzip KB':>9}{'sparsity':>9}"
            f"{'accuracy':>10}{'macro F1':>10}{'agree':>8}{'max dp':>8}{'ms':>8}")
    lines = [head, f"{'keras (source)':<24}{OK:<8}{'':>9}{'':>9}{'':>9}"
             f"{keras_ref['accuracy']:>10.4f}{keras_ref['macro_f1']:>10.4f}"]
    for r in results:
        if r.status == FAIL:
            lines.append(f"{r.variant:<24}{r.status:<8}  {r.error[:100]}")
            continue
        m = r.metrics
        sp = ""
        mpath = r.path / "manifest.json"
        if mpath.exists():
            pr = json.loads(mpath.read_text()).get("pruning")
            sp = f"{pr['measured_sparsity']:.2f}" if pr else ""
        lines.append(f"{r.variant:<24}{r.status:<8}{r.size_bytes / 1024:>9.1f}"
                     f"{r.gzip_bytes / 1024:>9.1f}{sp:>9}{m['accuracy']:>10.4f}"
                     f"{m['macro_f1']:>10.4f}{m['agreement_with_keras']:>8.4f}"
                     f"{m['max_prob_diff']:>8.4f}{m['latency_ms_median']:>8.3f}")
    return "\n".join(lines)


def write_summary(out: Path, results: list[Result], keras_ref: dict) -> None:
    """``convert_summary.json`` and ``.txt`` under ``out``; the table is printed too."""
    summary = {"keras": keras_ref, "artifacts": [
        {"variant": r.variant, "status": r.status, "path": str(r.path), "size_bytes":
         r.size_bytes, "gzip_bytes": r.gzip_bytes, "metrics": r.metrics, "error": r.error}
        for r in results]}
    (out / "convert_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = table(results, keras_ref)
    (out / "convert_summary.txt").write_text(text + "\n")
    print("\n" + text)
