"""``vitaledge device score`` on events files that are not a whole classified run: a copy
cut off mid-line, a run that stopped early, detection-only events (bench noise-stress
without a model)."""

from __future__ import annotations

import json

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

