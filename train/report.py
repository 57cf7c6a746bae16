"""Inter-patient results written the way the field reads them: ``ec57.json``,
``ec57.md`` and ``ec57.png`` (gross and per-record tables, published figures beside)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vitaledge.device.eval import ec57
from vitaledge.device.io.beats import BeatSet
from vitaledge.train.splits import DS2

from .plots import plot_ec57


def partial_ds2_note(records) -> str:
    """Say which of DS2's 22 records a result covers, when it does not cover them all."""
    present = sorted(set(records) & set(DS2))
    if not present or len(present) == len(DS2):
        return ""
    return (f"DS2 here is partial: {len(present)} of its {len(DS2)} records "
            f"({', '.join(present)}); published figures are over all 22.")


def write_ec57(beats: BeatSet, y_pred: np.ndarray, out_dir: Path, title: str,
               prefix: str = "") -> dict:
    """The EC57 report of predictions on ``beats`` into ``out_dir``; returns it."""
    note = " ".join(x for x in (title + ".", partial_ds2_note(beats.record)) if x)
    rep = ec57.report(beats.y, np.asarray(y_pred), beats.record, note=note)
    out_dir = Path(out_dir)
    (out_dir / f"{prefix}ec57.json").write_text(json.dumps(rep, indent=2) + "\n")
    (out_dir / f"{prefix}ec57.md").write_text(ec57.markdown(rep))
    plot_ec57(rep, out_dir / f"{prefix}ec57.png", title)
    return rep
