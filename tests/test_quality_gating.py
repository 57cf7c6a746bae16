"""Issue 15: the signal-quality index on the stream and the gating of the beat stage —
chunk-invariant judgements, no beats on pure noise, clean records left alone."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FakeModel, mitdb_records, unavailable

from vitaledge.device.dsp.length_transform import (
    LengthTransformDetector,
    detect_length_transform,
)
from vitaledge.device.dsp.signal_quality_index import (
    DOUBTFUL,
    GOOD,
    UNREADABLE,
    flagged_fraction,
    kurtosis,
    record_quality,
)
from vitaledge.device.stream.pipeline import BeatPipeline, SignalError, run_record

FS = 360.0


@pytest.fixture(scope="module")
def rec118(mitdb_dir):
    from vitaledge.device.io.records import read_record

    return read_record(mitdb_records(mitdb_dir, ["118"])[0])


@pytest.fixture(scope="module")
def noisy118(rec118, data_dir):
    """118's first 3 minutes with 40 s of the NST muscle noise at about -6 dB from 60 s."""
    from vitaledge.device.io.records import read_record

    ma = data_dir / "nstdb-noise" / "ma"
    if not ma.with_suffix(".hea").exists():
        unavailable(f"{ma}: NST noise record not found")
    noise = read_record(ma).signal
    x = rec118.signal[: int(180 * FS)].copy()
    a, b = int(60 * FS), int(100 * FS)
    n = noise[: b - a] - noise[: b - a].mean()
    x[a:b] += n * (2.0 * 3.0 / (np.sqrt(8) * n.std()))  # QRS ~3 mV p-p: about -6 dB
    return x


def test_kurtosis_tells_spiky_ecg_from_gaussian_noise(rec118):
    rng = np.random.default_rng(0)
    assert abs(kurtosis(rng.normal(size=50_000)) - 3.0) < 0.1
    assert kurtosis(np.zeros(100)) == 0.0
    from vitaledge.device.dsp.filters import FilterSpec, apply_filter

    assert kurtosis(apply_filter(rec118.signal[: int(60 * FS)], FS, FilterSpec(1.0, 40.0))) > 5


@pytest.mark.parametrize("chunk", [1, 7, 360, 10_000])
def test_quality_index_is_chunk_invariant(noisy118, chunk):
    # chunk 1 on a clean and a noisy stretch of 20 s each (a Python call per sample)
    x = noisy118 if chunk > 1 else np.concatenate([noisy118[: int(20 * FS)],
                                                   noisy118[int(60 * FS): int(80 * FS)]])
    x = x[:-1234]  # the stream ends inside a block
    peaks, blocks = record_quality(x, FS)
    p2, b2 = record_quality(x, FS, chunk=chunk)
    assert np.array_equal(peaks, p2)
    assert b2 == blocks
    assert len(blocks) == int(np.ceil(len(x) / (2 * FS)))
    assert {b.state for b in blocks} == {GOOD, DOUBTFUL, UNREADABLE}  # every judgement met


@pytest.mark.parametrize("chunk", [1, 997])
def test_quality_index_is_chunk_invariant_on_synthetic_noise(synth_dir, chunk):
    """The same property without the real recordings: a synthetic record with 40 s of
    heavy-tailed 5-60 Hz noise, where the gate meets all three judgements."""
    from scipy.signal import butter, sosfilt

    from vitaledge.device.io.records import read_record

    rec = read_record(synth_dir / "s000")
    x, fs = rec.signal.copy(), rec.fs
    a, b = int(60 * fs), int(100 * fs)
    noise = sosfilt(butter(2, [5, 60], "bandpass", fs=fs, output="sos"),
                    np.random.default_rng(3).standard_t(3, size=b - a))
    x[a:b] += noise / noise.std() * np.ptp(x[: int(10 * fs)]) / 4
    if chunk == 1:  # a Python call per sample: 20 s clean and 20 s noisy
        x = np.concatenate([x[: int(20 * fs)], x[a: a + int(20 * fs)]])
    x = x[:-1234]  # the stream ends inside a block
    peaks, blocks = record_quality(x, fs)
    p2, b2 = record_quality(x, fs, chunk=chunk)
    assert np.array_equal(peaks, p2) and b2 == blocks
    assert len(blocks) == int(np.ceil(len(x) / (2 * fs)))
    assert GOOD in {bl.state for bl in blocks} and UNREADABLE in {bl.state for bl in blocks}
    if chunk > 1:
        assert {bl.state for bl in blocks} == {GOOD, DOUBTFUL, UNREADABLE}


def test_second_detector_is_chunk_invariant_and_finds_the_beats(rec118):
    from vitaledge.device.eval.scoring import score_detections
    from vitaledge.device.io.aami import map_annotations

    x = rec118.signal[: int(120 * FS)]
    whole = detect_length_transform(x, FS)
    for chunk in (1, 7, 360):
        d = LengthTransformDetector(FS)
        got = []
        for i in range(0, len(x), chunk):
            got += d.process(x[i:i + chunk])
        assert got + d.flush() == whole.tolist()
    ref, _ = map_annotations(rec118.ann_samples, rec118.ann_symbols)
    s = score_detections(ref[ref < len(x)], whole, FS)
    assert s.sensitivity > 0.99 and s.ppv > 0.99, s


def test_noise_is_judged_unreadable_and_clean_signal_good(noisy118):
    _, blocks = record_quality(noisy118, FS)
    noisy = [b for b in blocks if b.start >= 64 * FS and b.stop <= 100 * FS]
    clean = [b for b in blocks if b.stop <= 60 * FS or b.start >= 110 * FS]
    assert sum(b.state != GOOD for b in noisy) >= 0.6 * len(noisy)  # ma varies in strength
    assert any(b.state == UNREADABLE for b in noisy)
    assert flagged_fraction(clean) < 0.05


@pytest.mark.parametrize("name", ["100", "118"])
def test_a_clean_record_is_not_flagged(mitdb_dir, name):
    """Less than 1 % of the time flagged on MIT-BIH 100 (DS2: measured, never tuned on)
    and 118; no unreadable block at all."""
    from vitaledge.device.io.records import read_record

    rec = read_record(mitdb_records(mitdb_dir, [name])[0])
    _, blocks = record_quality(rec.signal, rec.fs, chunk=3600)
    assert flagged_fraction(blocks) < 0.01
    assert not any(b.state == UNREADABLE for b in blocks)


@pytest.mark.parametrize("scale", [0.05, 0.3, 3.0])
@pytest.mark.parametrize("seed", [0, 1, 26, 47, 108, 142])
def test_pure_noise_gives_unreadable_events_and_no_beats(seed, scale):
    """Gaussian noise (mV) from its first sample: no beat at all. Seeds 0, 47 and 142 let
    beats out of the first block while bSQI counted in the detectors' learning period (0.5
    or 0.6 on two to four beats), 26 and 108 while kSQI took in the band filter's start
    transient (above 5 in the first 2-6 s)."""
    x = np.random.default_rng(seed).normal(scale=scale, size=int(60 * FS))
    _, blocks = record_quality(x, FS)
    assert max(b.ksqi for b in blocks) < 4.5
    events = run_record(FakeModel(), x, FS, chunk=500)
    assert not [e for e in events if e["type"] == "beat"]
    unread = [e for e in events if e.get("status") == UNREADABLE]
    assert unread
    covered = sum(e["end_sample"] - e["start_sample"] for e in unread)
    assert covered >= 0.9 * len(x)
    for e in unread:
        assert e["type"] == "status" and e["reason"] in ("noise", "rate")
        assert e["end"] > e["start"] and e["end"] - e["start"] <= BeatPipeline.MAX_RUN_S
    # without gating the same noise makes beats
    assert [e for e in run_record(FakeModel(), x, FS, gating=False) if e["type"] == "beat"]


@pytest.mark.parametrize("what", ["ramp", "wander", "volts"])
def test_a_signal_without_a_qrs_sized_deflection_gives_no_beats(rec118, what):
    """A slow drift rounded to 1 nV (a one-column CSV of a ramp gave 222 beats at 119 bpm,
    every block judged good: the rounding's steps are spiky, alike, and both detectors
    find them), baseline wander alone, and an ECG in volts instead of mV: unreadable,
    reason low_amplitude, no beat. The same ECG in mV keeps every beat."""
    t = np.arange(int(60 * FS)) / FS
    x = {"ramp": np.round(0.01 * t, 6),                  # 10 uV/s
         "wander": 0.5 * np.sin(2 * np.pi * 0.2 * t),
         "volts": rec118.signal[:len(t)] * 1e-3}[what]
    assert [e for e in run_record(FakeModel(), x, FS, gating=False) if e["type"] == "beat"]
    events = run_record(FakeModel(), x, FS, chunk=500)
    assert not [e for e in events if e["type"] == "beat"]
    unread = [e for e in events if e.get("status") == UNREADABLE]
    assert sum(e["end_sample"] - e["start_sample"] for e in unread) >= 0.9 * len(x)
    assert {e["reason"] for e in unread} <= {"low_amplitude", "rate"}
    assert "low_amplitude" in {e["reason"] for e in unread}
    clean = run_record(FakeModel(), rec118.signal[:len(t)], FS, chunk=500)
    assert not [e for e in clean if e.get("status") == UNREADABLE]
    assert len([e for e in clean if e["type"] == "beat"]) >= 60


def test_after_a_short_hole_the_detectors_agreement_still_counts(mitdb_dir):
    """The daemon resumes after a hole of up to 30 s with detectors that keep their levels,
    so only a detector that is learning makes bSQI say nothing. With bSQI ignored for 2 s
    after each hole, MIT-BIH 208 with a 1.3-s hole every 37 s had a block (412 s: bSQI
    1.0, kSQI 4.2, sSQI 0) judged unreadable and its beats dropped; none now."""
    from vitaledge.device.dsp.rpeaks import RPeakDetector
    from vitaledge.device.dsp.signal_quality_index import QualityIndex
    from vitaledge.device.io.records import read_record

    rec = read_record(mitdb_records(mitdb_dir, ["208"])[0])
    x = rec.signal[: int(600 * FS)]
    holes = [(int(t * FS), int((t + 1.3) * FS)) for t in range(40, 590, 37)]
    qi, blocks, pos = QualityIndex(FS), [], 0
    assert qi.learn == int(2 * FS)  # a new stream: both detectors learn
    for a, b in [*holes, (len(x), len(x))]:
        blocks += qi.process(x[pos:a])[1] + qi.flush()[1]
        if a == len(x):
            break
        qi, pos = qi.resumed(b, qi.detector.resumed()), b
        assert qi.learn == 0
    assert len(blocks) == 300 and not [k for k in blocks if k.state == UNREADABLE]
    # after a long hole the daemon starts the primary detector afresh: it learns again
    assert qi.resumed(len(x) + 20_000, RPeakDetector(FS)).learn == int(2 * FS)


def test_the_qrs_amplitude_floor_is_below_every_mitdb_window(mitdb_dir):
    """The floor (0.02 mV) sits under the smallest QRS of the records here: 101's lead V1,
    nearly isoelectric (a median QRS of 0.1 mV), keeps every block above it."""
    from vitaledge.device.io.records import read_record

    rec = read_record(mitdb_records(mitdb_dir, ["101"])[0], lead="V1")
    _, blocks = record_quality(rec.signal[:int(600 * rec.fs)], rec.fs, chunk=3600)
    amps = [b.qrs_mv for b in blocks if b.qrs_mv is not None]
    assert len(amps) >= 0.9 * len(blocks) and 0.02 < min(amps) < 0.2
    assert not [b for b in blocks if b.reason == "low_amplitude"]


def test_the_ma_noise_record_alone_is_all_flagged(data_dir):
    """The NST muscle-artifact record alone (no ECG): every block is flagged and no beat
    comes out unflagged. Its electrode-motion spikes keep kSQI above 5 in much of it, so
    part is judged doubtful (beats flagged) rather than unreadable (beats dropped)."""
    from vitaledge.device.io.records import read_record

    ma = data_dir / "nstdb-noise" / "ma"
    if not ma.with_suffix(".hea").exists():
        unavailable(f"{ma}: NST noise record not found")
    x = read_record(ma).signal[: int(120 * FS)]
    pipe = BeatPipeline(FakeModel(), FS)
    events = pipe.process(x) + pipe.flush()
    beats = [e for e in events if e["type"] == "beat"]
    q = pipe.quality_summary()
    assert q["good_s"] == 0 and q["unreadable_s"] > 0
    assert all(e.get("quality") == DOUBTFUL for e in beats)
    assert q["gated_beats"] > 0
    assert any(e.get("status") == UNREADABLE for e in events)


def test_twins_make_a_block_good_only_where_the_detectors_agree_or_beats_repeat():
    """In pure muscle noise the detector's few beats of a block can each have a look-alike
    among the window's (twin >= 0.8) while the two detectors disagree and the window's
    beats do not repeat: that block was judged good (6 of the NST ``ma`` record's 12 first
    minutes held 24 s of such blocks)."""
    from vitaledge.device.dsp.signal_quality_index import QualitySpec, judge

    spec = QualitySpec()
    assert judge(0.2, 8.0, 120.0, 8.0, spec, ssqi=0.0, twin=0.85)[0] == DOUBTFUL
    assert judge(0.6, 8.0, 120.0, 8.0, spec, ssqi=0.0, twin=0.85)[0] == GOOD
    assert judge(0.2, 8.0, 120.0, 8.0, spec, ssqi=0.55, twin=0.85)[0] == GOOD
    assert judge(0.2, 4.0, 120.0, 8.0, spec, ssqi=0.0, twin=0.85)[0] == UNREADABLE


@pytest.mark.slow
def test_the_ma_noise_record_has_no_good_stretch_in_its_first_ten_minutes(data_dir):
    from vitaledge.device.io.records import read_record

    ma = data_dir / "nstdb-noise" / "ma"
    if not ma.with_suffix(".hea").exists():
        unavailable(f"{ma}: NST noise record not found")
    x = read_record(ma).signal
    for start in range(0, 600, 120):
        pipe = BeatPipeline(FakeModel(), FS)
        events = pipe.process(x[int(start * FS): int((start + 120) * FS)]) + pipe.flush()
        assert pipe.quality_summary()["good_s"] == 0, start
        assert all(e.get("quality") == DOUBTFUL for e in events if e["type"] == "beat")


@pytest.mark.parametrize("chunk", [1, 7, 360, 10_000])
def test_gated_events_are_chunk_invariant(noisy118, chunk):
    x = noisy118[int(40 * FS): int(100 * FS)] if chunk == 1 else noisy118
    whole = run_record(FakeModel(), x, FS)
    assert run_record(FakeModel(), x, FS, chunk=chunk) == whole
    kinds = {(e["type"], e.get("status"), e.get("quality")) for e in whole}
    assert ("beat", None, None) in kinds


def test_gating_flags_and_counts_beats_and_good_beats_keep_their_json(noisy118):
    gated = run_record(FakeModel(), noisy118, FS)
    plain = run_record(FakeModel(), noisy118, FS, gating=False)
    beats = [e for e in gated if e["type"] == "beat"]
    assert any(e.get("quality") == DOUBTFUL for e in beats)
    good = [e for e in beats if "quality" not in e]
    by_sample = {e["sample"]: e for e in plain if e["type"] == "beat"}
    # a good beat's event is exactly the ungated one (same keys, same values)
    assert good and all(by_sample[e["sample"]] == e for e in good)
    unread = [e for e in gated if e.get("status") == UNREADABLE]
    for e in unread:
        assert not [b for b in beats if e["start_sample"] <= b["sample"] < e["end_sample"]]
    pipe = BeatPipeline(FakeModel(), FS)
    pipe.process(noisy118)
    pipe.flush()
    q = pipe.quality_summary()
    assert q["flagged_beats"] == sum(e.get("quality") == DOUBTFUL for e in beats)
    assert q["gated_beats"] > 0 and q["unreadable_s"] > 0
    assert abs(q["good_s"] + q["doubtful_s"] + q["unreadable_s"] - len(noisy118) / FS) < 0.1


def test_a_stream_ending_or_broken_inside_a_block_is_judged_to_its_end(noisy118):
    """The last, partial block is judged on what there is of it, also right after a hole
    (the daemon's stop and gap flush the stage at any sample)."""
    for n in (int(22.5 * FS), int(23.9 * FS) + 7):
        pipe = BeatPipeline(FakeModel(), FS)
        pipe.process(noisy118[:n])
        pipe.flush()
        q = pipe.quality_summary()
        assert abs(q["good_s"] + q["doubtful_s"] + q["unreadable_s"] - n / FS) < 0.1
    pipe = BeatPipeline(FakeModel(), FS)
    events = pipe.process(noisy118[: int(30.3 * FS)]) + pipe.gap(int(5 * FS))
    events += pipe.process(noisy118[int(35.3 * FS): int(70 * FS)]) + pipe.flush()
    assert [e for e in events if e["type"] == "beat"]
    q = pipe.quality_summary()
    assert abs(q["good_s"] + q["doubtful_s"] + q["unreadable_s"] - 65.0) < 0.1


def test_gating_is_set_before_the_stream_only():
    pipe = BeatPipeline(FakeModel(), FS)
    pipe.set_gating(False)
    assert pipe.gating is False and pipe.quality_summary()["gating"] is False
    pipe.process(np.zeros(100))
    with pytest.raises(SignalError, match="^gating can only be set before the stream starts$"):
        pipe.set_gating(True)
    assert pipe.gating is False


def test_score_reports_outside_the_flagged_stretches(noisy118, tmp_path, mitdb_dir):
    """``device score``'s gated figures on events written as the daemon writes them."""
    import json

    from vitaledge.device.eval.score_events import (
        format_gated,
        load_events,
        quality_segments,
        score_events,
        score_gated,
    )

    events = run_record(FakeModel(), noisy118, FS)
    path = tmp_path / "ev.jsonl"
    path.write_text("".join(json.dumps({**e, "seq": i + 1, "run": "r1"}) + "\n"
                            for i, e in enumerate(events)))
    segs = quality_segments(path)
    assert segs and all(s["status"] in (DOUBTFUL, UNREADABLE) for s in segs)
    # a record of the same 3 minutes with 118's annotations
    import wfdb

    ann = wfdb.rdann(str(mitdb_dir / "118"), "atr", sampto=len(noisy118))
    wfdb.wrsamp("n118", fs=FS, units=["mV"], sig_name=["MLII"], p_signal=noisy118[:, None],
                fmt=["16"], write_dir=str(tmp_path))
    wfdb.wrann("n118", "atr", ann.sample, symbol=ann.symbol, write_dir=str(tmp_path))
    g = score_gated(load_events(path), segs, tmp_path / "n118")
    assert 0.15 < g["flagged_fraction"] < 0.5
    plain = score_events(load_events(path), tmp_path / "n118")
    assert g["outside_flagged"]["sensitivity"] > 0.97
    assert g["outside_flagged"]["ppv"] > max(0.98, plain["ppv"])
    assert format_gated(g).startswith(
        f"signal quality: {100 * g['flagged_fraction']:.1f}% of the record flagged")


def test_score_says_no_figure_for_0_of_0_and_leaves_out_the_quality_line_of_an_ungated_run(
        tmp_path, mitdb_dir):
    """A run whose every beat was flagged printed "outside it: Se 0.00%, +P 0.00%" (0 of
    0 is no figure); a run without quality fields printed a quality line all the same."""
    import json

    from conftest import invoke

    from vitaledge.device.eval.score_events import format_gated

    g = {"flagged_fraction": 1.0, "unreadable_fraction": 1.0, "doubtful_fraction": 0.0,
         "doubtful_beats": 0, "outside_flagged": {"tp": 0, "fn": 0, "fp": 0,
                                                  "sensitivity": 0.0, "ppv": 0.0}}
    assert format_gated(g).endswith("outside it: Se -, +P - (0 missed, 0 extra)")
    g = {"flagged_fraction": 0.3, "unreadable_fraction": 0.2, "doubtful_fraction": 0.1,
         "doubtful_beats": 2, "outside_flagged": {"tp": 98, "fn": 2, "fp": 1,
                                                  "sensitivity": 0.98, "ppv": 98 / 99}}
    assert format_gated(g) == (
        "signal quality: 30.0% of the record flagged (20.0% unreadable, no beats; 10.0% "
        "doubtful, 2 beats flagged); outside it: Se 98.00%, +P 98.99% (2 missed, 1 extra)")
    import wfdb

    ann = wfdb.rdann(str(mitdb_dir / "100"), "atr", sampto=3600)
    beats = [int(x) for x, sym in zip(ann.sample, ann.symbol, strict=True) if sym == "N"]
    rows = [{"type": "beat", "sample": x, "time": x / 360, "class": "N", "seq": i + 1,
             "run": "r"} for i, x in enumerate(beats)]
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = invoke(["device", "score", plain, "--record", mitdb_dir / "100"])
    assert res.exit_code == 0 and "signal quality" not in res.output, res.output
    gated = tmp_path / "gated.jsonl"  # as the daemon marks a doubtful beat (the others
    # carry no quality field)
    gated.write_text("".join(json.dumps({**r, "quality": "doubtful"} if i == 3 else r) + "\n"
                             for i, r in enumerate(rows)))
    res = invoke(["device", "score", gated, "--record", mitdb_dir / "100"])
    assert res.exit_code == 0 and "signal quality: 0.0% of the record flagged" in res.output



def test_shape_consistency_counts_beats_with_a_twin():
    from vitaledge.device.dsp.signal_quality_index import shape_consistency

    rng = np.random.default_rng(3)
    t = np.arange(-21, 22)
    qrs = np.exp(-(t / 6.0) ** 2)              # a narrow N complex
    pvc = -np.exp(-(t / 14.0) ** 2) + 0.3 * t / 21  # a wide one of another shape
    x = 0.01 * rng.normal(size=8 * 360)
    peaks = np.arange(100, 8 * 360 - 100, 270)
    for i, p in enumerate(peaks):
        x[p - 21:p + 22] += qrs if i % 2 == 0 else pvc  # bigeminy: every beat has its twins
    assert shape_consistency(x, peaks, 21) == 1.0
    # the same window with false beats in noise between them: they match nothing
    noise = x + 0.0
    fake = peaks[:-1] + 120
    noise[fake[0] - 60:fake[-1] + 60] += 0.5 * rng.normal(size=fake[-1] - fake[0] + 120)
    s = shape_consistency(noise, np.sort(np.concatenate([peaks, fake])), 21)
    assert s < 0.6
    assert shape_consistency(x, peaks[:1], 21) == 0.0  # fewer than two beats
    assert shape_consistency(x, np.array([5, 8 * 360 - 5]), 21) == 0.0  # too near the ends


def test_consistent_beats_keep_a_block_readable_when_the_detectors_disagree():
    from vitaledge.device.dsp.signal_quality_index import QualitySpec, judge

    spec = QualitySpec()
    # MIT-BIH 108's blocks: bSQI 0.17, kSQI 3.75, the primary's beats consistent (sSQI 0.9)
    assert judge(0.17, 3.75, 70, 8.0, spec, ssqi=0.9) == (GOOD, "")
    assert judge(0.17, 3.75, 70, 8.0, spec, ssqi=0.3) == (UNREADABLE, "noise")
    assert judge(0.17, 3.75, 70, 8.0, spec, ssqi=0.62)[0] == DOUBTFUL
    # detectors agree but the beats do not repeat their shape: beats invented in noise
    assert judge(0.9, 8.0, 70, 8.0, spec, ssqi=0.4) == (DOUBTFUL, "inconsistent_beats")
    # a doubtful window, but every beat of the block itself has a twin: the block is good
    assert judge(0.3, 6.0, 70, 8.0, spec, ssqi=0.5, twin=0.85) == (GOOD, "")
    assert judge(0.3, 6.0, 70, 8.0, spec, ssqi=0.5, twin=0.5)[0] == DOUBTFUL
    assert judge(0.2, 4.0, 70, 8.0, spec, ssqi=0.3, twin=0.9) == (UNREADABLE, "noise")


def test_in_the_learning_period_agreement_does_not_keep_noise_readable():
    """Both detectors take the largest peaks of their first two seconds, so there bSQI
    says nothing: kSQI and sSQI decide alone. Consistent beats or a spiky signal still keep
    a learning block out of ``unreadable``."""
    from vitaledge.device.dsp.signal_quality_index import QualitySpec, judge

    spec = QualitySpec()
    assert judge(0.5, 2.9, 120, 2.0, spec, ssqi=0.0)[0] == DOUBTFUL
    assert judge(0.5, 2.9, 120, 2.0, spec, ssqi=0.0, learning=True) == (UNREADABLE, "noise")
    assert judge(0.5, 2.9, 120, 2.0, spec, ssqi=0.9, learning=True)[0] == GOOD
    assert judge(0.5, 8.0, 120, 2.0, spec, ssqi=0.0, learning=True)[0] == DOUBTFUL


def test_mitdb_108_is_not_judged_unreadable(mitdb_dir):
    """Before the shape criterion 12 % of 108 (large P/T waves fool the second detector)
    was unreadable, its beats lost although the primary detector found 99.7 % of them."""
    from vitaledge.device.io.records import read_record

    rec = read_record(mitdb_records(mitdb_dir, ["108"])[0])
    _, blocks = record_quality(rec.signal, rec.fs, chunk=3600)
    assert flagged_fraction(blocks, (UNREADABLE,)) < 0.005
    assert max(b.ssqi for b in blocks) > 0.8
