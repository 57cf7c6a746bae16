"""Labeled beat datasets: records -> filtered signal -> beat windows (+ RR features) + AAMI
labels.

Beats are anchored on the annotated R peaks (``anchor="annotated"``, the reference) or on
the peaks the device's own detector finds (``anchor="detected"``): each detection is matched
to a reference beat within 150 ms and takes its class; detections that match no reference
beat are dropped (counted in the description). Windows and RR features are then cut around
the detected peaks exactly as the daemon cuts them, so a model trained on them sees what
the device will show it (the detected R peak lies a few samples from the annotated one).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitaledge.device.dsp.beat_check import detect_beats
from vitaledge.device.dsp.filters import apply_filter
from vitaledge.device.dsp.matching import TOLERANCE_S, match_beats
from vitaledge.device.dsp.rr import RRSpec, rr_features
from vitaledge.device.dsp.template import TemplateSpec, templates
from vitaledge.device.dsp.windows import WindowSpec, extract_beats
from vitaledge.device.io.aami import CLASSES, map_annotations
from vitaledge.device.io.records import Record, RecordError, list_records, read_record

log = logging.getLogger(__name__)


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
    rr: np.ndarray | None = None  # (n, len(spec.features)) float32, when asked for
    template: np.ndarray | None = None  # (n, length) the patient's running template

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: np.ndarray) -> BeatSet:
        return BeatSet(self.X[idx], self.y[idx], self.record[idx], self.sample[idx],
                       dict(self.description), None if self.rr is None else self.rr[idx],
                       None if self.template is None else self.template[idx])

    def inputs(self):
        """The model's inputs by name: ``{"beat": (n, length, 1), "rr": (n, k),
        "template": (n, length, 1)}`` for what the set carries, else the windows alone as
        (n, length, 1)."""
        beat = self.X[..., None]
        if self.rr is None and self.template is None:
            return beat
        out = {"beat": beat}
        if self.rr is not None:
            out["rr"] = self.rr
        if self.template is not None:
            out["template"] = self.template[..., None]
        return out

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
        with_rr = {s.rr is not None for s in sets}
        with_t = {s.template is not None for s in sets}
        if len(with_rr) > 1 or len(with_t) > 1:
            raise ValueError("cannot concatenate beat sets with and without RR features or "
                             "templates")
        return BeatSet(np.concatenate([s.X for s in sets]), np.concatenate([s.y for s in sets]),
                       np.concatenate([s.record for s in sets]),
                       np.concatenate([s.sample for s in sets]), desc,
                       np.concatenate([s.rr for s in sets]) if with_rr == {True} else None,
                       np.concatenate([s.template for s in sets]) if with_t == {True} else None)


ANCHORS = ("annotated", "detected")


class NoBeats(RecordError):
    """A record whose annotations hold no beat (rhythm or signal marks only)."""


def beats_from_record(rec: Record, spec: WindowSpec, anchor: str = "annotated",
                      rr: RRSpec | None = None, template: TemplateSpec | None = None) -> BeatSet:
    """The beats of a record that have a complete window, anchored on the annotated or the
    detected R peaks (module doc); with ``rr``, each beat's RR features too; with
    ``template``, the patient's running template (over every window cut, as the stream
    sees them, unmatched detections included)."""
    if anchor not in ANCHORS:
        raise ValueError(f"anchor: expected one of {ANCHORS}, got {anchor!r}")
    samples, labels = map_annotations(rec.ann_samples, rec.ann_symbols)
    if not len(samples):  # numpy's "need at least one array to concatenate" said nothing
        raise NoBeats(f"{rec.name}: its .atr holds no beat annotations; no beats to train "
                      "or score on (leave the record out with --records)")
    x = apply_filter(rec.signal, rec.fs, spec.filter)
    desc = {"records": [rec.name], "leads": {rec.name: rec.lead}, "anchor": anchor,
            # the record's reference beats per class, whatever the anchor (patient-wise folds
            # are dealt on these, so every anchor and window gets the same folds)
            "reference_counts": {rec.name: np.bincount(labels, minlength=len(CLASSES))
                                 .tolist()}}
    if anchor == "detected":
        peaks = detect_beats(rec.signal, rec.fs, rec.lead)
        ri, di = match_beats(samples, peaks, int(round(TOLERANCE_S * rec.fs)))
        peak_labels = np.full(len(peaks), -1, np.int64)
        peak_labels[di] = labels[ri]
        desc.update(unmatched_detections=int(len(peaks) - len(di)),
                    missed_reference_beats=int(len(samples) - len(ri)))
        samples, labels = peaks, peak_labels
    X, kept = extract_beats(x, rec.fs, samples, spec)
    feats = rr_features(samples, rec.fs, rr)[kept] if rr is not None else None
    tmpl = templates(X, template, feats) if template is not None else None
    real = labels[kept] >= 0
    desc["dropped_edge_beats"] = int(len(samples) - len(kept))
    return BeatSet(X[real], labels[kept][real], np.full(int(real.sum()), rec.name, dtype=object),
                   samples[kept][real], desc, None if feats is None else feats[real],
                   None if tmpl is None else tmpl[real])


def beats_from_dir(directory: str | Path, spec: WindowSpec, records: list[str] | None = None,
                   lead: str = "MLII", anchor: str = "annotated",
                   rr: RRSpec | None = None, template: TemplateSpec | None = None) -> BeatSet:
    """Beats of every annotated record in ``directory`` (or of the named ``records``)."""
    paths = list_records(directory)
    if records is not None:
        by_name = {p.name: p for p in paths}
        missing = [r for r in records if r not in by_name]
        if missing:
            raise FileNotFoundError(f"{directory}: records not found: {', '.join(missing)}")
        paths = [by_name[r] for r in records]
    sets, bare = [], []
    for p in paths:
        try:
            sets.append(beats_from_record(read_record(p, lead=lead), spec, anchor, rr, template))
        except NoBeats:
            if records is not None:  # named: the user asked for its beats
                raise
            bare.append(p.name)  # rhythm marks only, say: left out, as a record without .atr
    if bare:
        log.warning("%s: %d record(s) without beat annotations left out: %s", directory,
                    len(bare), ", ".join(bare[:8]) + (" ..." if len(bare) > 8 else ""))
    if not sets:
        raise RecordError(f"{directory}: no record holds beat annotations")
    out = BeatSet.concat(sets)
    out.description = {
        "source": "wfdb", "directory": str(directory), "records": [p.name for p in paths],
        "leads": {k: v for s in sets for k, v in s.description["leads"].items()},
        "dropped_edge_beats": sum(s.description["dropped_edge_beats"] for s in sets),
        "window": spec.to_dict(), "anchor": anchor,
        "reference_counts": {k: v for s in sets
                             for k, v in s.description["reference_counts"].items()},
    }
    if anchor == "detected":
        for k in ("unmatched_detections", "missed_reference_beats"):
            out.description[k] = sum(s.description[k] for s in sets)
    if rr is not None:
        out.description["rr"] = rr.to_dict()
    if template is not None:
        out.description["template"] = template.to_dict()
    return out
