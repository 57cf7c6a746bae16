"""Scoring daemon events against a record's reference annotations: beat detection and a
per-class confusion table of the matched beats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vitaledge.device.eval.metrics import classification_metrics, format_confusion, format_report
from vitaledge.device.eval.scoring import match_beats
from vitaledge.device.io.aami import CLASSES, map_annotations
from vitaledge.device.io.records import read_record


def load_events(path: str | Path) -> list[dict]:
    events = []
    with open(path) as fh:
        for line in fh:
            try:
                e = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line after a crash
            if e.get("type") == "beat":
                events.append(e)
    return events


def score_events(events: list[dict], record: str | Path, tolerance_s: float = 0.15) -> dict:
    rec = read_record(record)
    ref, cls = map_annotations(rec.ann_samples, rec.ann_symbols)
    det = np.asarray([e["sample"] for e in events], dtype=np.int64)
    labels = list(CLASSES)
    pred = np.asarray([labels.index(e["class"]) for e in events], dtype=np.int64)
    ri, di = match_beats(ref, det, int(round(tolerance_s * rec.fs)))
    m = classification_metrics(cls[ri], pred[di], labels)
    return {"record": rec.name, "reference_beats": int(len(ref)), "events": int(len(det)),
            "matched": int(len(ri)), "missed": int(len(ref) - len(ri)),
            "extra": int(len(det) - len(ri)),
            "sensitivity": len(ri) / len(ref) if len(ref) else 0.0,
            "ppv": len(ri) / len(det) if len(det) else 0.0, "classification": m}


def format_score(s: dict) -> str:
    return (f"record {s['record']}: {s['reference_beats']} reference beats, {s['events']} "
            f"events, {s['matched']} matched (Se {100 * s['sensitivity']:.2f}%, "
            f"+P {100 * s['ppv']:.2f}%)\n\nmatched beats, rows = reference class:\n"
            + format_confusion(s["classification"]) + "\n\n"
            + format_report(s["classification"]))
