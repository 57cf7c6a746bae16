"""RR-interval features: causal, the same for a whole record and for a stream."""

import numpy as np
import pytest

from vitaledge.device.dsp.rpeaks import RPeakDetector, detect_rpeaks
from vitaledge.device.dsp.rr import FEATURES, RRFeatures, RRSpec, rr_features

FS = 360.0


def test_a_premature_beat_is_early_and_followed_by_a_pause():
    t = np.arange(0, 60, 0.8)  # 75 /min
    t = np.sort(np.r_[t[:40], t[40] - 0.3, t[41:]])  # one beat 0.3 s early (it replaces t[40])
    peaks = np.round(t * FS).astype(int)
    f = rr_features(peaks, FS)
    assert f.shape == (len(peaks), len(FEATURES))
    i = 40
    pre, post, local, long, pre_rel, post_rel, local_rel, irregular = f[i]
    assert pre == pytest.approx(0.5, abs=1e-3) and post == pytest.approx(1.1, abs=1e-3)
    assert local == pytest.approx(0.8, abs=1e-3) and long == pytest.approx(0.8, abs=1e-3)
    assert pre_rel == pytest.approx(0.625, abs=1e-3) and post_rel == pytest.approx(1.375, 1e-3)
    assert f[10, 4] == pytest.approx(1.0, abs=1e-3)  # an ordinary beat
    # the early beat and its pause are in the history of the beats after it, and the median
    # successive difference ignores them (a mean of the differences would not)
    irr = f[:, FEATURES.index("irregularity")]
    assert irregular == 0.0 and (irr[42:60] == 0.0).all()


def test_means_look_only_backwards():
    peaks = np.round(np.arange(0, 100, 0.8) * FS).astype(int)
    a = rr_features(peaks, FS)
    faster = peaks.copy()
    faster[60:] = peaks[60] + ((peaks[60:] - peaks[60]) * 0.5).astype(int)
    b = rr_features(faster, FS)
    # beats up to 58 have the same past and the same next peak: identical features
    np.testing.assert_array_equal(a[:59], b[:59])
    assert not np.array_equal(a[60:], b[60:])


def test_long_term_mean_forgets_after_its_window():
    spec = RRSpec(long_s=10.0)
    t = np.r_[np.arange(0, 30, 1.0), 30 + np.arange(0, 30, 0.5)]
    f = rr_features(np.round(t * FS).astype(int), FS, spec)
    assert f[-1, 3] == pytest.approx(0.5, abs=1e-3)  # only the fast beats remain
    assert f[29, 3] == pytest.approx(1.0, abs=1e-3)


def test_intervals_are_clipped_and_the_first_beat_is_defined():
    peaks = np.array([100, 100 + int(0.05 * FS), 100 + int(5 * FS), 100 + int(5.8 * FS)])
    f = rr_features(peaks, FS)
    assert np.isfinite(f).all()
    assert f[:, :4].min() >= 0.2 - 1e-6 and f[:, :4].max() <= 2.5 + 1e-6
    assert f[0, 0] == f[0, 1]  # no predecessor: pre-RR is its post-RR


def test_a_gap_never_makes_an_interval_across_it():
    f = RRFeatures(FS)
    out = []
    for r in np.round(np.arange(0, 20, 0.8) * FS).astype(int):
        out += f.push(int(r))
    out += f.gap(5.0)
    r_before = out[-1][0]
    after = []
    for r in np.round((30 + np.arange(0, 5, 0.8)) * FS).astype(int):
        after += f.push(int(r))
    after += f.flush()
    assert out[-1][1][1] == pytest.approx(0.8, abs=1e-3)  # post-RR of the last beat: the local mean
    assert after[0][0] > r_before and after[0][1][0] == pytest.approx(0.8, abs=1e-3)
    assert all(feat[:4].max() < 1.0 for _, feat in out + after)


@pytest.mark.parametrize("chunk", [1, 7, 360, 10_000])
def test_stream_equals_batch_on_a_simulated_patient(chunk):
    from vitaledge.firmware_sim.patients.ecg import synth_record

    s = synth_record(minutes=2.0, seed=3)
    x = s.signal[:, 0]
    batch = rr_features(detect_rpeaks(x, s.fs), s.fs)
    det, rr = RPeakDetector(s.fs), RRFeatures(s.fs)
    rows = []
    for i in range(0, len(x), chunk):
        for r in det.process(x[i:i + chunk]):
            rows += rr.push(r)
    for r in det.flush():
        rows += rr.push(r)
    rows += rr.flush()
    stream = np.stack([v for _, v in rows])
    assert len(stream) > 100
    np.testing.assert_array_equal(stream, batch)


def test_spec_round_trips_and_refuses_what_the_device_cannot_compute():
    spec = RRSpec(local_beats=8, long_s=120.0)
    assert RRSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="rr.features"):
        RRSpec.from_dict({**spec.to_dict(), "features": ["pre_rr"]})
    with pytest.raises(ValueError, match="rr.local_beats"):
        RRSpec(local_beats=0)


def test_training_beats_can_come_from_the_detector(synth_dir):
    from vitaledge.device.dsp.windows import WindowSpec
    from vitaledge.device.eval.scoring import score_detections
    from vitaledge.device.io.aami import map_annotations
    from vitaledge.device.io.beats import beats_from_record
    from vitaledge.device.io.records import read_record

    rec = read_record(synth_dir / "s001")
    spec = WindowSpec.kachuee()
    ann = beats_from_record(rec, spec, "annotated", RRSpec())
    det = beats_from_record(rec, spec, "detected", RRSpec())
    peaks = detect_rpeaks(rec.signal, rec.fs)
    ref, labels = map_annotations(rec.ann_samples, rec.ann_symbols)
    s = score_detections(ref, peaks, rec.fs)
    # every matched detection is a training beat (bar the windows cut off at the ends),
    # anchored where the detector put it, labelled with its reference beat's class
    assert s.tp - 2 <= len(det) <= s.tp
    assert set(det.sample) <= set(peaks)
    assert det.description["unmatched_detections"] == s.fp
    near = np.abs(det.sample[:, None] - ref[None, :]).argmin(axis=1)
    np.testing.assert_array_equal(det.y, labels[near])
    assert det.rr.shape == (len(det), len(FEATURES)) and ann.rr.shape == (len(ann), 8)
    # the RR features are those of the detected peak sequence
    full = rr_features(peaks, rec.fs)
    np.testing.assert_array_equal(det.rr, full[np.searchsorted(peaks, det.sample)])
    with pytest.raises(ValueError, match="anchor"):
        beats_from_record(rec, spec, "guessed")


def test_irregularity_is_high_in_an_irregular_rhythm_and_low_around_premature_beats():
    rng = np.random.default_rng(3)
    steady = np.arange(0, 120, 0.8)
    # sinus rhythm with an atrial premature beat every 8th beat (early, then a pause)
    ectopic = steady.copy()
    ectopic[8::8] -= 0.3
    # atrial fibrillation: every interval drawn anew
    af = np.cumsum(rng.uniform(0.45, 1.15, 150))
    col = FEATURES.index("irregularity")
    irr = {name: rr_features(np.round(t * FS).astype(int), FS)[:, col]
           for name, t in (("steady", steady), ("ectopic", ectopic), ("af", af))}
    assert irr["steady"].max() < 0.01
    assert np.median(irr["ectopic"][20:]) < 0.05
    assert np.median(irr["af"][20:]) > 0.2
    assert (irr["af"][:6] == 0).all()  # too little history: regular until shown otherwise


def test_a_model_of_seven_rr_features_gets_seven():
    old = RRSpec.from_dict({"features": list(FEATURES[:7]), "local_beats": 10,
                            "long_s": 300.0, "min_rr_s": 0.2, "max_rr_s": 2.5})
    peaks = np.round(np.arange(0, 30, 0.8) * FS).astype(int)
    f7, f8 = rr_features(peaks, FS, old), rr_features(peaks, FS)
    assert f7.shape[1] == 7 and f8.shape[1] == 8
    np.testing.assert_array_equal(f7, f8[:, :7])
    assert RRSpec.from_dict(RRSpec().to_dict()) == RRSpec()
    with pytest.raises(ValueError, match="features"):
        RRSpec.from_dict({"features": ["pre_rr", "irregularity"]})
    with pytest.raises(ValueError, match="irregular_beats"):
        RRSpec(irregular_beats=2)
