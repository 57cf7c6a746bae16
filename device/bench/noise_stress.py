"""``vitaledge bench noise-stress``: detection (and beat classification) under noise, the
way the MIT-BIH Noise Stress Test is run (Moody, Muldrow & Mark 1984), beside wfdb's XQRS.

For each clean record x noise record x SNR, the noise-stress record is made with
:func:`~..io.nst.make_nst` (into a work directory, reused when already there), replayed
through the daemon's streaming beat path (:class:`~..stream.pipeline.BeatPipeline` with a
beat model artifact; without one, the same detector and signal-quality index with no
classification) and scored beat by beat (150 ms) from the end of the 5-minute learning
period, as nst's protocol is scored. Reported per row and gross per SNR:

* ``ungated``: every detected beat (gating off: what the detector alone does);
* ``gated``: the beats the daemon emits with gating (none in unreadable stretches), against
  every reference beat: gating can only cost sensitivity here;
* ``outside_flagged``: the gated beats and reference beats outside the doubtful and
  unreadable stretches, with ``flagged_noisy`` / ``flagged_clean``: the fraction of the
  noisy / clean (protocol) time flagged, so flagging everything cannot pass for accuracy;
* ``xqrs``: wfdb's XQRS on the same signal, over all beats and outside the same stretches;
* per-class Se/+P of the emitted beats (with a model).

With a model the beats are the daemon's events, without one the detector's peaks: a
beat at the very end of a record, whose window or next R peak (post-RR) the record does
not hold, is not emitted by the daemon, so a row can count one beat fewer with a model.

The clean records themselves are scored the same way (SNR ``clean``) for reference.
Ready-made noise-stress records (``noisy``: the real NST database's 118e24 ... 119e_6, or
records ``vitaledge data nst`` made before) are replayed and scored as they are, labelled
by :func:`~..io.nst.nst_label`, in the same rows and gross totals.

With a ``review_dir``, the rows with the most errors get a review page there
(:mod:`.noise_stress_review`): the report names each page with a link that opens it at
the first error of the record's worst 2-minute period. The Se/+P-against-SNR figure is
drawn by :mod:`.plots`, with the bench's other figures.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitaledge.device.bench.detector import check_rate, xqrs_detect
from vitaledge.device.bench.noise_stress_review import (
    REVIEW_WORST,
    format_review,
    row_errors,
    write_review_pages,
)
from vitaledge.device.bench.plots import save_noise_stress_plot
from vitaledge.device.dsp.beat_check import check_beats
from vitaledge.device.dsp.matching import TOLERANCE_S, match_beats
from vitaledge.device.dsp.signal_quality_index import DOUBTFUL, GOOD, UNREADABLE, record_quality
from vitaledge.device.eval.scoring import (
    DetectionScore,
    class_scores,
    outside,
    score_outside,
    score_pairs,
)
from vitaledge.device.io.aami import CLASSES, map_annotations, vf_episodes
from vitaledge.device.io.nst import (
    LEARNING_S,
    NST_SNRS,
    PERIOD_S,
    check_levels,
    check_unique_names,
    inputs_digest,
    make_nst,
    noisy_segments,
    nst_label,
    nst_name,
    whole_format16,
)
from vitaledge.device.io.records import RecordError, read_record, record_path
from vitaledge.device.model.runtime import Model
from vitaledge.device.stream import events as event
from vitaledge.device.stream.pipeline import run_record


def _stream(signal: np.ndarray, fs: float, model: Model | None, gating: bool, chunk: int,
            lead: str = "MLII",
            ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, str]], list[dict]]:
    """(beat samples, class indices or -1, flagged (start, stop, state), events) of one
    replay of ``lead``: the events are the daemon's; without a model, the same beat and
    quality-run events with no class, built for the gated replay only (the one a review
    page shows)."""
    if model is not None:
        events = run_record(model, signal, fs, chunk=chunk, gating=gating, lead=lead)
        beats = [e for e in events if e["type"] == "beat"]
        flagged = [(e["start_sample"], e["end_sample"], e["status"]) for e in events
                   if e["type"] == "status" and e["status"] in ("doubtful", UNREADABLE)]
        labels = list(CLASSES)
        cls = [labels.index(e["class"]) if e["class"] in labels else -1 for e in beats]
        return (np.asarray([e["sample"] for e in beats], np.int64),
                np.asarray(cls, np.int64), flagged, events)
    peaks, blocks = record_quality(signal, fs, chunk=chunk)
    peaks = check_beats(signal, fs, peaks, lead=lead)  # as the pipeline: detector, then check
    flagged = [(b.start, b.stop, b.state) for b in blocks if b.state != GOOD] if gating else []
    if gating:
        unread = [(a, z) for a, z, st in flagged if st == UNREADABLE]
        peaks = peaks[outside(peaks, unread)]
    if not gating:
        return peaks, np.full(len(peaks), -1, np.int64), flagged, []
    doubt = ~outside(peaks, [(a, z) for a, z, st in flagged if st == DOUBTFUL])
    events = [event.beat(round(s / fs, 4), int(s), None, None,
                         (s - peaks[k - 1]) / fs if k else None, DOUBTFUL if doubt[k] else None)
              for k, s in enumerate(peaks)]
    events += [event.quality_run(b.state, round(b.start / fs, 4), round(b.stop / fs, 4),
                                 b.start, b.stop, b.reason)
               for b in blocks if b.state != GOOD]
    return peaks, np.full(len(peaks), -1, np.int64), flagged, events


def score_replay(path: Path, model: Model | None, with_xqrs: bool, chunk_s: float = 1.0,
                 start_s: float = LEARNING_S) -> tuple[dict, list[dict]]:
    """One noise-stress (or clean) record through the daemon path, scored from ``start_s``:
    the row, and the events of the gated replay (what the daemon emits)."""
    rec = read_record(path)
    fs, x = rec.fs, rec.signal
    ref_all, cls_all = map_annotations(rec.ann_samples, rec.ann_symbols)
    if not len(ref_all):
        raise RecordError(f"{record_path(path)}.atr: no beat annotations (or no such file); "
                          "the record cannot be scored")
    start = int(round(start_s * fs)) if len(x) > (start_s + 60) * fs else 0
    chunk = max(1, int(round(chunk_s * fs)))
    noisy = noisy_segments(len(x), fs)  # the protocol's noisy stretches (none added: clean)
    ref, rcls = ref_all, cls_all
    det_u, _, _, _ = _stream(x, fs, model, False, chunk, rec.lead)
    det_g, dcls, flagged, events = _stream(x, fs, model, True, chunk, rec.lead)
    spans = [(a, b) for a, b, _ in flagged]
    # matched over the whole record, then scored outside the learning period and, as EC57's
    # bxb, outside reference-marked ventricular flutter/fibrillation (what the review page
    # of the same record marks is then what the row counts, beat for beat)
    excluded = [(0, start)] * bool(start) + vf_episodes(rec.ann_samples, rec.ann_symbols)
    is_flagged = np.zeros(len(x), bool)
    for a, b in spans:
        is_flagged[a:b] = True
    is_noisy = np.zeros(len(x), bool)
    for a, b in noisy:
        is_noisy[a:b] = True
    is_clean = ~is_noisy
    is_clean[:start] = False

    def frac(where: np.ndarray) -> float:
        return float(is_flagged[where].mean()) if where.any() else 0.0
    # the gated replay matched once, its pairs scored over both stretches (and per class)
    ri, di = match_beats(ref, det_g, int(round(TOLERANCE_S * fs)))
    kept = {"gated": (outside(ref, excluded), outside(det_g, excluded)),
            "outside_flagged": (outside(ref, spans + excluded),
                                outside(det_g, spans + excluded))}
    row = {"record": rec.name, "beats": int((ref >= start).sum()), "scored_from_s": start / fs,
           "ungated": score_outside(ref, det_u, fs, excluded, TOLERANCE_S).to_dict(),
           "gated": score_pairs(ri, di, *kept["gated"]).to_dict(),
           "outside_flagged": score_pairs(ri, di, *kept["outside_flagged"]).to_dict(),
           "flagged_noisy": frac(is_noisy), "flagged_clean": frac(is_clean),
           "unreadable_s": sum(b - a for a, b, st in flagged if st == UNREADABLE) / fs,
           "doubtful_s": sum(b - a for a, b, st in flagged if st != UNREADABLE) / fs}
    if model is not None:
        for key, where in (("classes", "gated"), ("classes_outside_flagged", "outside_flagged")):
            per_class = class_scores(ri, di, rcls, dcls, *kept[where], list(CLASSES))
            row[key] = {c: s.to_dict() for c, s in per_class.items()}
    if with_xqrs:
        xq = xqrs_detect(x, fs)
        row["xqrs"] = score_outside(ref, xq, fs, excluded, TOLERANCE_S).to_dict()
        row["xqrs_outside_flagged"] = score_outside(ref, xq, fs, spans + excluded,
                                                    TOLERANCE_S).to_dict()
    return row, events


def _total(scores) -> dict:
    """The sum of scores saved by :meth:`DetectionScore.to_dict`, as one."""
    return sum((DetectionScore(s["tp"], s["fn"], s["fp"]) for s in scores),
               DetectionScore(0, 0, 0)).to_dict()


def _gross(rows: list[dict]) -> dict:
    out = {}
    for key in ("ungated", "gated", "outside_flagged", "xqrs", "xqrs_outside_flagged"):
        if rows and key in rows[0]:
            out[key] = _total(r[key] for r in rows)
    if rows:
        out["flagged_noisy"] = float(np.mean([r["flagged_noisy"] for r in rows]))
        out["flagged_clean"] = float(np.mean([r["flagged_clean"] for r in rows]))
    for key in ("classes", "classes_outside_flagged"):
        if rows and key in rows[0]:
            out[key] = {c: _total(r[key][c] for r in rows) for c in CLASSES}
    return out


@dataclass(frozen=True)
class NoiseJob:
    """One row: the record it replays is made here (``make``: ``source`` + ``noise`` at
    ``snr``) or is ``source`` itself (a clean record, or a ready-made noise-stress one)."""

    clean: str
    noise: str
    snr: str
    source: Path
    make: bool

    @property
    def name(self) -> str:
        """The name of the record replayed (and of its review page)."""
        return nst_name(self.clean, self.noise, float(self.snr)) if self.make \
            else self.source.name


def plan_jobs(clean: list, noises: list, snrs: tuple[float, ...], noisy: list) -> list[NoiseJob]:
    """The rows to measure, in order; inputs that would give two rows one record name or
    one label (clean record, noise, SNR) are refused before any work."""
    if bool(clean) != bool(noises):
        raise ValueError("clean records and noise records go together: give both (or only "
                         "ready-made noise-stress records)")
    if not clean and not noisy:
        raise ValueError("nothing to score: give clean and noise records, or ready-made "
                         "noise-stress records")
    check_unique_names(clean, noises)  # records made from them, and their pages, are named by it
    for path in map(record_path, [*clean, *noisy]):  # what the detector will run on
        check_rate(path)
    for c in clean:  # every clean and noise record, and the levels, before any work
        for nz in noises:
            check_levels(c, nz, snrs)
    jobs = []
    for c in map(record_path, clean):
        jobs.append(NoiseJob(c.name, "clean", "clean", c, False))
        jobs += [NoiseJob(c.name, record_path(nz).name, f"{snr:g}", c, True)
                 for nz in noises for snr in snrs]
    for path in map(record_path, noisy):
        label = nst_label(path)
        jobs.append(NoiseJob(label.clean, label.noise, label.snr, path, False))
    for what, key in (("replay records named", lambda j: j.name),
                      ("both be", lambda j: f"{j.clean} + {j.noise} at {j.snr} dB")):
        keys = [key(j) for j in jobs]
        twice = next((k for k in keys if keys.count(k) > 1), None)
        if twice is not None:
            raise ValueError(f"two rows would {what} {twice!r}: give each noise-stress "
                             "record once (a ready-made one is not made here again)")
    return jobs


def _made_before(path: Path, snr: str, digest: str) -> bool:
    """``path`` is already in the work directory, made at ``snr`` from the start of the
    noise (as the bench makes it: not a seeded ``data nst`` record) of the clean and noise
    records whose files' digest is ``digest`` (:func:`inputs_digest`), and its signal file
    is whole: reused, not made again. A sidecar that cannot be read, or a record made from
    other inputs (or before the sidecar recorded them) or cut short, is made again."""
    meta = path.with_name(f"{path.name}.nst.json")
    if not (meta.is_file() and path.with_suffix(".dat").exists()):
        return False
    try:
        made = json.loads(meta.read_text())
        same = (float(made["snr_db"]) == float(snr) and float(made["offset_s"]) == 0.0
                and made["inputs_sha256"] == digest and whole_format16(path))
    except (ValueError, KeyError, TypeError, OSError):
        return False
    return bool(same)


def _levels(jobs: list[NoiseJob]) -> list[str]:
    """The SNRs scored, highest first (as the NST database lists them)."""
    return sorted({j.snr for j in jobs if j.snr != "clean"}, key=lambda s: -float(s))


def bench_noise_stress(clean: list[str | Path], noises: list[str | Path],
                       snrs: tuple[float, ...] = NST_SNRS, work_dir: str | Path = "nst-records",
                       model: str | Path | None = None, with_xqrs: bool = True,
                       chunk_s: float = 1.0,
                       progress: Callable[[int, int, str], None] | None = None,
                       review_dir: str | Path | None = None,
                       review_worst: int = REVIEW_WORST,
                       noisy: list[str | Path] = ()) -> dict:
    """Rows per clean record x noise x SNR (and per clean record alone) and per ready-made
    ``noisy`` record, gross totals per SNR and per noise x SNR; with ``review_dir``, review
    pages there for the ``review_worst`` rows with the most errors (``review``:
    :func:`write_review_pages`)."""
    jobs = plan_jobs(list(clean), list(noises), snrs, list(noisy))
    levels = _levels(jobs)
    work = Path(work_dir)
    m = Model(model, threads=1) if model else None
    noise_paths = {record_path(n).name: record_path(n) for n in noises}
    rows = []
    reused: list[str] = []  # records found in the work directory, made from the same inputs
    digests: dict[tuple[Path, Path], str] = {}
    worst: list[tuple[dict, list[dict], Path]] = []  # only the rows still among the worst
    for i, job in enumerate(jobs):
        if progress is not None:
            progress(i, len(jobs), f"{job.clean} {job.noise} {job.snr}")
        path = work / job.name if job.make else job.source
        if job.make:
            pair = (job.source, noise_paths[job.noise])
            if pair not in digests:  # the same files for each SNR: hashed once
                digests[pair] = inputs_digest(*pair)
            if _made_before(path, job.snr, digests[pair]):
                reused.append(job.name)
            else:
                make_nst(job.source, noise_paths[job.noise], float(job.snr), work)
        row, events = score_replay(path, m, with_xqrs, chunk_s)
        rows.append({"clean": job.clean, "noise": job.noise, "snr": job.snr, **row})
        if review_dir is not None and review_worst > 0 and row_errors(rows[-1])["total"]:
            worst.append((rows[-1], events, path))
            worst.sort(key=lambda w: -row_errors(w[0])["total"])  # stable: first on a tie
            del worst[review_worst:]
    by_snr = {snr: _gross([r for r in rows if r["snr"] == snr]) for snr in ["clean", *levels]}
    scored = {(r["noise"], r["snr"]) for r in rows if r["noise"] != "clean"}
    by_noise = {f"{nz} {snr}": _gross([r for r in rows if (r["noise"], r["snr"]) == (nz, snr)])
                for nz in sorted({nz for nz, _ in scored}) for snr in levels
                if (nz, snr) in scored}
    res = {"model": str(model) if model else None, "classification": m is not None,
           "snrs": levels, "scored_from_s": LEARNING_S,
           "tolerance_s": TOLERANCE_S, "rows": rows, "by_snr": by_snr,
           "by_noise_snr": by_noise, "reused_records": reused}
    if review_dir is not None and review_worst > 0:
        res["review"] = {"worst": review_worst, "period_s": PERIOD_S,
                         "pages": write_review_pages(worst, Path(review_dir))}
    return res


def _pct(d: dict | None, key: str) -> str:
    return "—" if not d or d[key] is None else f"{100 * d[key]:.2f}"


def format_markdown(res: dict) -> str:
    """Per-row and gross tables (Se/+P in %)."""
    has_x = bool(res["rows"]) and "xqrs" in res["rows"][0]
    head = ("| record | noise | SNR | beats | ungated Se | ungated +P | gated Se | gated +P | "
            "outside-flagged Se | outside-flagged +P | flagged noisy % | flagged clean % |"
            + (" XQRS Se | XQRS +P | XQRS outside Se | XQRS outside +P |" if has_x else ""))
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in res["rows"]:
        cells = [r["clean"], r["noise"], r["snr"], str(r["beats"]),
                 _pct(r["ungated"], "se"), _pct(r["ungated"], "ppv"),
                 _pct(r["gated"], "se"), _pct(r["gated"], "ppv"),
                 _pct(r["outside_flagged"], "se"), _pct(r["outside_flagged"], "ppv"),
                 f"{100 * r['flagged_noisy']:.1f}", f"{100 * r['flagged_clean']:.1f}"]
        if has_x:
            cells += [_pct(r["xqrs"], "se"), _pct(r["xqrs"], "ppv"),
                      _pct(r["xqrs_outside_flagged"], "se"),
                      _pct(r["xqrs_outside_flagged"], "ppv")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Gross per SNR (all clean records and noises):", "",
              "| SNR | ungated Se | ungated +P | gated Se | gated +P | outside-flagged Se | "
              "outside-flagged +P | flagged noisy % | flagged clean % |"
              + (" XQRS Se | XQRS +P |" if has_x else ""),
              "|" + "---|" * (11 if has_x else 9)]
    for key, g in list(res["by_snr"].items()) + list(res["by_noise_snr"].items()):
        if not g:
            continue
        cells = [key, _pct(g["ungated"], "se"), _pct(g["ungated"], "ppv"),
                 _pct(g["gated"], "se"), _pct(g["gated"], "ppv"),
                 _pct(g["outside_flagged"], "se"), _pct(g["outside_flagged"], "ppv"),
                 f"{100 * g['flagged_noisy']:.1f}", f"{100 * g['flagged_clean']:.1f}"]
        if has_x:
            cells += [_pct(g.get("xqrs"), "se"), _pct(g.get("xqrs"), "ppv")]
        lines.append("| " + " | ".join(cells) + " |")
    if res["classification"]:
        lines += ["", "Per-class Se/+P of the emitted beats, gross per SNR (all | outside "
                  "flagged):", "", "| SNR | " + " | ".join(f"{c} Se | {c} +P" for c in CLASSES)
                  + " |", "|" + "---|" * (1 + 2 * len(CLASSES))]
        for key, g in res["by_snr"].items():
            if not g:
                continue
            cells = [key] + [f"{_pct(g['classes'][c], 'se')} \\| "
                             f"{_pct(g['classes_outside_flagged'][c], 'se')} | "
                             f"{_pct(g['classes'][c], 'ppv')} \\| "
                             f"{_pct(g['classes_outside_flagged'][c], 'ppv')}"
                             for c in CLASSES]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + format_review(res))


def stale_pages(res: dict, out: Path) -> list[Path]:
    """Review pages (and their events) in ``out`` that the report ``res`` does not name: an
    earlier report's, which a report written over it must not leave behind."""
    named = {pg.get(k) for pg in res.get("review", {}).get("pages", [])
             for k in ("page", "events")}
    return sorted(p for pattern in ("review-*.html", "review-*.events.jsonl")
                  for p in out.glob(pattern) if p.is_file() and p.name not in named)


def save(res: dict, out: Path) -> list[str]:
    """noise_stress.json, .md and .png in ``out``; returns notes (a skipped plot)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "noise_stress.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / "noise_stress.md").write_text(format_markdown(res) + "\n")
    note = save_noise_stress_plot(res, out / "noise_stress.png")
    return [note] if note else []
