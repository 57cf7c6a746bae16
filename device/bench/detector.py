"""``vitaledge bench detector``: our streaming detector vs wfdb's XQRS on annotated records,
scored the standard way (a detection matches a reference beat within 150 ms; as in EC57's
bxb, detections inside reference-marked ventricular flutter or fibrillation are not
counted). With ``fs``, every record is first resampled to that rate by the device's own
polyphase resampler (the reference beats and VF episodes scaled with it): the detector as
a device sampling at another rate than the record's would run it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vitaledge.device.dsp.beat_check import detect_beats
from vitaledge.device.dsp.matching import TOLERANCE_S
from vitaledge.device.dsp.resample import resample
from vitaledge.device.eval.scoring import DetectionScore, score_outside
from vitaledge.device.io.aami import map_annotations, vf_episodes
from vitaledge.device.io.records import (
    LeadMissing,
    RecordError,
    check_header,
    list_records,
    read_record,
    select_records,
    wfdb_module,
)

#: Rates ``fs`` may resample to: a QRS needs its 5-15 Hz band (and the muscle-noise measure
#: its 25-45 Hz, off below about 67 Hz); above 10 kHz is not an ECG front end.
MIN_FS, MAX_FS = 50.0, 10_000.0


def xqrs_detect(x: np.ndarray, fs: float) -> np.ndarray:
    import wfdb.processing

    xq = wfdb.processing.XQRS(sig=x, fs=fs)
    xq.detect(verbose=False)
    return np.asarray(xq.qrs_inds, dtype=np.int64)


def check_rate(path: Path) -> None:
    """``path`` is a record the detector can run on at its own rate: a header that is there
    and reads (a damaged one named, not wfdb's bare "invalid syntax") and a rate from
    ``MIN_FS`` to ``MAX_FS`` (below 50 Hz the 5-15 Hz band is not there to find a QRS in)."""
    check_header(path)
    try:
        rate = float(wfdb_module().rdheader(str(path)).fs)
    except Exception as exc:  # wfdb's own words, but with the file named
        raise RecordError(f"{path}.hea: cannot read WFDB header: {exc}") from exc
    if not MIN_FS <= rate <= MAX_FS:
        raise RecordError(f"{path}: {rate:g} Hz; the detector takes {MIN_FS:g} to "
                          f"{MAX_FS:g} Hz")


def bench_detector(directory: str | Path, with_xqrs: bool = True,
                   tolerance_s: float = TOLERANCE_S, names: list[str] | None = None,
                   progress: Callable[[int, int, str], None] | None = None,
                   fs: float | None = None, lead: str = "MLII") -> dict:
    """Se / +P per record of ``directory`` (only ``names`` when given), at each record's
    own rate or resampled to ``fs``, on ``lead`` (records without it are skipped and named;
    MLII falls back to the first channel, as everywhere). ``progress`` is called with
    (records done, records in all, the record now read)."""
    if fs is not None and not MIN_FS <= fs <= MAX_FS:
        raise ValueError(f"fs {fs!r}: expected a sample rate from {MIN_FS:g} to {MAX_FS:g} Hz")
    rows, totals = [], {"vitaledge": DetectionScore(0, 0, 0), "xqrs": DetectionScore(0, 0, 0)}
    skipped, missing, resampled = [], None, False
    paths = select_records(list_records(directory), names)
    if fs is None:  # every record's own rate before any is scored
        for p in paths:
            check_rate(p)
    for i, p in enumerate(paths):
        if progress is not None:
            progress(i, len(paths), p.name)
        try:
            rec = read_record(p, lead=lead)
        except LeadMissing as exc:
            skipped.append(p.name)
            missing = str(exc)
            continue
        ref, _ = map_annotations(rec.ann_samples, rec.ann_symbols)
        if not len(ref):
            raise RecordError(f"{p}.atr: no beat annotations; the record cannot be scored")
        vf = vf_episodes(rec.ann_samples, rec.ann_symbols)  # EC57 leaves them out
        x, rate = rec.signal, rec.fs
        if fs is not None and fs != rec.fs:
            x, rate, k = resample(rec.signal, rec.fs, fs), float(fs), fs / rec.fs
            resampled = True
            ref = np.round(np.asarray(ref) * k).astype(np.int64)
            vf = [(int(round(a * k)), int(round(b * k))) for a, b in vf]
        row = {"record": rec.name, "beats": int(len(ref)), "lead": rec.lead, "fs": rate,
               "vf_seconds": round(sum(min(b, len(x)) - a for a, b in vf) / rate, 1)}
        dets = {"vitaledge": lambda x, rate, lead=rec.lead: detect_beats(x, rate, lead)}
        if with_xqrs:
            dets["xqrs"] = xqrs_detect
        for name, fn in dets.items():
            t = time.perf_counter()
            try:
                det = fn(x, rate)
            except (ValueError, IndexError, ZeroDivisionError) as exc:  # e.g. XQRS: too short
                raise RecordError(f"{p}: {name} cannot run on it ({len(x)} samples at "
                                  f"{rate:g} Hz): {exc}") from exc
            dt = time.perf_counter() - t
            s = score_outside(ref, det, rate, vf, tolerance_s)
            totals[name] = totals[name] + s
            row[name] = {"tp": s.tp, "fn": s.fn, "fp": s.fp, "se": s.sensitivity,
                         "ppv": s.ppv, "seconds": round(dt, 3)}
        rows.append(row)
    if not rows:
        raise ValueError(f"{directory}: no record has lead {lead!r}; the last: {missing}")
    scores = {k: {"tp": v.tp, "fn": v.fn, "fp": v.fp, "se": v.sensitivity, "ppv": v.ppv}
              for k, v in totals.items() if v.tp + v.fn}
    return {"records": rows, "fs": fs, "resampled": resampled, "lead": lead,
            "skipped_no_lead": skipped,
            "totals": scores}


def format_table(res: dict) -> str:
    names = list(res["totals"])
    head = f"{'record':<8}{'beats':>7}" + "".join(
        f"{n + ' FN':>14}{'FP':>5}{'Se%':>8}{'+P%':>8}" for n in names)
    lines = [head]
    for r in res["records"] + [{"record": "total", "beats": sum(x["beats"] for x in
                                                                  res["records"]),
                                 **res["totals"]}]:
        cells = "".join(f"{r[n]['fn']:>14}{r[n]['fp']:>5}{100 * r[n]['se']:>8.2f}"
                        f"{100 * r[n]['ppv']:>8.2f}" for n in names)
        lines.append(f"{r['record']:<8}{r['beats']:>7}" + cells)
    if res.get("resampled"):
        lines.append(f"records resampled to {res['fs']:g} Hz first")
    if res.get("lead", "MLII") != "MLII":
        lines.append(f"lead {res['lead']}"
                     + (f"; records without it, not scored: {', '.join(res['skipped_no_lead'])}"
                        if res.get("skipped_no_lead") else ""))
    vf = [f"{r['record']} {r['vf_seconds']:g} s" for r in res["records"] if r.get("vf_seconds")]
    if vf:
        lines.append("not scored (reference-marked ventricular flutter/fibrillation, as EC57's "
                     "bxb): " + ", ".join(vf))
    return "\n".join(lines)
