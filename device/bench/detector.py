"""``vitaledge bench detector``: our streaming detector vs wfdb's XQRS on annotated records,
scored the standard way (a detection matches a reference beat within 150 ms; as in EC57's
bxb, detections inside reference-marked ventricular flutter or fibrillation are not
counted)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vitaledge.device.dsp.matching import TOLERANCE_S
from vitaledge.device.dsp.rpeaks import detect_rpeaks
from vitaledge.device.eval.scoring import DetectionScore, score_outside
from vitaledge.device.io.aami import map_annotations, vf_episodes
from vitaledge.device.io.records import list_records, read_record, select_records


def xqrs_detect(x: np.ndarray, fs: float) -> np.ndarray:
    import wfdb.processing

    xq = wfdb.processing.XQRS(sig=x, fs=fs)
    xq.detect(verbose=False)
    return np.asarray(xq.qrs_inds, dtype=np.int64)


def bench_detector(directory: str | Path, with_xqrs: bool = True,
                   tolerance_s: float = TOLERANCE_S, names: list[str] | None = None,
                   progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Se / +P per record of ``directory`` (only ``names`` when given). ``progress`` is
    called with (records done, records in all, the record now read)."""
    rows, totals = [], {"vitaledge": DetectionScore(0, 0, 0), "xqrs": DetectionScore(0, 0, 0)}
    paths = select_records(list_records(directory), names)
    for i, p in enumerate(paths):
        if progress is not None:
            progress(i, len(paths), p.name)
        rec = read_record(p)
        ref, _ = map_annotations(rec.ann_samples, rec.ann_symbols)
        vf = vf_episodes(rec.ann_samples, rec.ann_symbols)  # EC57 leaves them out
        row = {"record": rec.name, "beats": int(len(ref)), "lead": rec.lead,
               "vf_seconds": round(sum(min(b, len(rec.signal)) - a for a, b in vf) / rec.fs,
                                   1)}
        dets = {"vitaledge": detect_rpeaks}
        if with_xqrs:
            dets["xqrs"] = xqrs_detect
        for name, fn in dets.items():
            t = time.perf_counter()
            det = fn(rec.signal, rec.fs)
            dt = time.perf_counter() - t
            s = score_outside(ref, det, rec.fs, vf, tolerance_s)
            totals[name] = totals[name] + s
            row[name] = {"tp": s.tp, "fn": s.fn, "fp": s.fp, "se": s.sensitivity,
                         "ppv": s.ppv, "seconds": round(dt, 3)}
        rows.append(row)
    return {"records": rows, "totals": {k: {"tp": v.tp, "fn": v.fn, "fp": v.fp,
                                             "se": v.sensitivity, "ppv": v.ppv}
                                         for k, v in totals.items() if v.tp + v.fn}}


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
    vf = [f"{r['record']} {r['vf_seconds']:g} s" for r in res["records"] if r.get("vf_seconds")]
    if vf:
        lines.append("not scored (reference-marked ventricular flutter/fibrillation, as EC57's "
                     "bxb): " + ", ".join(vf))
    return "\n".join(lines)
