"""A review page for a record's beat events: one self-contained HTML file (no network, no
external scripts) with the ECG strip (zoom, pan), every detected beat labelled by class and
quality, unreadable segments shaded and — when the record has reference annotations — the
missed beats, false beats and misclassifications (EC57 matching, 150 ms) listed and marked.

This module gathers the page's data (:func:`build_review`) and writes it;
:mod:`.review_page` is the page itself. numpy and the standard library only: it runs on
the device side as well.
"""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np

from vitaledge.device.dsp.matching import TOLERANCE_S
from vitaledge.device.eval.metrics import confusion_matrix
from vitaledge.device.eval.review_page import encode_signal, render_html
from vitaledge.device.eval.score_events import (
    check_beat_events,
    check_status_events,
    check_within,
    flagged_spans,
    mismatch_note,
    read_run,
    share,
)
from vitaledge.device.eval.scoring import match_outside, outside, score_pairs
from vitaledge.device.io.aami import CLASSES, map_annotations, vf_episodes
from vitaledge.device.io.atomic import write_atomic
from vitaledge.device.io.records import Record, read_record

#: Error kinds, in the order the page lists their counts.
ERROR_KINDS = ("missed", "false", "class")
#: A beat's or reference beat's match when it lies inside reference-marked VF, unmatched:
#: neither missed nor false (EC57 leaves VF out); -1 is unmatched and scored.
NOT_SCORED = -2


def build_review(beats: list[dict], record: Record, status: list[dict] | None = None,
                 tolerance_s: float = TOLERANCE_S, source: str = "",
                 run: str | None = None) -> dict:
    """Everything the page shows, as plain JSON-able data: the signal, the beats (class,
    quality, probability, matched reference), the reference beats, the errors in time
    order, unreadable segments and the summary (Se, +P, class confusion). A beat whose
    ``class`` is null was detected, not classified (``bench noise-stress`` without a
    model): it can be missed or false, never misclassified."""
    check_beat_events(beats, unclassified=True)
    check_status_events(status or [])
    fs, n = record.fs, len(record.signal)
    check_within(beats, n, record.name)
    beats = sorted(beats, key=lambda e: e["sample"])
    det = np.asarray([e["sample"] for e in beats], np.int64)
    pred = np.asarray([CLASSES.index(e["class"]) if e.get("class") is not None else -1
                       for e in beats], np.int64)
    quality = [e.get("quality") if isinstance(e.get("quality"), str) else None for e in beats]
    prob = [_prob(e) for e in beats]
    ref, cls = map_annotations(record.ann_samples, record.ann_symbols)
    has_ref = len(ref) > 0
    # as EC57 (and device score): nothing inside reference-marked ventricular flutter or
    # fibrillation is scored; there an unmatched beat is NOT_SCORED, not missed or false
    vf = vf_episodes(record.ann_samples, record.ann_symbols) if has_ref else []
    ri, di, ref_out, det_out, scored = match_outside(ref, det, fs, vf, tolerance_s)
    det_ref = np.where(det_out, -1, NOT_SCORED).astype(np.int64)
    det_ref[di] = ri
    ref_det = np.where(ref_out, -1, NOT_SCORED).astype(np.int64)
    ref_det[ri] = di
    pair_out = ref_out[ri]  # a pair is scored when its reference beat is outside VF
    det_ref[di[~pair_out]] = NOT_SCORED  # not drawn as a class error either
    ref_det[ri[~pair_out]] = NOT_SCORED
    segs = flagged_spans(status or [], "unreadable", fs, n)

    def in_unreadable(s: int) -> bool:
        return any(a <= s < b for a, b in segs)

    errors = []
    if has_ref:
        for i in np.flatnonzero(ref_det == -1):
            errors.append({"kind": "missed", "sample": int(ref[i]), "ref": int(i), "det": -1,
                           "expected": CLASSES[cls[i]], "got": None, "doubtful": False})
        for j in np.flatnonzero(det_ref == -1):
            errors.append({"kind": "false", "sample": int(det[j]), "ref": -1, "det": int(j),
                           "expected": None, "got": CLASSES[pred[j]] if pred[j] >= 0 else None,
                           "doubtful": quality[j] == "doubtful"})
        for i, j in zip(ri[pair_out], di[pair_out], strict=True):
            if pred[j] >= 0 and cls[i] != pred[j]:
                errors.append({"kind": "class", "sample": int(det[j]), "ref": int(i),
                               "det": int(j), "expected": CLASSES[cls[i]],
                               "got": CLASSES[pred[j]], "doubtful": quality[j] == "doubtful"})
        errors.sort(key=lambda e: (e["sample"], ERROR_KINDS.index(e["kind"])))
        for e in errors:
            e["unreadable"] = in_unreadable(e["sample"])
    r_sc, d_sc = ri[pair_out], di[pair_out]
    classified = pred[d_sc] >= 0
    confusion = confusion_matrix(cls[r_sc][classified], pred[d_sc][classified], len(CLASSES))
    counts = {k: sum(e["kind"] == k for e in errors) for k in ERROR_KINDS}
    n_ref, n_det = scored.tp + scored.fn, scored.tp + scored.fp  # outside VF
    readable = (score_pairs(ri, di, ref_out & outside(ref, segs), det_out & outside(det, segs))
                if segs else None)  # the same pairs, the unreadable time left out too
    summary = {
        "has_reference": bool(has_ref), "reference_beats": n_ref,
        "beats": int(len(det)), "matched": scored.tp, **counts,
        "sensitivity": scored.tp / n_ref if n_ref else None,
        "ppv": scored.tp / n_det if has_ref and n_det else None,
        "vf_s": round(sum(min(b, n) - a for a, b in vf) / fs, 2),
        "events_in_vf": int((~det_out).sum()),  # as device score counts them
        "classes": list(CLASSES), "confusion": confusion.tolist(),
        "beats_per_class": {c: int((pred == k).sum()) for k, c in enumerate(CLASSES)},
        "unclassified": int((pred < 0).sum()),
        "doubtful": sum(q == "doubtful" for q in quality),
        "has_quality": any(q is not None for q in quality),
        "errors_on_doubtful": sum(e["doubtful"] for e in errors),
        "unreadable_s": round(sum(b - a for a, b in segs) / fs, 2),
        "errors_in_unreadable": sum(e.get("unreadable", False) for e in errors),
        # EC57 leaves out what the device declared unreadable: Se on the rest
        "sensitivity_readable": (readable.tp / (readable.tp + readable.fn)
                                 if has_ref and readable and readable.tp + readable.fn
                                 else None),
        "tolerance_ms": round(1000 * tolerance_s),
    }
    return {
        "record": record.name, "lead": record.lead, "fs": fs, "source": source, "run": run,
        "signal": encode_signal(record.signal, fs),
        "beats": {"sample": det.tolist(), "class": pred.tolist(), "quality": quality,
                  "p": prob, "ref": det_ref.tolist()},
        "reference": {"sample": ref.tolist(), "class": cls.tolist(),
                      "det": ref_det.tolist()},
        "unreadable": segs, "doubtful": flagged_spans(status or [], "doubtful", fs, n),
        "errors": errors, "summary": summary,
    }


def _prob(e: dict) -> float | None:
    p = e.get("probabilities")
    if isinstance(p, dict) and isinstance(p.get(e.get("class")), int | float):
        return round(float(p[e["class"]]), 3)
    return None


def write_review(events: str | Path, record: str | Path, out: str | Path,
                 run: str | None = None, tolerance_s: float = TOLERANCE_S) -> dict:
    """Read ``events`` (one run) and ``record``, write the review page to ``out``
    (atomically: a failure leaves any earlier file as it was; its folder is made once the
    page is ready); return the page's data."""
    out = Path(out)
    if out.is_symlink() or (out.exists() and not out.is_file()):
        # the page replaces ``out`` atomically: a link or a device there would be replaced
        # by a file, not written through
        raise OSError(errno.EEXIST, "exists and is not a regular file: give another --out",
                      str(out))
    beats, status, chosen = read_run(events, run)
    rec = read_record(record)
    review = build_review(beats, rec, status, tolerance_s, source=Path(events).name,
                          run=chosen)
    page = render_html(review)
    out.parent.mkdir(parents=True, exist_ok=True)  # as --json's folder and the sinks'
    write_atomic(out, page)
    return review


def format_summary(review: dict, out: str | Path) -> str:
    """One paragraph for the terminal: what the page holds."""
    s = review["summary"]
    line = (f"{out}: record {review['record']}, {s['beats']} beats"
            + (f", {s['doubtful']} doubtful" if s["has_quality"] else "")
            + (f", {s['unreadable_s']:g} s unreadable" if review["unreadable"] else ""))
    if not s["has_reference"]:
        return line + " (no reference annotations: nothing to score)"
    vf = (f"; {s['events_in_vf']} events inside reference-marked ventricular flutter/"
          "fibrillation not scored (EC57)" if s["events_in_vf"] else "")
    odd = mismatch_note(review["record"], s["beats"], s["sensitivity"], s["ppv"])
    return (line + f"; {s['reference_beats']} reference beats: Se "
            f"{share(s['matched'], s['reference_beats'])}, "
            f"+P {share(s['matched'], s['matched'] + s['false'])}, "
            f"{s['missed']} missed, {s['false']} false, {s['class']} misclassified" + vf
            + ("\n" + odd if odd else ""))
