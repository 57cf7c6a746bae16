"""Scoring daemon events against a record's reference annotations: beat detection and a
per-class confusion table of the matched beats. A sink file may hold several runs
(``device run --append``); one run is scored, the last unless another is named."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from vitaledge.device.dsp.matching import TOLERANCE_S
from vitaledge.device.eval.metrics import classification_metrics, format_confusion, format_report
from vitaledge.device.eval.scoring import class_scores, match_outside, score_outside
from vitaledge.device.io.aami import CLASSES, map_annotations, vf_episodes
from vitaledge.device.io.event_files import read_jsonl, read_sqlite
from vitaledge.device.io.records import read_record

SQLITE_MAGIC = b"SQLite format 3\x00"


class EventsError(ValueError):
    """An events file cannot be scored; the message names the file and what is wrong."""


def in_file(path: str | Path, exc: EventsError) -> str:
    """The error's message naming the events file ``path`` (a check of the events, such as
    :func:`check_beat_events`, knows the event, not the file it came from)."""
    msg = str(exc)
    return msg if str(path) in msg else f"{path}: {msg}"


def read_runs(path: str | Path) -> dict[str, list[dict]]:
    """Beat events of a daemon sink file per run, in the order the runs were written:
    JSON Lines (with the files it rotated to, oldest first; a torn last line after a crash
    is skipped) or the SQLite sink's database. A file appended to (``device run --append``)
    holds several runs; events written before events carried their run id count as one run
    named ``""``."""
    return runs_of(read_rows(path))


def runs_of(rows: list) -> dict[str, list[dict]]:
    """The beat events of ``rows`` (a sink file's events) per run, in the order written."""
    runs: dict[str, list[dict]] = {}
    for e in rows:
        if isinstance(e, dict) and e.get("type") == "beat":
            runs.setdefault(str(e.get("run", "")), []).append(e)
    return runs


def read_rows(path: str | Path) -> list:
    """Every event of a daemon sink file (beats, status, emotion; all runs), in the order
    written: JSON Lines or the SQLite sink's database."""
    path = Path(path)
    with open(path, "rb") as fh:
        magic = fh.read(len(SQLITE_MAGIC))
    rows = _sqlite_rows(path) if magic == SQLITE_MAGIC else _jsonl_rows(path)
    if not rows:
        raise EventsError(f"{path}: holds no events (not a daemon sink file, or a run that "
                          "wrote nothing)")
    odd = next((i for i, e in enumerate(rows) if not isinstance(e, dict)), None)
    if odd is not None:
        raise EventsError(f"{path}: event {odd + 1} is {type(rows[odd]).__name__}, not a JSON "
                          "object: not a daemon events file")
    return rows


def check_beat_events(events: list[dict], unclassified: bool = False) -> None:
    """Every beat event needs an integer ``sample`` and a ``class`` in :data:`CLASSES`;
    its ``probabilities``, if any, are finite (no NaN or Infinity). With ``unclassified``,
    a run whose every beat has ``"class": null`` (detected, not classified: ``bench
    noise-stress`` without a model) passes too; a missing ``class`` key, or null beside
    classified beats, is still an error."""
    allowed = (*CLASSES, None) if unclassified else CLASSES
    bad = [e for e in events if not isinstance(e.get("sample"), int)
           or isinstance(e["sample"], bool) or "class" not in e or e["class"] not in allowed]
    if bad:
        raise EventsError(f"beat event seq {bad[0].get('seq')}: needs an integer 'sample' and "
                          f"a 'class' in {list(allowed)}, got {bad[0]}")
    nulls = [e for e in events if e["class"] is None]
    if nulls and len(nulls) != len(events):
        raise EventsError(f"beat event seq {nulls[0].get('seq')}: class null beside "
                          f"{len(events) - len(nulls)} classified beats (a detection-only run "
                          "has no class on any beat)")
    for e in events:
        p = e.get("probabilities")
        for k, v in (p.items() if isinstance(p, dict) else ()):
            if not _finite(v):
                raise EventsError(f"{_event('beat', e)}: probability {k!r} is {v}, not a "
                                  "finite number")


def check_status_events(events: list[dict]) -> None:
    """The signal-quality status events (``doubtful``, ``unreadable``) place their stretch
    with finite numbers: ``start_sample``/``end_sample``, ``start``/``end`` (seconds)."""
    for e in events:
        if e.get("status") not in ("doubtful", "unreadable"):
            continue
        odd = next((k for k in ("start_sample", "end_sample", "start", "end")
                    if not _finite(e.get(k))), None)
        if odd is not None:
            raise EventsError(f"{_event('status', e)}: {odd!r} is {e[odd]}, not a finite "
                              "number")


def _event(kind: str, e: dict) -> str:
    """``kind event seq N``, or the event itself when it carries no ``seq``."""
    return f"{kind} event seq {e['seq']}" if "seq" in e else f"{kind} event {e}"


def _finite(v) -> bool:
    """``v`` is not a non-finite number (NaN, Infinity: JSON Lines can hold them)."""
    return not isinstance(v, float) or math.isfinite(v)


def check_within(events: list[dict], n: int, name: str) -> None:
    """Every beat event's sample lies inside the record's ``n`` samples (else the events
    are not this record's)."""
    outside = [e for e in events if not 0 <= e["sample"] < n]
    if outside:
        e = outside[0]
        raise EventsError(f"beat event seq {e.get('seq')}: sample {e['sample']} is outside "
                          f"record {name}'s {n} samples ({len(outside)} such events: "
                          "events of another record?)")


def read_run(path: str | Path, run: str | None = None) -> tuple[list[dict], list[dict],
                                                                 str | None]:
    """(beat events, status events, run id) of one run of a daemon sink file: ``run``, or
    the last one that has beat events; in a file of none, the last run written (a run
    that found no beat: all unreadable), None when no event names a run."""
    try:
        rows = [e for e in read_rows(path) if isinstance(e, dict)]
    except OSError as exc:
        raise EventsError(f"{path}: cannot read events: {exc.strerror or exc}") from exc
    runs = runs_of(rows)
    if run is None:
        run = list(runs)[-1] if runs else (str(rows[-1].get("run", "")) if rows else None)
    elif run not in runs:
        raise EventsError(f"{path}: no run {run!r}; it holds {len(runs)} run(s): "
                          f"{', '.join(map(repr, runs)) or 'none'}")
    status = [e for e in rows if e.get("type") == "status"
              and (run is None or str(e.get("run", "")) == run)]
    return runs.get(run, []) if run is not None else [], status, run


def load_events(path: str | Path, run: str | None = None) -> list[dict]:
    """Beat events of one run of a daemon sink file (:func:`read_run`): ``run``, or the
    last one written. A file of no beat events but emotion estimates is an emotion model's
    output, not a run that found no beats: an EventsError."""
    beats, _, _ = read_run(path, run)
    if not beats:
        types = Counter(str(e.get("type")) for e in read_rows(path))
        if types["emotion"]:
            raise EventsError(f"{path}: no beat events but {types['emotion']} emotion events: "
                              "an emotion model's output; device score scores beat detections")
        if not types["status"]:  # a run that found no beat still says why (status events)
            raise EventsError(f"{path}: no beat or status events (types: "
                              f"{', '.join(sorted(types))}): not a daemon events file")
    return beats


def torn_last_line(path: str | Path) -> bool:
    """The JSON Lines file ``path`` ends in a line cut off mid-write (a crash, or a copy
    cut short): :func:`read_rows` skips it, and a report should say so."""
    path = Path(path)
    with open(path, "rb") as fh:
        if fh.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC:
            return False
        fh.seek(0, 2)
        fh.seek(max(0, fh.tell() - 65536))
        lines = fh.read().splitlines()
    if not lines:
        return False
    try:
        json.loads(lines[-1].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return True
    return False


def _jsonl_rows(path: Path) -> list:
    """The events of a JSON Lines sink, its rotated files first (oldest first): a run
    longer than the sink's size limit spans them. Only the live file's last line may be
    torn (a crash mid-write); anything else that is not JSON is an error naming its file."""
    files = read_jsonl(path)
    rows: list = []
    for f in files:
        bad = f.bad
        if bad and f is files[-1] and bad[-1].last and (rows or f.rows):
            bad = bad[:-1]  # a torn last line after a crash
        if bad and not f.rows:
            raise EventsError(f"{f.path}: not a JSON Lines events file (line {bad[0].number}: "
                              f"{bad[0].error})")
        if bad:
            raise EventsError(f"{f.path}: {len(bad)} lines are not JSON (first: line "
                              f"{bad[0].number}: {bad[0].error})")
        rows += f.rows
    return rows


def _sqlite_rows(path: Path) -> list:
    import sqlite3

    try:
        rows, _ = read_sqlite(path)
    except sqlite3.Error as exc:
        raise EventsError(f"{path}: not a vitaledge SQLite events database ({exc})") from exc
    if rows is None:
        raise EventsError(f"{path}: not a vitaledge SQLite events database (no events table)")
    return rows


#: A reference beat this close to the record's start or end has no beat window (0.25 s
#: before the R peak, 0.45 s after, at the default) or no next R peak (its post-RR): the
#: stream cannot classify it, and the score says how many of the missed beats are such.
EDGE_S = 0.5


def score_events(events: list[dict], record: str | Path, tolerance_s: float = TOLERANCE_S) -> dict:
    """Detection and classification of ``events`` against ``record``'s annotations."""
    rec = read_record(record)
    ref, cls = map_annotations(rec.ann_samples, rec.ann_symbols)
    if len(ref) == 0:
        raise EventsError(f"{record}: no reference beat annotations (.atr missing or empty): "
                          "nothing to score against")
    check_beat_events(events, unclassified=True)
    check_within(events, len(rec.signal), rec.name)
    det = np.asarray([e["sample"] for e in events], dtype=np.int64)
    labels = list(CLASSES)
    classified = bool(events) and events[0]["class"] is not None
    # as EC57's bxb: nothing inside reference-marked ventricular flutter/fibrillation counts
    ri, di, ref_out, det_out, s = match_outside(
        ref, det, rec.fs, vf_episodes(rec.ann_samples, rec.ann_symbols), tolerance_s)
    pair = ref_out[ri]
    m = per_class = None  # detection only: the events carry no class (noise-stress, no model)
    if classified or not events:
        pred = np.asarray([labels.index(e["class"]) for e in events], dtype=np.int64)
        m = classification_metrics(cls[ri[pair]], pred[di[pair]], labels)
        per_class = {c: v.to_dict() for c, v in
                     class_scores(ri, di, cls, pred, ref_out, det_out, labels).items()}
    n_det = int(det_out.sum())
    missed = np.ones(len(ref), bool)
    missed[ri] = False
    missed &= ref_out
    edge = int(round(EDGE_S * rec.fs))
    at_edges = int((missed & ((ref < edge) | (ref >= len(rec.signal) - edge))).sum())
    return {"record": rec.name, "reference_beats": s.tp + s.fn, "events": n_det,
            "events_in_vf": int(len(det) - n_det), "matched": s.tp, "missed": s.fn,
            "extra": s.fp, "missed_at_edges": at_edges, "sensitivity": s.sensitivity,
            "ppv": s.ppv, "classification": m, "classes": per_class,
            "record_s": round(len(rec.signal) / rec.fs, 1),
            "last_event_s": round(int(det.max()) / rec.fs, 1) if len(det) else None}


#: The status events of signal-quality gating: a stretch flagged doubtful or unreadable.
FLAGS = ("doubtful", "unreadable")


def quality_segments(path: str | Path, run: str | None = None) -> list[dict]:
    """The ``doubtful`` and ``unreadable`` status events (signal-quality gating) of one
    run of a sink file (:func:`read_run`): ``run``, or the last run that has beat events."""
    status = read_run(path, run)[1]
    check_status_events(status)
    return [e for e in status if e.get("status") in FLAGS]


def _at(e: dict, key: str, fs: float) -> int | None:
    """Sample of a quality event's ``key`` (``start``/``end``): ``KEY_sample`` in samples,
    else ``KEY`` in seconds of stream time (the unit of every event's ``time``)."""
    v = e.get(f"{key}_sample")
    if isinstance(v, int | float) and not isinstance(v, bool):
        return int(v)
    v = e.get(key)
    if isinstance(v, int | float) and not isinstance(v, bool):
        return int(round(float(v) * fs))
    return None


def flagged_spans(status: list[dict], kind: str, fs: float, n: int) -> list[list[int]]:
    """``[start, end)`` sample ranges of the status events ``kind`` (``unreadable`` or
    ``doubtful``: the signal-quality index's runs, with ``start_sample``/``end_sample``,
    or ``start``/``end`` in seconds), clipped to the record's ``n`` samples and merged."""
    segs = []
    for e in status:
        if e.get("status") != kind:
            continue
        a, b = _at(e, "start", fs), _at(e, "end", fs)
        if a is not None and b is not None and min(n, b) > max(0, a):
            segs.append([max(0, a), min(n, b)])
    merged: list[list[int]] = []
    for a, b in sorted(segs):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return merged


def score_gated(events: list[dict], segments: list[dict], record: str | Path,
                tolerance_s: float = TOLERANCE_S) -> dict:
    """Detection outside the flagged (doubtful or unreadable) stretches, and how much of
    the record they cover: a gate that flags everything shows as a large fraction."""
    rec = read_record(record)
    ref, _ = map_annotations(rec.ann_samples, rec.ann_symbols)
    det = np.asarray([e["sample"] for e in events], dtype=np.int64)
    n = len(rec.signal)
    spans = {st: flagged_spans(segments, st, rec.fs, n) for st in FLAGS}
    out = score_outside(ref, det, rec.fs, [*spans["doubtful"], *spans["unreadable"],
                                           *vf_episodes(rec.ann_samples, rec.ann_symbols)],
                        tolerance_s)
    frac = {st: sum(b - a for a, b in spans[st]) / n for st in FLAGS}
    return {"outside_flagged": {"tp": out.tp, "fn": out.fn, "fp": out.fp,
                                "sensitivity": out.sensitivity, "ppv": out.ppv},
            "flagged_fraction": frac["doubtful"] + frac["unreadable"],
            "doubtful_fraction": frac["doubtful"], "unreadable_fraction": frac["unreadable"],
            "doubtful_beats": sum(1 for e in events if e.get("quality") == "doubtful"),
            "quality_segments": len(segments)}


def format_gated(g: dict) -> str:
    o = g["outside_flagged"]
    return (f"signal quality: {100 * g['flagged_fraction']:.1f}% of the record flagged "
            f"({100 * g['unreadable_fraction']:.1f}% unreadable, no beats; "
            f"{100 * g['doubtful_fraction']:.1f}% doubtful, {g['doubtful_beats']} "
            f"beat{'s' if g['doubtful_beats'] != 1 else ''} flagged); outside it: "
            f"Se {share(o['tp'], o['tp'] + o['fn'])}, "
            f"+P {share(o['tp'], o['tp'] + o['fp'])} ({o['fn']} missed, {o['fp']} extra)")


def share(part: int, whole: int) -> str:
    """``part`` of ``whole`` in %, or "-" when there is no whole (no reference beat, no
    event outside the flagged stretches: 0/0 is no figure, not 0 %)."""
    return f"{100 * part / whole:.2f}%" if whole else "-"


#: Below this Se and +P both, events and reference hardly match: the report says so (events
#: of another record, or of another stretch, score like this; a noisy record does not).
UNMATCHED = 0.5


def mismatch_note(record: str, events: int, se: float | None, ppv: float | None) -> str:
    """A line for events that hardly match the record either way (another record's, or
    another stretch's), "" otherwise; ``device score`` and ``device review`` both say it."""
    if events and (se or 0.0) < UNMATCHED and (ppv or 0.0) < UNMATCHED:
        return (f"note: fewer than {UNMATCHED:.0%} of the beats match either way: are these "
                f"events of record {record}?")
    return ""


def format_score(s: dict) -> str:
    vf = (f"; {s['events_in_vf']} events inside reference-marked ventricular flutter/"
          "fibrillation not scored (EC57)" if s.get("events_in_vf") else "")
    odd = mismatch_note(s["record"], s["events"], s["sensitivity"], s["ppv"])
    odd = "\n" + odd if odd else ""
    edges = s.get("missed_at_edges", 0)
    edges = (f"; of the {s['missed']} missed, {edges} within {EDGE_S:g} s of the record's "
             "start or end, where no beat window fits" if edges else "")
    head = (f"record {s['record']}: {s['reference_beats']} reference beats, {s['events']} "
            f"events, {s['matched']} matched (Se {share(s['matched'], s['reference_beats'])}, "
            f"+P {share(s['matched'], s['matched'] + s['extra'])}){edges}{vf}{odd}")
    if s["classification"] is None:
        return head + "\n\nthe events carry no class (detection only): no confusion table"
    return (head + "\n\nmatched beats, rows = reference class:\n"
            + format_confusion(s["classification"]) + "\n\n"
            + format_report(s["classification"])
            + ("\n\n" + format_classes(s["classes"]) if s.get("classes") else ""))


def format_classes(classes: dict) -> str:
    """Per-class Se and +P over every scored beat, as EC57 gives them (the report above
    counts matched beats only): a missed beat counts against its class's Se, an extra or
    misclassified one against the +P of the class it was given."""
    lines = ["every beat, EC57 (a missed beat lowers its class's Se; an extra or "
             "misclassified one the +P of the class given):",
             f"{'class':>8}{'Se':>10}{'+P':>10}{'reference':>11}{'given':>8}"]
    for c, v in classes.items():
        lines.append(f"{c:>8}{share(v['tp'], v['tp'] + v['fn']):>10}"
                     f"{share(v['tp'], v['tp'] + v['fp']):>10}{v['tp'] + v['fn']:>11d}"
                     f"{v['tp'] + v['fp']:>8d}")
    return "\n".join(lines)


#: Events that stop this many seconds before the record's end get a note: more than a
#: post-RR wait and a quality block, less than a pause anyone would call a rhythm.
ENDS_EARLY_S = 30.0


def ends_early(s: dict) -> bool:
    """The scored events stop well before the record does (a run cut short, or a copy of
    its events file): the beats after the last event all count as missed."""
    last, length = s.get("last_event_s"), s.get("record_s")
    return last is not None and bool(length) and last < length - ENDS_EARLY_S
