"""``vitaledge device score`` on events files that are not a whole classified run: a copy
cut off mid-line, a run that stopped early, detection-only events (bench noise-stress
without a model)."""

from __future__ import annotations

import json

import numpy as np
from conftest import invoke, mitdb_records


def _events(path, samples, cls="N"):
    path.write_text("".join(json.dumps({"type": "beat", "seq": i + 1, "sample": int(s),
                                        "class": cls, "run": "r1"}) + "\n"
                            for i, s in enumerate(samples)))
    return path


def _reference(rec_path):
    from vitaledge.device.io.aami import map_annotations
    from vitaledge.device.io.records import read_record

    rec = read_record(rec_path)
    ref, _ = map_annotations(rec.ann_samples, rec.ann_symbols)
    return ref


def test_a_copy_cut_off_mid_line_and_a_run_that_stopped_early_are_said(mitdb_dir, tmp_path):
    """A copy of a sink file cut at 200 kB scored Se 45.75 % with no word: the torn last
    line was skipped in silence and nothing said the events stop at 13:39 of 30:05."""
    [rec] = mitdb_records(mitdb_dir, ["100"])
    ref = _reference(rec)
    whole = _events(tmp_path / "whole.jsonl", ref)
    r = invoke(["device", "score", whole, "--record", rec])
    assert r.exit_code == 0 and "note:" not in r.output, r.output
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(whole.read_bytes()[:len(whole.read_bytes()) // 2])
    r = invoke(["device", "score", cut, "--record", rec, "--json", tmp_path / "s.json"])
    assert r.exit_code == 0, r.output
    assert f"note: the last line of {cut} is cut off mid-event" in r.output
    got = json.loads((tmp_path / "s.json").read_text())
    assert got["torn_last_line"] is True and got["events"] < 0.6 * len(ref)
    assert "note: the events stop at " in r.output and "of record 100's 30:05" in r.output


def test_detection_only_events_are_scored_for_detection(mitdb_dir, tmp_path):
    """bench noise-stress without a model writes beats with "class": null; device score
    refused them ('needs a class') though device review reads them."""
    [rec] = mitdb_records(mitdb_dir, ["100"])
    ref = _reference(rec)
    ev = _events(tmp_path / "det.jsonl", ref[10:], cls=None)
    r = invoke(["device", "score", ev, "--record", rec, "--json", tmp_path / "s.json"])
    assert r.exit_code == 0, r.output
    assert f"{len(ref) - 10} matched" in r.output and "detection only" in r.output
    got = json.loads((tmp_path / "s.json").read_text())
    assert got["missed"] == 10 and got["classification"] is None



def test_class_scores_count_missed_extra_and_misclassified_beats_as_ec57():
    """EC57's per-class Se/+P: a missed beat lowers its class's Se, a false or
    misclassified one the +P of the class it was given; a detection paired with a
    reference beat that is left out (inside VF, before the scored stretch) counts nowhere."""
    from vitaledge.device.eval.scoring import class_scores

    # reference beats at 100 200 300 400 500 (samples), detections at 100 200 300 500 650 700
    rcls = np.array([0, 0, 1, 2, 0])  # N N S V N
    # 100 N ok, 200 N given S, 300 S ok, 400 V missed, 500 N left out (paired, given V),
    # 650 extra given V, 700 extra given V but left out
    ri, di = np.array([0, 1, 2, 4]), np.array([0, 1, 2, 3])
    dcls = np.array([0, 1, 1, 2, 2, 2])
    r_in = np.array([True, True, True, True, False])
    d_in = np.array([True, True, True, False, True, False])
    got = {c: (s.tp, s.fn, s.fp) for c, s in
           class_scores(ri, di, rcls, dcls, r_in, d_in, ["N", "S", "V", "F", "Q"]).items()}
    assert got == {"N": (1, 1, 0), "S": (1, 0, 1), "V": (0, 1, 1), "F": (0, 0, 0),
                   "Q": (0, 0, 0)}


def test_device_score_gives_ec57_class_figures_beside_the_matched_table(mitdb_dir, tmp_path):
    """The matched-beat table's recall ignores missed beats (a V beat never detected left
    V 'recall' at 1.0 or 0/0); the EC57 lines count it, and the false beat too."""
    from vitaledge.device.io.aami import CLASSES, map_annotations
    from vitaledge.device.io.records import read_record

    [rec] = mitdb_records(mitdb_dir, ["100"])
    r = read_record(rec)
    ref, cls = map_annotations(r.ann_samples, r.ann_symbols)
    names = [CLASSES[k] for k in cls]
    v = names.index("V")
    s = names.index("S")
    beats = [(int(x), c) for i, (x, c) in enumerate(zip(ref, names, strict=True)) if i != v]
    beats = [(x, "N" if x == ref[s] else c) for x, c in beats]  # one S beat called N
    beats.append((int((ref[50] + ref[51]) // 2), "V"))  # a false beat, called V
    beats.sort()
    ev = tmp_path / "ev.jsonl"
    ev.write_text("".join(json.dumps({"type": "beat", "seq": i + 1, "sample": x, "class": c,
                                      "run": "r1"}) + "\n" for i, (x, c) in enumerate(beats)))
    out = tmp_path / "s.json"
    res = invoke(["device", "score", ev, "--record", rec, "--json", out])
    assert res.exit_code == 0, res.output
    got = json.loads(out.read_text())["classes"]
    n_n, n_s = names.count("N"), names.count("S")
    assert got["V"] == {"tp": 0, "fn": 1, "fp": 1, "se": 0.0, "ppv": 0.0}
    assert got["S"] == {"tp": n_s - 1, "fn": 1, "fp": 0, "se": (n_s - 1) / n_s, "ppv": 1.0}
    assert (got["N"]["tp"], got["N"]["fn"], got["N"]["fp"]) == (n_n, 0, 1)
    assert got["F"]["se"] is None and got["F"]["ppv"] is None  # none in 100: no figure
    assert "every beat, EC57" in res.output
    line = next(ln.split() for ln in res.output.splitlines() if ln.split()[:1] == ["V"]
                and "%" in ln)
    assert line == ["V", "0.00%", "0.00%", "1", "1"]
