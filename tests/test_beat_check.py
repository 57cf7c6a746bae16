"""The learned beat check (device/dsp/beat_check.py), its network (device/dsp/qrs_net.py) and
its training (train/qrs_check.py)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FakeModel, error_line, invoke, mitdb_records, unavailable

from vitaledge.device.dsp.beat_check import (
    ADD_AT,
    ADD_MIN_S,
    LATE_S,
    MIN_FS,
    PAUSE_S,
    BeatCheck,
    check_beats,
    detect_beats,
)
from vitaledge.device.dsp.matching import TOLERANCE_S, match_beats
from vitaledge.device.dsp.qrs_net import (
    WEIGHTS,
    NetInput,
    NetProbability,
    QrsNet,
    QrsNetError,
    net_probabilities,
    shared_net,
)
from vitaledge.device.dsp.rpeaks import RPeakDetector, detect_rpeaks
from vitaledge.device.io.aami import map_annotations
from vitaledge.device.io.nst import build_nst
from vitaledge.device.io.records import read_record


@pytest.fixture(scope="module")
def noise_dir(data_dir):
    d = data_dir / "nstdb-noise"
    if not (d / "ma.hea").exists() or not (d / "bw.hea").exists():
        unavailable(f"nstdb-noise records ma and bw not found in {d}")
    return d


def _counts(ref, det, fs):
    ri, _ = match_beats(ref, det, int(round(TOLERANCE_S * fs)))
    return len(ri), len(det) - len(ri)  # true, false


def test_the_numpy_network_equals_the_keras_one():
    from vitaledge.train.backend import keras
    from vitaledge.train.qrs_check import network, to_qrs_net

    keras.utils.set_random_seed(3)
    model = network()
    rng = np.random.default_rng(3)
    for ly in model.layers:  # batch norm with statistics of its own, not the identity
        if isinstance(ly, keras.layers.BatchNormalization):
            g, b, m, v = ly.get_weights()
            ly.set_weights([rng.uniform(0.5, 2, g.shape), rng.normal(0, 0.3, b.shape),
                            rng.normal(0, 0.3, m.shape), rng.uniform(0.5, 2, v.shape)])
    w = rng.normal(size=600)
    z = ((w - w.mean()) / (w.std() + 1e-6)).astype(np.float32)
    want = model.predict(z[None, :, None], verbose=0)[0, :, 0]
    got = to_qrs_net(model)(w)
    assert got.shape == (600,)
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_the_input_stage_and_the_probability_are_the_same_for_any_chunking(mitdb_dir):
    (path,) = mitdb_records(mitdb_dir, ["119"])
    x = read_record(path).signal[: 360 * 40]
    whole = net_probabilities(x, 360.0)
    assert len(whole) == len(NetInput(360.0).process(x))  # one probability per input sample
    for size in (1, 37, 360, 5000):
        pr = NetProbability(360.0, shared_net())
        parts = [pr.process(x[i:i + size]) for i in range(0, len(x), size)] + [pr.flush()]
        np.testing.assert_allclose(np.concatenate(parts), whole, rtol=0, atol=1e-9)


def test_at_360_hz_the_input_is_every_third_filtered_sample():
    from vitaledge.device.dsp.filters import apply_filter
    from vitaledge.device.dsp.qrs_net import BAND

    x = np.random.default_rng(0).normal(size=3601)
    got = NetInput(360.0).process(x)
    np.testing.assert_allclose(got, apply_filter(x, 360.0, BAND)[::3][: len(got)], atol=1e-12)
    assert len(got) == 1200  # sample 3600 (k = 1200) waits for its right-hand neighbour


def test_the_check_drops_false_beats_in_muscle_noise_and_keeps_the_true_ones(mitdb_dir,
                                                                            noise_dir):
    """119 with the NST ma record at 6 dB (data nst --seed 7): a DS1 record, one of the
    network's training patients (its noise channel was not: data nst adds channel 0, the
    network was trained on channel 1)."""
    (path,) = mitdb_records(mitdb_dir, ["119"])
    made = build_nst(path, noise_dir / "ma", 6.0, seed=7)
    x = made.signal[:, 0]
    ref, _ = map_annotations(made.ann.sample, made.ann.symbol)
    det = detect_rpeaks(x, 360.0)
    kept = check_beats(x, 360.0, det, add_at=0)  # the veto alone
    true0, false0 = _counts(ref, det, 360.0)
    true1, false1 = _counts(ref, kept, 360.0)
    assert false0 >= 40  # the detector's false beats the check is for
    assert false1 <= false0 / 2
    assert true0 - true1 <= (false0 - false1) / 5
    # the same through the streaming form, in 1-s chunks
    bc = BeatCheck(360.0, add_at=0)
    streamed = []
    for i in range(0, len(x), 360):
        streamed += bc.process(x[i:i + 360], [int(r) for r in det if i <= r < i + 360])
    streamed += bc.flush([])
    np.testing.assert_array_equal(streamed, kept)
    assert bc.dropped == len(det) - len(kept) and bc.added == 0


def test_the_networks_peaks_fill_the_detectors_gaps_in_muscle_noise(mitdb_dir, noise_dir):
    """119 with ma at 0 dB (data nst --seed 7): the peaks the check adds where the detector
    left a gap are mostly true beats, and streamed with the detector's own lateness the
    beats are the batch form's, in order, for any chunking."""
    (path,) = mitdb_records(mitdb_dir, ["119"])
    made = build_nst(path, noise_dir / "ma", 0.0, seed=7)
    x = made.signal[:, 0]
    ref, _ = map_annotations(made.ann.sample, made.ann.symbol)
    det = detect_rpeaks(x, 360.0)
    vetoed = check_beats(x, 360.0, det, add_at=0)
    given = check_beats(x, 360.0, det)
    added = np.setdiff1d(given, vetoed)
    assert len(given) == len(vetoed) + len(added) and len(added) >= 20
    true0, false0 = _counts(ref, vetoed, 360.0)
    true1, false1 = _counts(ref, given, 360.0)
    assert true1 - true0 >= 0.75 * len(added)  # three in four added beats are true
    assert false1 - false0 <= 0.25 * len(added)
    for chunk in (97, 1000):
        detector, bc, streamed = RPeakDetector(360.0), BeatCheck(360.0), []
        for i in range(0, len(x), chunk):
            streamed += bc.process(x[i:i + chunk], detector.process(x[i:i + chunk]))
        streamed += bc.flush(detector.flush())
        np.testing.assert_array_equal(streamed, given)
        assert bc.added == len(added) and bc.late == 0


def test_a_missed_beat_is_found_again_but_a_pause_is_not_filled(mitdb_dir):
    """100 (DS2, a patient the network never saw), clean: with single beats taken out of
    the detector's output the check puts them back, where they were; with three in a row
    taken out (a gap longer than PAUSE_S) it adds nothing: a pause stays a pause."""
    (path,) = mitdb_records(mitdb_dir, ["100"])
    rec = read_record(path)
    x = rec.signal[: int(180 * rec.fs)]
    det = detect_rpeaks(x, rec.fs)
    singles = [i for i in range(20, len(det) - 40, 25)
               if det[i + 1] - det[i - 1] < PAUSE_S * rec.fs][:4]
    run = [len(det) - 30, len(det) - 29, len(det) - 28]
    assert len(singles) == 4 and det[run[-1] + 1] - det[run[0] - 1] > PAUSE_S * rec.fs
    given = check_beats(x, rec.fs, np.delete(det, singles + run))
    for i in singles:
        assert np.abs(given - det[i]).min() <= 0.02 * rec.fs  # back, within 20 ms
    inside = given[(given > det[run[0] - 1]) & (given < det[run[-1] + 1])]
    assert len(inside) == 0


def test_a_beat_reported_later_than_late_s_is_not_given_twice(mitdb_dir):
    """100: one detection reported 6 s late (more than LATE_S), after the check has added
    the network's peak in its gap: given once, and counted, so that detections - dropped
    + added - late = beats given."""
    (path,) = mitdb_records(mitdb_dir, ["100"])
    rec = read_record(path)
    fs, x = rec.fs, rec.signal[: int(120 * rec.fs)]
    det = detect_rpeaks(x, fs)
    missing, delay = int(det[60]), int((LATE_S + 2) * fs)
    bc, given, sent = BeatCheck(fs), [], False
    for i in range(0, len(x), 360):
        new = [int(b) for b in det if i <= b < i + 360 and b != missing]
        if not sent and i + 360 - delay > missing:
            new, sent = new + [missing], True
        given += bc.process(x[i:i + 360], new)
    given += bc.flush([])
    near = [b for b in given if abs(b - missing) < ADD_MIN_S * fs]
    assert len(near) == 1 and bc.added >= 1 and bc.late >= 1
    assert len(given) == len(det) - bc.dropped + bc.added - bc.late


def test_no_beat_is_added_to_a_flat_line():
    """A lead off (a flat signal): no probability peak, nothing added, so the daemon's
    no-beats watch still sees the pause."""
    bc = BeatCheck(360.0)
    assert bc.process(np.zeros(360 * 30), []) + bc.flush([]) == []
    assert bc.added == 0


def test_clean_records_lose_no_beat(mitdb_dir):
    """100 (DS2: a patient the network never saw) and 208 (PVCs, fusion beats)."""
    for path in mitdb_records(mitdb_dir, ["100", "208"]):
        rec = read_record(path)
        det = detect_rpeaks(rec.signal, rec.fs)
        kept = detect_beats(rec.signal, rec.fs)
        assert len(det) - len(kept) <= 2, path.name


def test_below_its_rate_the_check_keeps_every_beat():
    bc = BeatCheck(MIN_FS - 1)
    assert not bc.on
    assert bc.process(np.zeros(100), [5, 50]) == [5, 50]
    assert bc.flush([90]) == [90]
    assert bc.decided(100) == 100


@pytest.mark.parametrize("add_at, late_s", [(0.0, 10.0), (ADD_AT, LATE_S - 0.5)])
def test_a_beat_reported_late_is_decided_as_one_reported_on_time(mitdb_dir, noise_dir,
                                                                  add_at, late_s):
    """The detector reports a beat up to seconds after it (search-back, relearning): the
    check keeps the probabilities for that, and decides a late beat as an early one; with
    peaks added, beats up to LATE_S late are waited for."""
    (path,) = mitdb_records(mitdb_dir, ["119"])
    x = build_nst(path, noise_dir / "ma", 0.0, seed=7).signal[: 360 * 600, 0]
    det = detect_rpeaks(x, 360.0)
    on_time = check_beats(x, 360.0, det, add_at=add_at)
    assert 0 < len(on_time) and len(np.intersect1d(on_time, det)) < len(det)  # some dropped
    bc = BeatCheck(360.0, add_at=add_at)
    late, fed, chunk, delay = [], 0, 360, int(360 * late_s)
    for i in range(0, len(x), chunk):
        due = int(np.searchsorted(det, i + chunk - delay))
        late += bc.process(x[i:i + chunk], det[fed:due].tolist())
        fed = due
    late += bc.flush(det[fed:].tolist())
    np.testing.assert_array_equal(late, on_time)


def test_a_beat_reported_after_its_probabilities_were_let_go_is_kept():
    """No probability held any more (more than LOOK_BACK_S late): kept, not a crash."""
    fs = 360.0
    x = np.random.default_rng(0).normal(0, 0.01, int(90 * fs))
    bc = BeatCheck(fs, add_at=0)
    bc.process(x, [])
    assert bc.process(np.zeros(10), [int(5 * fs)]) == [int(5 * fs)]
    assert bc.dropped == 0


@pytest.mark.parametrize("damage", ["text", "truncated", "flipped"])
def test_corrupt_weights_are_one_line(tmp_path, damage):
    good = WEIGHTS.read_bytes()
    body = {"text": b"not a zip", "truncated": good[: len(good) // 2],
            "flipped": good[:2000] + bytes([good[2000] ^ 0xFF]) + good[2001:]}[damage]
    bad = tmp_path / "w.npz"
    bad.write_bytes(body)
    with pytest.raises(QrsNetError, match="w.npz: not the beat check's weights"):
        QrsNet.load(bad)
    np.savez(tmp_path / "nan.npz", n_layers=np.array(1), w0=np.full((1, 1, 1), np.nan),
             b0=np.zeros(1), d0=np.array(1))
    with pytest.raises(QrsNetError, match="non-finite weights"):
        QrsNet.load(tmp_path / "nan.npz")


def test_the_shipped_weights_load_and_name_their_recipe():
    net = shared_net()
    assert [ly.dilation for ly in net.layers] == [1, 2, 4, 8, 16, 32, 1]
    with np.load(WEIGHTS) as z:
        meta = str(z["meta"])
    assert meta.startswith("vitaledge train qrs-check --records 101,106,108")
    assert "232" not in meta and "100" not in meta  # no test patient


def test_train_qrs_check_writes_weights_the_device_loads(mitdb_dir, noise_dir, tmp_path):
    mitdb_records(mitdb_dir, ["101", "106"])
    out = tmp_path / "w.npz"
    r = invoke(["train", "qrs-check", "--data", str(mitdb_dir), "--records", "101,106",
                "--noise", str(noise_dir), "--epochs", "1", "--crops", "128",
                "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "2 records: 101, 106" in r.output
    net = QrsNet.load(out)
    assert net.leads == ("MLII",)
    p = net(np.random.default_rng(1).normal(size=600))
    assert p.shape == (600,) and ((p > 0) & (p < 1)).all()
    again = invoke(["train", "qrs-check", "--data", str(mitdb_dir), "--records", "101,106",
                    "--noise", str(noise_dir), "--epochs", "1", "--crops", "128",
                    "--out", str(out)])
    assert "exists; pass --overwrite" in error_line(again)
    missing = invoke(["train", "qrs-check", "--data", str(mitdb_dir), "--records", "101,999",
                      "--noise", str(noise_dir), "--epochs", "1", "--out",
                      str(tmp_path / "x.npz")])
    assert "999" in error_line(missing)
    assert not (tmp_path / "x.npz").exists()
    (tmp_path / "empty").mkdir()
    no_noise = invoke(["train", "qrs-check", "--data", str(mitdb_dir), "--records", "101",
                       "--noise", str(tmp_path / "empty"), "--out", str(tmp_path / "y.npz")])
    assert "no noise record 'ma'" in error_line(no_noise)
    (tmp_path / "file").write_text("")
    blocked = invoke(["train", "qrs-check", "--data", str(mitdb_dir), "--records", "101",
                      "--noise", str(noise_dir), "--out", str(tmp_path / "file" / "z.npz")])
    assert "--out" in error_line(blocked)


def test_training_reads_the_leads_asked_for_each_where_the_record_has_it(mitdb_dir,
                                                                         tmp_path, noise_dir):
    from vitaledge.device.io.records import RecordError
    from vitaledge.train.qrs_check import load_records

    paths = mitdb_records(mitdb_dir, ["101", "114"])   # 101: MLII, V1; 114: V5, MLII
    mlii = load_records(paths)
    every = load_records(paths, None)
    assert len(mlii) == 2 and len(every) == 4
    # the MLII entries are the same however they are asked for; 114's MLII is its 2nd lead
    np.testing.assert_array_equal(every[0][0], mlii[0][0])
    np.testing.assert_array_equal(every[3][0], mlii[1][0])
    # both leads of a record carry the same reference beats, on their own signal
    np.testing.assert_array_equal(every[0][1], every[1][1])
    assert not np.array_equal(every[0][0], every[1][0]) and every[0][2] != every[1][2]
    assert len(load_records(paths, ("V1", "V5"))) == 2
    with pytest.raises(RecordError, match=r"114: none of the leads V1 \(leads: V5, MLII\)"):
        load_records(paths, ("V1",))
    r = invoke(["train", "qrs-check", "--data", str(mitdb_dir), "--records", "101,114",
                "--noise", str(noise_dir), "--leads", "V1", "--epochs", "1", "--crops", "128",
                "--out", str(tmp_path / "w.npz")])
    assert "none of the leads V1" in error_line(r) and r.exit_code != 0
    assert not (tmp_path / "w.npz").exists()
    r = invoke(["train", "qrs-check", "--data", str(mitdb_dir), "--records", "101,114",
                "--noise", str(noise_dir), "--leads", "all", "--epochs", "1", "--crops", "128",
                "--out", str(tmp_path / "w.npz")])
    assert r.exit_code == 0, r.output
    assert QrsNet.load(tmp_path / "w.npz").leads == ("MLII", "V1", "V5")  # the leads it read


def test_weights_name_their_leads_and_older_weights_were_trained_on_mlii(tmp_path):
    net = shared_net()
    assert net.leads == ("MLII",)
    QrsNet(net.layers, ("MLII", "V1")).save(tmp_path / "two.npz", "m")
    assert QrsNet.load(tmp_path / "two.npz").leads == ("MLII", "V1")
    with np.load(WEIGHTS) as z:   # a file written before weights named their leads
        old = {k: z[k] for k in z.files if k != "leads"}
    np.savez(tmp_path / "old.npz", **old)
    assert QrsNet.load(tmp_path / "old.npz").leads == ("MLII",)
    for bad in (np.array("MLII"), np.array([b"MLII"]), np.array([], dtype="<U4")):
        np.savez(tmp_path / "bad.npz", **old, leads=bad)
        with pytest.raises(QrsNetError, match=r"bad\.npz: 'leads' must list the lead names"):
            QrsNet.load(tmp_path / "bad.npz")
    with pytest.raises(QrsNetError, match="leads"):
        QrsNet(net.layers, ())


def test_the_pipeline_counts_what_the_check_drops_and_the_summary_says_it(mitdb_dir,
                                                                          noise_dir):
    from vitaledge.device.stream.pipeline import BeatPipeline
    from vitaledge.device.stream.report import format_summary

    (path,) = mitdb_records(mitdb_dir, ["119"])
    x = build_nst(path, noise_dir / "ma", 6.0, seed=7).signal[:, 0]
    det = detect_rpeaks(x, 360.0)
    bc = BeatCheck(360.0)
    given = bc.process(x, list(det)) + bc.flush([])
    dropped, added = bc.dropped, bc.added
    assert dropped >= 20 and added >= 1
    pipe = BeatPipeline(FakeModel(), 360.0, gating=False)
    events = []
    for i in range(0, len(x), 500):
        events += pipe.process(x[i:i + 500])
    events += pipe.flush()
    q = pipe.quality_summary()
    assert (q["checked_out_beats"], q["added_beats"]) == (dropped, added)
    beats = [e for e in events if e["type"] == "beat"]
    assert len(beats) + pipe.dropped_edge == len(given) == len(det) - dropped + added
    text = format_summary({"event": "stopped", "signal_quality": q,
                           "signal_seconds": len(x) / 360.0})
    assert (f"beat check: {dropped} detections dropped as noise, {added} beat"
            f"{'s' if added != 1 else ''} added where the detector had none") in text
    assert "none added on lead" not in text
    # told the signal is V1, which the shipped network never saw: it drops, it adds none
    v1 = BeatCheck(360.0, lead="V1")
    given_v1 = v1.process(x, list(det)) + v1.flush([])
    assert (v1.dropped, v1.added, v1.adds) == (dropped, 0, False)
    assert sorted(set(given) - set(given_v1)) and set(given_v1) <= set(given)
    np.testing.assert_array_equal(check_beats(x, 360.0, det, lead="V1"), given_v1)
