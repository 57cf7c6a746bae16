"""The review pages of a noise-stress report: which rows get one (the most errors in the
beats the daemon emits), the page itself (:func:`~..eval.review.write_review`, what
``vitaledge device review`` writes, from the events of the row's gated replay, kept beside
it as JSON Lines), its counts in the row's scope, the record's worst 2-minute period with
the link that opens the page there, and the report's lines naming the pages."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vitaledge.device.dsp.matching import TOLERANCE_S
from vitaledge.device.eval.review import write_review
from vitaledge.device.eval.scoring import outside
from vitaledge.device.io.aami import vf_episodes
from vitaledge.device.io.nst import PERIOD_S
from vitaledge.device.io.records import read_record
from vitaledge.device.stream.sinks import JsonlSink

#: review pages written for this many rows with the most errors, by default
REVIEW_WORST = 3


def row_errors(row: dict) -> dict:
    """A row's errors in the beats the daemon emits (gated, scored as the row): missed and
    false beats, and with a model the matched beats given the wrong class."""
    g = row["gated"]
    wrong = g["tp"] - sum(c["tp"] for c in row["classes"].values()) if "classes" in row else 0
    return {"missed": g["fn"], "false": g["fp"], "misclassified": wrong,
            "total": g["fn"] + g["fp"] + wrong}


def worst_period(errors: list[dict], fs: float, n: int, start_s: float,
                 period_s: float = PERIOD_S, scored: list[bool] | None = None) -> dict | None:
    """The ``period_s`` stretch from ``start_s`` on (the noise-stress protocol's noisy and
    clean periods) holding the most of a review page's ``errors`` (only those ``scored``
    marks, when given), first on a tie: its start and end (s), its error count and the
    page index of its first error; None without errors there."""
    a0, step = int(round(start_s * fs)), int(round(period_s * fs))
    keep = scored if scored is not None else [True] * len(errors)
    best = None
    for a in range(a0, n, step):
        idx = [i for i, e in enumerate(errors) if keep[i] and a <= e["sample"] < a + step]
        if idx and (best is None or len(idx) > best["errors"]):
            best = {"start_s": a / fs, "end_s": min(a + step, n) / fs, "errors": len(idx),
                    "first_error": idx[0]}
    return best


def write_review_pages(worst: list[tuple[dict, list[dict], Path]], out: Path) -> list[dict]:
    """For each (row, events of its gated replay, record path): :func:`write_review_page`;
    a page that cannot be written is reported (``error``) instead of ending the bench,
    whose tables are already measured."""
    out.mkdir(parents=True, exist_ok=True)
    pages = []
    for row, events, path in worst:
        try:
            pages.append(write_review_page(row, events, path, out))
        except (OSError, ValueError) as exc:  # EventsError and RecordError are ValueErrors
            pages.append({"clean": row["clean"], "noise": row["noise"], "snr": row["snr"],
                          "errors": row_errors(row), "error": str(exc)})
    return pages


def write_review_page(row: dict, events: list[dict], path: Path, out: Path) -> dict:
    """The events as ``review-NAME.events.jsonl`` and the review page ``review-NAME.html``
    in ``out``; what the report says of the page."""
    name = f"review-{path.name}"
    ev_path = out / f"{name}.events.jsonl"
    ev_path.unlink(missing_ok=True)  # a rerun's events replace the last run's
    sink = JsonlSink(ev_path, fsync="never")
    try:
        sink.write(events)
    finally:
        sink.close()
    page = out / f"{name}.html"
    review = write_review(ev_path, path, page, tolerance_s=TOLERANCE_S)
    fs = review["fs"]
    # the page lists every error of the record; the report counts those of the row's
    # scope: from the end of the learning period, outside reference-marked VF (as EC57)
    rec = read_record(path)
    vf = vf_episodes(rec.ann_samples, rec.ann_symbols)
    at = np.asarray([e["sample"] for e in review["errors"]], np.int64)
    scored = ((at >= round(row["scored_from_s"] * fs)) & outside(at, vf)).tolist()
    seg = worst_period(review["errors"], fs, review["signal"]["n"], row["scored_from_s"],
                       scored=scored)
    page_errors = {k: sum(ok and e["kind"] == k for ok, e in
                          zip(scored, review["errors"], strict=True))
                   for k in ("missed", "false", "class")}
    return {"clean": row["clean"], "noise": row["noise"], "snr": row["snr"],
            "errors": row_errors(row), "page": page.name, "events": ev_path.name,
            "page_errors": page_errors, "page_errors_whole_record": {
                k: review["summary"][k] for k in ("missed", "false", "class")},
            "worst_period": seg,
            "link": page.name + (f"#error={seg['first_error']}" if seg else "")}


def _mmss(t: float) -> str:
    return f"{int(t // 60)}:{int(t % 60):02d}"


def format_review(res: dict) -> list[str]:
    """The report's lines naming the review pages (none when none were asked for)."""
    rv = res.get("review")
    if rv is None:
        return []
    cls = res["classification"]
    if not rv["pages"]:
        return ["", "No row has errors: no review page written."]
    pages = len(rv["pages"])  # rows with errors, their pages written or not (the table says)
    lines = ["", f"Review pages of the {pages} row{'s' * (pages != 1)} with the most errors "
             "in the beats "
             "the daemon emits (gated, from "
             f"{_mmss(res['scored_from_s'])}: missed + false"
             + (" + misclassified" if cls else "") + "), written next to this report "
             "by `vitaledge device review` (the events beside each page). Each link opens "
             f"the page at the first error of the {rv['period_s'] / 60:g}-minute period with "
             "the most errors; the page lists and marks every error of the record."
             + (f" ({rv['worst']} asked for; only {pages} row{'s' * (pages != 1)} "
                f"{'have' if pages != 1 else 'has'} errors.)"
                if pages < rv["worst"] else ""), ""]
    lines += ["| record | noise | SNR | errors | missed | false |"
              + (" misclassified |" if cls else "") + " worst period | errors there | "
              "review page |", "|" + "---|" * (10 if cls else 9)]
    for pg in rv["pages"]:
        e, w = pg["errors"], pg.get("worst_period")
        cells = [pg["clean"], pg["noise"], pg["snr"], str(e["total"]), str(e["missed"]),
                 str(e["false"])] + ([str(e["misclassified"])] if cls else [])
        cells += ([f"{_mmss(w['start_s'])}–{_mmss(w['end_s'])}", str(w["errors"])] if w
                  else ["—", "—" if "error" in pg else "0"])
        cells.append(f"not written: {pg['error']}" if "error" in pg
                     else f"[{pg['page']}]({pg['link']})")
        lines.append("| " + " | ".join(cells) + " |")
    return lines
