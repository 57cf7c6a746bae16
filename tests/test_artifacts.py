"""The R-peak detector recovers from impulse artifacts (electrode pops, motion spikes)."""

import numpy as np
import pytest
from conftest import mitdb_records

from vitaledge.device.dsp.rpeaks import RPeakDetector, detect_rpeaks
from vitaledge.device.eval.scoring import score_detections
from vitaledge.device.io.aami import map_annotations
from vitaledge.device.io.records import read_record

SPIKES_MV = [100.0, 300.0, 1000.0]


@pytest.fixture(scope="module")
def record_100(mitdb_dir):
    (path,) = mitdb_records(mitdb_dir, ["100"])
    rec = read_record(path)
    ref, _ = map_annotations(rec.ann_samples, rec.ann_symbols)
    return rec.signal, rec.fs, ref


def _with_spikes(x, fs, times_s, mv):
    y = np.array(x, dtype=np.float64, copy=True)
    for t in times_s:
        y[int(round(t * fs))] += mv
    return y


def _streamed(x, fs, chunk):
    det, out = RPeakDetector(fs), []
    for i in range(0, len(x), chunk):
        out += det.process(x[i:i + chunk])
    return out + det.flush()


def _recovery(ref, peaks, fs, at, span=60.0):
    """(seconds from the spike to the first correctly detected beat after it,
    sensitivity over the ``span`` s after the spike)."""
    i = int(round(at * fs))
    tol = int(round(0.15 * fs))
    late = ref[(ref > i + tol) & (ref < i + span * fs)]
    found = [r for r in late if np.any(np.abs(peaks - r) <= tol)]
    first = (found[0] - i) / fs if found else np.inf
    window = peaks[(peaks > i + tol) & (peaks < i + span * fs)]
    return first, score_detections(late, window, fs).sensitivity


@pytest.mark.parametrize("mv", SPIKES_MV)
def test_detector_recovers_after_one_spike_on_record_100(record_100, mv):
    x, fs, ref = record_100
    peaks = detect_rpeaks(_with_spikes(x, fs, [30.0], mv), fs)
    first, se = _recovery(ref, peaks, fs, 30.0)
    assert first <= 5.0, f"no beat found within 5 s after a {mv} mV spike"
    assert se >= 0.98, f"Se {se:.3f} over the 60 s after a {mv} mV spike"
    # and the record as a whole is not disturbed beyond the spike itself
    s = score_detections(ref, peaks, fs)
    assert s.sensitivity >= 0.99 and s.fp <= 2


@pytest.mark.parametrize("mv", SPIKES_MV)
def test_recovery_is_the_same_for_any_chunking(record_100, mv):
    x, fs, ref = record_100
    y = _with_spikes(x, fs, [30.0], mv)[: int(100 * fs)]
    whole = detect_rpeaks(y, fs).tolist()
    first, se = _recovery(ref[ref < len(y)], np.asarray(whole), fs, 30.0)
    assert first <= 5.0 and se >= 0.98
    for chunk in (1, 7, 360):
        assert _streamed(y, fs, chunk) == whole, f"chunk {chunk}"


def test_detector_relearns_after_a_spike_in_the_learning_period(record_100):
    """A spike in the first 2 s sets the start-up levels themselves; the detector must
    relearn from the beats instead of staying blind."""
    x, fs, ref = record_100
    y = _with_spikes(x, fs, [1.0], 300.0)[: int(90 * fs)]
    peaks = detect_rpeaks(y, fs)
    first, se = _recovery(ref[ref < len(y)], peaks, fs, 1.0)
    assert first <= 5.0 and se >= 0.95


def _synth(minutes=3.0, seed=5):
    from vitaledge.firmware_sim.patients.ecg import synth_record

    rec = synth_record(minutes, seed, mix={"N": 1.0})
    return rec.signal[:, 0], rec.fs, np.asarray(rec.beat_samples)


@pytest.mark.parametrize("mv", [-100.0, 300.0, 1000.0])
def test_synthetic_record_recovers_from_spikes_and_spike_trains(mv):
    x, fs, ref = _synth()
    clean = score_detections(ref, detect_rpeaks(x, fs), fs)
    assert clean.sensitivity > 0.99
    # one spike at 20 s, and a train of five spikes 0.4 s apart at 90 s (motion)
    y = _with_spikes(x, fs, [20.0] + [90.0 + 0.4 * k for k in range(5)], mv)
    peaks = detect_rpeaks(y, fs)
    for at, span in ((20.0, 60.0), (91.6, 60.0)):
        first, se = _recovery(ref, peaks, fs, at, span)
        assert first <= 5.0 and se >= 0.98, (at, first, se)
    assert _streamed(y, fs, 7) == peaks.tolist()


def test_a_pause_is_not_filled_with_noise_beats():
    """Relearning needs signal: 5 s of low noise without beats (a sinus pause) between
    normal beats gives no false beats in the pause, and beats are found after it."""
    x, fs, ref = _synth()
    a, b = int(40 * fs), int(45 * fs)
    y = x.copy()
    y[a:b] = np.random.default_rng(0).normal(0.0, 0.01, b - a)
    keep = (ref < a - int(0.1 * fs)) | (ref > b + int(0.1 * fs))
    peaks = detect_rpeaks(y, fs)
    in_pause = peaks[(peaks > a + int(0.2 * fs)) & (peaks < b - int(0.1 * fs))]
    assert len(in_pause) == 0, in_pause / fs
    s = score_detections(ref[keep], peaks, fs)
    assert s.sensitivity > 0.99


def test_resumed_detector_keeps_its_artifact_bounds():
    """After a hole the resumed detector (the pipeline's path) still recovers from a spike."""
    x, fs, ref = _synth()
    y = _with_spikes(x, fs, [50.0], 1000.0)
    hole = (int(30 * fs), int(33 * fs))
    det = RPeakDetector(fs)
    peaks = det.process(y[: hole[0]]) + det.flush()
    det = det.resumed()
    peaks += [hole[1] + p for p in det.process(y[hole[1]:]) + det.flush()]
    first, se = _recovery(ref, np.asarray(peaks), fs, 50.0)
    assert first <= 5.0 and se >= 0.98
