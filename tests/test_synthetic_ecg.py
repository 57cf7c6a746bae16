"""The synthetic ECG generator: reproducible, readable as WFDB, and each beat class has
the timing and morphology it is meant to have.

Morphology is measured on the generated signal with the helpers below (an independent
check), never read from the generator's internals.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy.signal import butter, filtfilt, iirnotch, medfilt, sosfiltfilt

from vitaledge.device.io.aami import CLASSES, SYMBOL_TO_CLASS
from vitaledge.device.io.records import read_record
from vitaledge.firmware_sim.patients.ecg import (
    DEFAULT_MIX,
    SynthRecord,
    synth_database,
    synth_record,
    write_wfdb,
)

FS = 360.0


@pytest.fixture(scope="module")
def clean() -> SynthRecord:
    return synth_record(5.0, seed=11, noise=False)


@pytest.fixture(scope="module")
def noisy() -> SynthRecord:
    return synth_record(5.0, seed=11)


def classes_of(rec: SynthRecord) -> np.ndarray:
    return np.array([SYMBOL_TO_CLASS[s] for s in rec.beat_symbols])


def ms(n: float, fs: float = FS) -> int:
    return int(round(n * fs / 1000.0))


def despiked(x: np.ndarray) -> np.ndarray:
    """MLII with one-sample pacing spikes removed (5-sample median), for QRS measures."""
    return medfilt(x, 5)


def baseline(x: np.ndarray, r: int, fs: float = FS) -> float:
    """Isoelectric level near a beat: median of the flattest 30% of the 2 s around it."""
    seg = x[max(0, r - ms(1000, fs)): r + ms(1000, fs)]
    slope = np.abs(np.gradient(seg))
    return float(np.median(seg[slope <= np.percentile(slope, 30)]))


def qrs_width_ms(x: np.ndarray, r: int, fs: float = FS, frac: float = 0.1,
                 max_gap_ms: float = 15.0) -> float:
    """Span around R where |dx/dt| exceeds ``frac`` of the beat's steepest slope.

    The QRS is the fast part of a beat; P and T are slow. Sub-threshold gaps shorter than
    ``max_gap_ms`` (a turning point inside the QRS) are bridged; a longer one ends it.
    """
    d = np.abs(np.gradient(x))
    above = d > frac * d[r - ms(150, fs): r + ms(150, fs)].max()
    gap = ms(max_gap_ms, fs)
    bounds = []
    for step in (-1, 1):
        i = last = r
        while 0 <= i + step < len(x) and abs(i + step - last) <= gap:
            i += step
            if above[i]:
                last = i
        bounds.append(last)
    return (bounds[1] - bounds[0] + 1) / fs * 1000.0


def local_sinus_rr(samples: np.ndarray, cls: np.ndarray, i: int, k: int = 10) -> float:
    """Median RR between consecutive N beats near beat i (at least 5 such intervals)."""
    while True:
        lo, hi = max(1, i - k), min(len(samples), i + k + 1)
        rr = [samples[j] - samples[j - 1] for j in range(lo, hi) if cls[j] == cls[j - 1] == "N"]
        if len(rr) >= 5 or (lo == 1 and hi == len(samples)):
            return float(np.median(rr))
        k *= 2


def sinus_after_r(x: np.ndarray, samples: np.ndarray, cls: np.ndarray,
                  fs: float = FS) -> np.ndarray:
    """Median sinus waveform from R to R + 450 ms (the T wave), from N beats between N beats."""
    n = ms(450, fs)
    segs = [x[s: s + n] for j, s in enumerate(samples[1:-1], start=1)
            if cls[j - 1] == cls[j] == cls[j + 1] == "N"]
    return np.median(np.stack(segs), axis=0)


def p_wave_mv(x: np.ndarray, samples: np.ndarray, i: int, t_template: np.ndarray,
              fs: float = FS) -> float:
    """Peak |x - baseline| 120-250 ms before R of beat i.

    A premature beat's window overlaps the previous beat's T wave, so the measured
    median sinus T (``t_template``, aligned on the previous R) is subtracted first; that
    matches best when the previous beat is itself a sinus beat after a sinus beat.
    """
    r, prev = samples[i], samples[i - 1]
    y = x - baseline(x, r, fs)
    end = min(len(y), prev + len(t_template))
    y[prev:end] -= t_template[: end - prev]
    return float(np.max(np.abs(y[r - ms(250, fs): r - ms(120, fs)])))


def max_slope(x: np.ndarray, lo: int, hi: int) -> float:
    return float(np.max(np.abs(np.diff(x[lo:hi]))))


def test_same_seed_same_record_other_seed_differs():
    a = synth_record(1.0, seed=3)
    b = synth_record(1.0, seed=3)
    c = synth_record(1.0, seed=4)
    assert np.array_equal(a.signal, b.signal)
    assert np.array_equal(a.beat_samples, b.beat_samples)
    assert a.beat_symbols == b.beat_symbols
    assert a.signal.shape != c.signal.shape or not np.allclose(a.signal, c.signal)
    assert not np.array_equal(a.beat_samples[:20], c.beat_samples[:20])


def test_record_layout(noisy):
    assert noisy.fs == FS
    assert noisy.signal.shape == (int(5 * 60 * FS), 2)
    assert noisy.signal.dtype == np.float64
    assert noisy.sig_names == ["MLII", "V1"]
    assert noisy.beat_samples.dtype == np.int64
    assert len(noisy.beat_samples) == len(noisy.beat_symbols)
    assert np.all(np.diff(noisy.beat_samples) > ms(300))
    assert set(noisy.beat_symbols) <= {"N", "A", "V", "F", "/"}
    assert noisy.beat_samples[0] >= 0.5 * FS
    assert noisy.beat_samples[-1] <= len(noisy.signal) - 0.5 * FS
    rr = np.diff(noisy.beat_samples) / FS
    assert 0.55 < np.median(rr) < 1.15


def test_noise_off_keeps_beats_and_noise_is_ecg_like(clean, noisy):
    assert np.array_equal(clean.beat_samples, noisy.beat_samples)
    assert clean.beat_symbols == noisy.beat_symbols
    resid = noisy.signal[:, 0] - clean.signal[:, 0]
    assert 0.01 < resid.std() < 0.3
    spec = np.abs(np.fft.rfft(resid)) ** 2
    f = np.fft.rfftfreq(len(resid), 1 / FS)
    band = lambda lo, hi: spec[(f >= lo) & (f < hi)].sum()  # noqa: E731
    assert band(0.01, 1.0) > band(1.0, 20.0)  # baseline wander dominates at low f
    assert spec[np.abs(f - 60.0) < 0.1].max() > 100 * np.median(spec[(f > 50) & (f < 59)])
    assert band(20.0, 55.0) > 0  # muscle noise
    b, a = iirnotch(60.0, 30.0, FS)
    hf = sosfiltfilt(butter(4, 15.0, "highpass", fs=FS, output="sos"), filtfilt(b, a, resid))
    win = ms(1000)
    emg = np.array([hf[i:i + win].std() for i in range(0, len(hf) - win, win)])
    assert emg.max() > 2.0 * np.median(emg)  # muscle noise comes in bursts


def test_heart_rate_varies(clean):
    cls = classes_of(clean)
    s = clean.beat_samples
    rr = np.array([s[j] - s[j - 1] for j in range(1, len(s)) if cls[j] == cls[j - 1] == "N"])
    cv = rr.std() / rr.mean()
    assert 0.01 < cv < 0.1


def test_annotation_is_largest_qrs_deflection(clean):
    x = clean.signal[:, 0]
    for r in clean.beat_samples:
        b = baseline(x, r)
        lo = r - ms(60)
        peak = lo + int(np.argmax(np.abs(x[lo: r + ms(60)] - b)))
        assert abs(peak - r) <= 1


@pytest.mark.parametrize("fs", [250.0, 500.0])
def test_other_sample_rates_same_beats(fs):
    ref = synth_record(1.0, seed=5, noise=False)
    rec = synth_record(1.0, seed=5, fs=fs, noise=False)
    assert rec.signal.shape == (int(60 * fs), 2)
    assert rec.beat_symbols == ref.beat_symbols
    np.testing.assert_allclose(rec.beat_samples / fs, ref.beat_samples / FS,
                               atol=1.0 / fs + 1.0 / FS)
    assert rec.beat_samples[0] >= 0.5 * fs


def test_qrs_width_by_class(clean):
    x = despiked(clean.signal[:, 0])
    cls = classes_of(clean)
    widths = {c: np.array([qrs_width_ms(x, r) for r, k in zip(clean.beat_samples, cls, strict=True)
                           if k == c]) for c in CLASSES}
    assert widths["N"].max() < 110 and widths["S"].max() < 110
    assert widths["V"].min() > 120 and widths["Q"].min() > 120
    assert 125 < np.median(widths["V"]) < 200
    assert np.median(widths["N"]) < np.median(widths["F"]) < np.median(widths["V"])


def test_prematurity_and_pauses(clean):
    s, cls = clean.beat_samples, classes_of(clean)
    ratio = {c: [] for c in CLASSES}
    pause = {"S": [], "V": []}
    for i in range(1, len(s) - 1):
        if cls[i - 1] != "N":
            continue
        rr = local_sinus_rr(s, cls, i)
        ratio[cls[i]].append((s[i] - s[i - 1]) / rr)
        if cls[i] in pause and cls[i + 1] == "N":
            pause[cls[i]].append((s[i + 1] - s[i - 1]) / (2 * rr))
    n, sv, v = np.array(ratio["N"]), np.array(ratio["S"]), np.array(ratio["V"])
    assert abs(np.median(n) - 1.0) < 0.03 and n.min() > 0.85 and n.max() < 1.15
    assert len(sv) > 5 and sv.max() < 0.8 and sv.min() > 0.5
    assert len(v) > 5 and v.max() < 0.8 and v.min() > 0.45
    assert np.array(ratio["F"]).min() > 0.85
    comp_v, comp_s = np.array(pause["V"]), np.array(pause["S"])
    # V: RR before + after spans two sinus cycles; S resets the sinus node, so it is shorter
    assert np.all(np.abs(comp_v - 1.0) < 0.1) and abs(np.median(comp_v) - 1.0) < 0.03
    assert np.percentile(comp_s, 90) < 0.97 and np.median(comp_s) < 0.93


def test_paced_beats_regular_and_in_runs(clean):
    s, cls = clean.beat_samples, classes_of(clean)
    q = cls == "Q"
    edges = np.flatnonzero(np.diff(np.r_[0, q.astype(int), 0])).reshape(-1, 2)
    runs = edges[:, 1] - edges[:, 0]
    assert q.sum() >= 10 and runs.min() >= 3
    rr = np.array([s[j] - s[j - 1] for j in range(1, len(s)) if cls[j] == cls[j - 1] == "Q"])
    assert rr.max() - rr.min() <= 2


def test_p_wave_present_for_sinus_absent_for_ventricular(clean):
    x, s, cls = clean.signal[:, 0], clean.beat_samples, classes_of(clean)
    tmpl = sinus_after_r(x, s, cls)
    p = {c: np.array([p_wave_mv(x, s, i, tmpl) for i in range(2, len(s))
                      if cls[i] == c and cls[i - 1] == cls[i - 2] == "N"]) for c in ("N", "V")}
    assert len(p["V"]) >= 5
    assert np.percentile(p["N"], 5) > 0.08
    assert np.percentile(p["V"], 90) < 0.5 * np.percentile(p["N"], 5)
    assert np.median(p["V"]) < 0.3 * np.median(p["N"])


def test_ventricular_t_wave_is_discordant(clean):
    x, s, cls = despiked(clean.signal[:, 0]), clean.beat_samples, classes_of(clean)
    for i, r in enumerate(s[:-1]):
        if cls[i] not in ("V", "Q"):
            continue
        b = baseline(x, r)
        qrs = x[r - ms(80): r + ms(80)] - b
        main = qrs[np.argmax(np.abs(qrs))]
        t_seg = x[r + ms(150): min(r + ms(400), s[i + 1] - ms(250))] - b
        t_peak = t_seg[np.argmax(np.abs(t_seg))]
        assert np.sign(t_peak) == -np.sign(main) and abs(t_peak) > 0.15


def test_pacing_spike_before_paced_qrs_only(clean):
    x, s, cls = clean.signal[:, 0], clean.beat_samples, classes_of(clean)
    xd = despiked(x)
    for r, c in zip(s, cls, strict=True):
        pre = max_slope(x, r - ms(130), r - ms(40))
        qrs = max_slope(xd, r - ms(40), r + ms(100))
        if c == "Q":
            assert pre > 5 * qrs
            seg = np.abs(x[r - ms(130): r - ms(40)] - baseline(x, r))
            assert seg.max() > 0.4  # tall
            assert np.sum(seg > seg.max() / 2) <= 2  # narrow: at most two samples (5.6 ms)
        else:
            assert pre < qrs


def test_fusion_is_between_normal_and_ventricular(clean):
    x, s, cls = clean.signal[:, 0], clean.beat_samples, classes_of(clean)

    def mean_beat(c: str) -> np.ndarray:
        segs = [x[r - ms(100): r + ms(150)] for r, k in zip(s, cls, strict=True) if k == c]
        return np.mean(segs, axis=0)

    n, v, f = mean_beat("N"), mean_beat("V"), mean_beat("F")
    w = float(np.dot(f - n, v - n) / np.dot(v - n, v - n))
    assert 0.3 < w < 0.7
    assert np.linalg.norm(f - (n + w * (v - n))) < 0.35 * np.linalg.norm(v - n)


def test_class_mix_follows_mix(noisy):
    counts = Counter(classes_of(noisy))
    total = sum(counts.values())
    assert set(counts) == set(CLASSES)
    for c in CLASSES:
        assert abs(counts[c] / total - DEFAULT_MIX[c]) < 0.06, (c, counts)
    rec = synth_record(10.0, seed=2, mix={"N": 0.8, "V": 0.2}, noise=False)
    counts = Counter(classes_of(rec))
    assert set(counts) == {"N", "V"}
    assert abs(counts["V"] / sum(counts.values()) - 0.2) < 0.04
    with pytest.raises(ValueError):
        synth_record(1.0, seed=0, mix={"X": 1.0})


def test_wfdb_round_trip(tmp_path, noisy):
    import wfdb

    path = write_wfdb(noisy, tmp_path)
    assert path == tmp_path / "s000"
    for ext in (".hea", ".dat", ".atr"):
        assert path.with_suffix(ext).is_file()
    hdr = wfdb.rdheader(str(path))
    assert hdr.fmt == ["212", "212"] and hdr.adc_gain == [200.0, 200.0]
    assert hdr.baseline == [1024, 1024] and hdr.units == ["mV", "mV"]
    rec = read_record(path)
    assert rec.lead == "MLII" and rec.fs == FS
    assert rec.ann_symbols == noisy.beat_symbols
    assert np.array_equal(rec.ann_samples, noisy.beat_samples)
    clipped = (noisy.signal[:, 0] < -5.12) | (noisy.signal[:, 0] > 5.115)
    assert not clipped.any()
    np.testing.assert_allclose(rec.signal, noisy.signal[:, 0], atol=0.5 / 200 + 1e-9)
    v1 = read_record(path, lead="V1")
    np.testing.assert_allclose(v1.signal, noisy.signal[:, 1], atol=0.5 / 200 + 1e-9)


def test_wfdb_clips_to_11_bits(tmp_path):
    rec = synth_record(0.1, seed=1, noise=False, name="clip")
    rec.signal[10, 0], rec.signal[11, 0] = 9.0, -9.0
    back = read_record(write_wfdb(rec, tmp_path))
    assert back.signal[10] == pytest.approx((2047 - 1024) / 200)
    assert back.signal[11] == pytest.approx(-1024 / 200)


def test_synth_database(tmp_path):
    paths = synth_database(tmp_path / "db", n_records=2, minutes=2, seed=7)
    assert [p.name for p in paths] == ["s000", "s001"]
    seen, rr = set(), []
    for p in paths:
        for ext in (".hea", ".dat", ".atr"):
            assert p.with_suffix(ext).is_file()
        rec = read_record(p)
        assert rec.lead == "MLII" and rec.duration_s == pytest.approx(120.0)
        seen |= {SYMBOL_TO_CLASS[s] for s in rec.ann_symbols}
        rr.append(np.median(np.diff(rec.ann_samples)))
    assert seen == set(CLASSES)
    assert rr[0] != rr[1]
    again = synth_database(tmp_path / "db2", n_records=2, minutes=2, seed=7)
    assert read_record(again[1]).signal.tolist() == read_record(paths[1]).signal.tolist()
