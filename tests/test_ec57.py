"""The EC57-style report: numbers checked by hand on a small confusion."""

import numpy as np
import pytest
from conftest import mitdb_records

from vitaledge.device.eval.ec57 import kappa, markdown, report, table

N, S, V, F, Q = range(5)


def test_per_class_figures_by_hand():
    # 10 N (1 called S), 4 S (2 called N), 5 V (all V), 1 F (called V), 2 Q (called N)
    y = np.array([N] * 10 + [S] * 4 + [V] * 5 + [F] + [Q] * 2)
    p = np.array([N] * 9 + [S] + [N, N, S, S] + [V] * 5 + [V] + [N, N])
    t = table(y, p)
    assert t["beats"] == 20  # Q reference beats apart
    assert t["accuracy"] == pytest.approx(16 / 20)
    s = t["classes"]["S"]
    assert (s["tp"], s["fn"], s["fp"]) == (2, 2, 1)
    assert s["se"] == pytest.approx(0.5) and s["ppv"] == pytest.approx(2 / 3)
    assert s["fpr"] == pytest.approx(1 / 16)
    assert s["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    v = t["classes"]["V"]
    assert v["se"] == 1.0 and v["ppv"] == pytest.approx(5 / 6)
    assert t["classes"]["F"]["se"] == 0.0 and t["classes"]["F"]["ppv"] is None
    assert t["q_reference"] == {"beats": 2, "predicted": {"N": 2, "S": 0, "V": 0, "F": 0,
                                                          "Q": 0}}


def test_kappa_matches_its_definition():
    cm = np.array([[20, 5], [10, 15]])
    po, pe = 35 / 50, (30 * 25 + 20 * 25) / 50 ** 2
    assert kappa(cm) == pytest.approx((po - pe) / (1 - pe))
    assert kappa(np.diag([3, 4])) == pytest.approx(1.0)


def test_report_has_gross_and_per_record_rows_and_prints_published_figures():
    y = np.array([N, N, S, V, N, V])
    p = np.array([N, S, S, V, N, N])
    rec = np.array(["100", "100", "100", "232", "232", "232"])
    r = report(y, p, rec, note="DS2 here is partial.")
    assert list(r["records"]) == ["100", "232"]
    assert r["records"]["232"]["classes"]["V"]["se"] == pytest.approx(0.5)
    md = markdown(r)
    assert "| vitaledge | 6 | 66.7 |" in md
    assert "de Chazal et al. 2004 (published)" in md and "| 75.9 | 38.5 |" in md
    assert md.rstrip().endswith("DS2 here is partial.")


def test_vf_episodes_are_read_from_the_reference_brackets():
    from vitaledge.device.io.aami import vf_episodes

    samples = np.array([10, 100, 150, 160, 300, 400, 500, 900])
    symbols = ["N", "[", "!", "!", "]", "N", "[", "!"]
    eps = vf_episodes(samples, symbols)
    assert eps[0] == (100, 301)  # "]" included
    assert eps[1][0] == 500 and eps[1][1] > 10**12  # still open at the end: to the end
    assert vf_episodes(samples[:2], ["N", "N"]) == []
    # a record that begins inside an episode: its "]" closes one from the start
    assert vf_episodes(np.array([5, 40, 90]), ["!", "]", "N"]) == [(0, 41)]


def test_detection_inside_ventricular_flutter_is_not_scored(mitdb_dir):
    """Record 207's flutter waves inside its reference-marked VF episodes are detected:
    counted, they were 309 of its 313 extra detections; as EC57's bxb, they are left out,
    and the beats outside are scored as before."""
    from vitaledge.device.bench.detector import bench_detector
    from vitaledge.device.dsp.rpeaks import detect_rpeaks
    from vitaledge.device.eval.scoring import score_detections
    from vitaledge.device.io.aami import map_annotations, vf_episodes
    from vitaledge.device.io.records import read_record

    (path,) = mitdb_records(mitdb_dir, ["207"])
    rec = read_record(path)
    vf = vf_episodes(rec.ann_samples, rec.ann_symbols)
    assert len(vf) == 6 and 140 < sum(b - a for a, b in vf) / rec.fs < 146
    ref, _ = map_annotations(rec.ann_samples, rec.ann_symbols)
    every = score_detections(ref, detect_rpeaks(rec.signal, rec.fs), rec.fs)
    row = bench_detector(path.parent, with_xqrs=False, names=["207"])["records"][0]
    ours = row["vitaledge"]
    assert ours["tp"] == every.tp and ours["fn"] == every.fn  # no reference beat lost
    assert every.fp - ours["fp"] > 250 and ours["fp"] < 20
    assert row["vf_seconds"] == pytest.approx(sum(b - a for a, b in vf) / rec.fs, abs=0.1)
    # device score leaves the same beats out, by the same rule
    from vitaledge.device.eval.score_events import score_events

    det = detect_rpeaks(rec.signal, rec.fs)
    s = score_events([{"sample": int(r), "class": "N"} for r in det], path)
    assert (s["matched"], s["missed"], s["extra"]) == (ours["tp"], ours["fn"], ours["fp"])
    assert s["events_in_vf"] == len(det) - ours["tp"] - ours["fp"] > 250


def test_bench_detector_at_a_devices_rate(mitdb_dir):
    """``bench detector --fs``: the records resampled to 250 and 128 Hz (a wearable's
    rates) before detection, the reference beats and 207's VF episodes scaled with them:
    the same beats are scored, the VF time is the same, and detection holds within a few
    beats of the native 360 Hz (measured: 20 missed at 360 Hz, 19 at 250, 22 at 128)."""
    from vitaledge.device.bench.detector import bench_detector

    paths = mitdb_records(mitdb_dir, ["207", "208"])
    native = bench_detector(paths[0].parent, with_xqrs=False, names=["207", "208"])
    for fs in (250.0, 128.0):
        res = bench_detector(paths[0].parent, with_xqrs=False, names=["207", "208"], fs=fs)
        assert res["fs"] == fs and all(r["fs"] == fs for r in res["records"])
        for a, b in zip(native["records"], res["records"], strict=True):
            assert b["vf_seconds"] == pytest.approx(a["vf_seconds"], abs=0.1)
        t, n = res["totals"]["vitaledge"], native["totals"]["vitaledge"]
        assert t["tp"] + t["fn"] == n["tp"] + n["fn"]
        assert t["fn"] <= n["fn"] + 8 and t["fp"] <= n["fp"] + 8, (fs, t, n)
    with pytest.raises(ValueError, match="fs 20"):
        bench_detector(paths[0].parent, with_xqrs=False, names=["207"], fs=20.0)
    from click.testing import CliRunner

    from vitaledge.cli import main

    r = CliRunner().invoke(main, ["bench", "detector", "--data", str(paths[0].parent),
                                  "--records", "207", "--fs", "250", "--no-xqrs"])
    assert r.exit_code == 0 and "records resampled to 250 Hz first" in r.output, r.output
    r = CliRunner().invoke(main, ["bench", "detector", "--data", str(paths[0].parent),
                                  "--records", "207", "--fs", "20", "--no-xqrs"])
    assert r.exit_code == 2 and "--fs" in r.output


def test_bench_detector_on_another_lead(mitdb_dir):
    """``bench detector --lead V1``: the V1 lead of each record that has one, the others
    skipped and named; a lead no record has is a one-line error."""
    from vitaledge.device.bench.detector import bench_detector, format_table
    from vitaledge.device.io.records import read_record

    paths = mitdb_records(mitdb_dir, ["114", "118"])  # 114: MLII and V5, no V1
    res = bench_detector(paths[0].parent, with_xqrs=False, names=["114", "118"], lead="V1")
    assert [r["record"] for r in res["records"]] == ["118"] and res["skipped_no_lead"] == ["114"]
    assert res["records"][0]["lead"] == "V1"
    assert read_record(paths[1], lead="V1").lead == "V1"
    assert "lead V1; records without it, not scored: 114" in format_table(res)
    assert res["totals"]["vitaledge"]["se"] > 0.99  # 118's V1 is clean (0 missed, 0 false)
    with pytest.raises(ValueError, match=r"no record has lead 'V9'; the last: "
                       r".*114.hea: no lead 'V9' \(leads: V5, MLII\)"):
        bench_detector(paths[0].parent, with_xqrs=False, names=["114"], lead="V9")


def test_score_of_another_records_events_says_they_hardly_match(synth_dir):
    """Events scored against the wrong record of the same length are no error the scorer
    can prove, but hardly any beat matches either way: the report says so; a right pair
    does not get the note."""
    from vitaledge.device.eval.score_events import format_score, score_events
    from vitaledge.device.io.records import read_record

    def events(name):
        rec = read_record(synth_dir / name)
        return [{"sample": int(r), "class": "N"} for r in rec.ann_samples]

    wrong = score_events(events("s002"), synth_dir / "s000")
    right = score_events(events("s000"), synth_dir / "s000")
    assert wrong["sensitivity"] < 0.5 and wrong["ppv"] < 0.5, wrong["sensitivity"]
    assert "are these events of record s000?" in format_score(wrong)
    assert right["sensitivity"] > 0.99 and "are these events" not in format_score(right)


def test_device_score_says_which_missed_beats_are_at_the_records_edges(mitdb_dir):
    """Record 100's first beat (0.21 s) and last (25 ms before the end) have no window and
    no next R peak: when the stream leaves them out, device score counts them apart; a beat
    missed in the middle is not counted with them."""
    from vitaledge.device.eval.score_events import format_score, score_events
    from vitaledge.device.io.aami import map_annotations
    from vitaledge.device.io.records import read_record

    (path,) = mitdb_records(mitdb_dir, ["100"])
    rec = read_record(path)
    ref, _ = map_annotations(rec.ann_samples, rec.ann_symbols)
    assert ref[0] < 0.5 * rec.fs and ref[-1] > len(rec.signal) - 0.5 * rec.fs
    inner = ref[1:-1]
    s = score_events([{"sample": int(r), "class": "N"} for r in np.delete(inner, 1000)], path)
    assert (s["missed"], s["missed_at_edges"]) == (3, 2)
    assert "of the 3 missed, 2 within 0.5 s of the record's start or end" in format_score(s)
    whole = score_events([{"sample": int(r), "class": "N"} for r in ref], path)
    assert (whole["missed"], whole["missed_at_edges"]) == (0, 0)
    assert "start or end" not in format_score(whole)
