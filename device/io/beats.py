"""Labeled beat datasets: records -> filtered signal -> beat windows + AAMI labels."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitaledge.device.dsp.filters import apply_filter
from vitaledge.device.dsp.windows import WindowSpec, extract_beats
from vitaledge.device.io.aami import CLASSES, map_annotations
from vitaledge.device.io.records import Record, list_records, read_record


@dataclass
class BeatSet:
    """Beat windows with labels and where each came from.

    ``record`` and ``sample`` (R-peak index at the record's own rate) identify every beat,
    which is what split checks and event scoring key on.
    """

    X: np.ndarray  # (n, length) float32
    y: np.ndarray  # (n,) int64 class index
    record: np.ndarray  # (n,) str
    sample: np.ndarray  # (n,) int64
    description: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: np.ndarray) -> BeatSet:
        return BeatSet(self.X[idx], self.y[idx], self.record[idx], self.sample[idx],
                       dict(self.description))

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.y, minlength=len(CLASSES))
        return {c: int(n) for c, n in zip(CLASSES, counts, strict=True)}

    @staticmethod
    def concat(sets: Iterable[BeatSet]) -> BeatSet:
        sets = list(sets)
        if not sets:
            raise ValueError("no beat sets to concatenate")
        desc = dict(sets[0].description)
        desc["records"] = sorted({r for s in sets for r in s.description.get("records", [])})
        return BeatSet(np.concatenate([s.X for s in sets]), np.concatenate([s.y for s in sets]),
                       np.concatenate([s.record for s in sets]),
                       np.concatenate([s.sample for s in sets]), desc)


def beats_from_record(rec: Record, spec: WindowSpec) -> BeatSet:
    """All annotated beats of a record that have a complete window."""
    samples, labels = map_annotations(rec.ann_samples, rec.ann_symbols)
    x = apply_filter(rec.signal, rec.fs, spec.filter)
    X, kept = extract_beats(x, rec.fs, samples, spec)
    return BeatSet(X, labels[kept], np.full(len(kept), rec.name, dtype=object),
                   samples[kept],
                   {"records": [rec.name], "leads": {rec.name: rec.lead},
                    "dropped_edge_beats": int(len(samples) - len(kept))})


def beats_from_dir(directory: str | Path, spec: WindowSpec, records: list[str] | None = None,
                   lead: str = "MLII") -> BeatSet:
    """Beats of every annotated record in ``directory`` (or of the named ``records``)."""
    paths = list_records(directory)
    if records is not None:
        by_name = {p.name: p for p in paths}
        missing = [r for r in records if r not in by_name]
        if missing:
            raise FileNotFoundError(f"{directory}: records not found: {', '.join(missing)}")
        paths = [by_name[r] for r in records]
    sets = [beats_from_record(read_record(p, lead=lead), spec) for p in paths]
    out = BeatSet.concat(sets)
    out.description = {
        "source": "wfdb", "directory": str(directory), "records": [p.name for p in paths],
        "leads": {k: v for s in sets for k, v in s.description["leads"].items()},
        "dropped_edge_beats": sum(s.description["dropped_edge_beats"] for s in sets),
        "window": spec.to_dict(),
    }
    return out
