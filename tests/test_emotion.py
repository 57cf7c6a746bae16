"""Emotion models: seed-000 CNN-LSTM and the multimodal hybrid, their device preprocessing,
the data-set loaders and the synthetic data they learn from."""

from __future__ import annotations

import json
import pickle  # writes a WESAD-layout test file; only the loader's --trust-pickle reads it
import subprocess
import sys

import numpy as np
import pytest
from scipy.io import savemat

from vitaledge.device.dsp import hrv
from vitaledge.device.inputs import emotion_ecg
from vitaledge.device.inputs import multimodal as mm
from vitaledge.device.inputs.face import equalize, face_input, resize, to_gray
from vitaledge.firmware_sim.patients import emotion as se

FS = 128.0


# -- device: ECG emotion model input ----------------------------------------------------
def test_segments_follow_the_seed_rule():
    """Baseline = mean of the first 5 s, segment starts 7 s in, 48 x 1 s at 128 Hz, the
    last 2 s unused; a ramp makes every sample's origin checkable."""
    sig = emotion_ecg.default_signal(hop_s=1.0)
    x = np.arange(int(60 * FS), dtype=np.float64)
    baseline = x[:640].mean()
    segs = emotion_ecg.segments(x, FS, sig)
    # 60 s - 7 s - 2 s = 51 s: segments at 7, 8, 9, 10 s (each 48 s long)
    assert segs.shape == (4, 48, 128, 1) and segs.dtype == np.float32
    want = (x[896:896 + 6144] - baseline).astype(np.float32)
    np.testing.assert_array_equal(segs[0].ravel(), want)
    np.testing.assert_array_equal(segs[3].ravel()[:128], (x[896 + 384:896 + 512] - baseline))
    np.testing.assert_array_equal(emotion_ecg.model_input(x, FS, sig), segs[0])
    # without the end trim the stream form has two more
    assert len(emotion_ecg.segments(x, FS, sig, trim_end=False)) == 6


def test_short_trial_is_padded_or_refused():
    sig = emotion_ecg.default_signal()
    x = np.ones(int(50 * FS))  # 50 s: 41 s after the trims
    seg = emotion_ecg.model_input(x + np.arange(len(x)), FS, sig)
    flat = seg.ravel()
    n_real = int(41 * FS)
    assert np.all(flat[n_real:] == 0) and np.all(flat[:n_real] != 0)
    with pytest.raises(ValueError, match="too short"):
        emotion_ecg.model_input(x, FS, sig | {"pad_short": False})
    with pytest.raises(ValueError, match="unknown fields"):
        emotion_ecg.segments(x, FS, sig | {"typo": 1})
    with pytest.raises(ValueError, match="index 3"):
        emotion_ecg.segments(np.r_[x[:3], np.nan, x], FS, sig)


@pytest.mark.parametrize("fs_in", [128.0, 256.0, 700.0])
def test_stream_windower_equals_batch(fs_in):
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.standard_normal(int(71 * fs_in))) * 0.01 + 2.0
    sig = emotion_ecg.default_signal(hop_s=3.0, filter=None)
    want = emotion_ecg.segments(x, fs_in, sig, trim_end=False)
    assert len(want) == 6
    for chunk in (7, 1000, 100_000):
        w = emotion_ecg.EcgEmotionWindower(sig, fs_in)
        got = [s for i in range(0, len(x), chunk) for s in w.push(x[i:i + chunk])]
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)


def test_stream_with_filter_equals_batch():
    from vitaledge.device.dsp.filters import FilterSpec

    x = se.emotion_ecg(62, FS, se.QUADRANT_PROFILES["HV-HA"], se.draw_subject(2), 3)
    sig = emotion_ecg.default_signal(hop_s=2.0, filter=FilterSpec(0.5, 40.0, 2))
    want = emotion_ecg.segments(x, FS, sig, trim_end=False)
    w = emotion_ecg.EcgEmotionWindower(sig)
    got = [s for i in range(0, len(x), 333) for s in w.push(x[i:i + 333])]
    assert len(got) == len(want) == 4
    np.testing.assert_array_equal(np.stack(got), want)


# -- device: HRV, GSR, face -------------------------------------------------------------
def test_rr_features_on_known_intervals():
    rr = np.tile([0.8, 0.9], 20)
    f = hrv.rr_features(rr)
    assert f["mean_hr"] == pytest.approx(60 / 0.85)
    assert f["rmssd"] == pytest.approx(100.0)
    assert f["pnn50"] == pytest.approx(100.0)
    assert f["sdnn"] == pytest.approx(np.std(rr, ddof=1) * 1000)
    assert hrv.rr_features([0.8, 0.8])["mean_hr"] == 0.0  # too few to measure


def test_the_daemons_rhythm_summary_uses_the_hrv_definitions():
    """The daemon's rolling heart rate, SDNN and RMSSD (/health, the summary) are the HRV
    features' (Task Force definitions: sample SD, intervals outside a heart's range left
    out as detection errors). The summary took every interval and the population SD, so a
    4-s gap of missed beats and a 0.2-s invented beat gave 53.0 bpm for a heart beating at
    74. Its range is a monitor's, 20-250 bpm: a ventricular tachycardia at 222 bpm or a
    block at 27 is a rate to report, not an error (the HRV features' 0.3-2 s would drop
    them)."""
    from vitaledge.device.dsp.rhythm import RhythmStats

    rr = [0.8, 0.82, 0.79, 0.81, 4.0, 0.8, 0.2, 0.83]
    kept = np.array([0.8, 0.82, 0.79, 0.81, 0.8, 0.83])
    stats = RhythmStats(["N", "V"])
    for i, x in enumerate(rr):
        stats.add("V" if i == 6 else "N", x)
    s = stats.summary()
    assert s["beats"] == 8 and s["classes"] == {"N": 7, "V": 1}
    assert s["heart_rate_bpm"] == round(60 / kept.mean(), 1) == 74.2
    assert s["sdnn_ms"] == round(float(np.std(kept, ddof=1)) * 1000, 1)
    assert s["rmssd_ms"] == round(float(np.sqrt(np.mean(np.diff(kept) ** 2))) * 1000, 1)
    f = hrv.rr_features(np.array(rr))
    assert (s["sdnn_ms"], s["rmssd_ms"]) == (round(f["sdnn"], 1), round(f["rmssd"], 1))
    one = RhythmStats(["N"])
    one.add("N", 0.75)
    assert one.summary() == {"beats": 1, "classes": {"N": 1}, "heart_rate_bpm": 80.0}
    for rate, interval in ((222.2, 0.27), (27.3, 2.2)):
        extreme = RhythmStats(["V"])
        for _ in range(64):
            extreme.add("V", interval)
        assert extreme.summary()["heart_rate_bpm"] == rate
        assert hrv.rr_features(np.full(64, interval))["mean_hr"] == 0.0  # not an HRV input


def test_lf_hf_follows_the_modulation_band():
    def tachogram(f_mod: float) -> np.ndarray:
        rr, t = [], 0.0
        while t < 180:
            rr.append(0.8 + 0.05 * np.sin(2 * np.pi * f_mod * t))
            t += rr[-1]
        return np.asarray(rr)

    assert hrv.lf_hf(tachogram(0.1)) > 5.0   # LF band
    assert hrv.lf_hf(tachogram(0.25)) < 0.2  # HF band


def test_ecg_hrv_reads_class_dependent_heart_rate():
    subj = se.Subject(seed=5, hr_offset=0.0, scl=5.0, gsr_gain=1.0)
    lo = hrv.ecg_hrv(se.emotion_ecg(60, FS, se.QUADRANT_PROFILES["LV-LA"], subj, 1), FS)
    hi = hrv.ecg_hrv(se.emotion_ecg(60, FS, se.QUADRANT_PROFILES["LV-HA"], subj, 1), FS)
    assert abs(lo["mean_hr"] - 62) < 6 and abs(hi["mean_hr"] - 88) < 6
    assert hi["rmssd"] < lo["rmssd"]


def test_gsr_features_count_responses():
    t = np.arange(int(60 * FS)) / FS
    x = 5.0 + sum(0.5 * np.exp(-0.5 * ((t - c) / 1.0) ** 2) for c in (10, 25, 40))
    f = hrv.gsr_features(x, FS)
    assert f["scr_rate"] == pytest.approx(3.0)
    assert f["scr_amp"] == pytest.approx(0.5, abs=0.05)
    assert f["scl_mean"] == pytest.approx(x.mean())
    flat = hrv.gsr_features(np.full(600, 3.0), 10.0)
    assert flat["scr_rate"] == 0.0 and flat["scr_amp"] == 0.0


def test_the_multimodal_features_equal_scipys_without_loading_it():
    """hrv.py used scipy.signal (welch, butter/sosfilt, find_peaks): a daemon serving the
    multimodal model loaded it (about 76 MB resident). Its numpy replacements give scipy's
    numbers: the Welch density, the causal low-pass, the peaks and prominences (ties,
    flat tops and the distance rule included)."""
    from scipy import signal as sps

    from vitaledge.device.dsp.filters import FilterSpec, apply_filter
    from vitaledge.device.dsp.peaks import prominent_peaks
    from vitaledge.device.dsp.spectrum import welch

    rng = np.random.default_rng(7)
    for n in (1, 2, 7, 255, 256, 257, 1000):
        x = rng.normal(size=n).cumsum()
        f, p = sps.welch(x, fs=4.0, nperseg=min(n, 256), detrend="linear")
        g, q = welch(x, 4.0, 256)
        assert np.allclose(f, g) and np.allclose(p, q, rtol=1e-10, atol=1e-20)
    for trial in range(600):
        n = int(rng.integers(2, 300))
        x = rng.normal(size=n) if trial % 2 else np.round(rng.normal(size=n).cumsum(), 1)
        if trial % 3 == 0:
            x = np.repeat(x, 3)[:n]  # flat tops
        d, prom = int(rng.integers(1, 30)), float(rng.uniform(0, 2))
        want, props = sps.find_peaks(x, prominence=prom, distance=d)
        got, got_prom = prominent_peaks(x, prom, d)
        assert np.array_equal(got, want), (trial, got, want)
        assert np.allclose(got_prom, props["prominences"])
    for x in ([0, 2, 0, np.nan, 0, 1, 0], [0, 2, 1, 3, 1, np.nan]):  # a NaN ends a walk
        want, props = sps.find_peaks(x, prominence=0.5)
        got, got_prom = prominent_peaks(np.array(x), 0.5)
        assert np.array_equal(got, want) and np.allclose(got_prom, props["prominences"])
    for fs in (1.0, 16.0, 128.0):
        x = 3 + 0.01 * rng.normal(size=int(60 * fs)).cumsum()
        sos = sps.butter(2, min(1.0, 0.45 * fs), btype="lowpass", fs=fs, output="sos")
        want = sps.sosfilt(sos, x, zi=sps.sosfilt_zi(sos) * x[0])[0]
        got = apply_filter(x, fs, FilterSpec(low_hz=None, high_hz=min(1.0, 0.45 * fs)))
        assert np.max(np.abs(got - want)) < 1e-9
    code = ("import sys\nimport numpy as np\nfrom vitaledge.device.dsp import hrv\n"
            "import vitaledge.device.inputs.multimodal, vitaledge.device.stream.daemon\n"
            "t = np.arange(7680) / 128\n"
            "hrv.feature_vector(np.sin(2 * np.pi * 1.2 * t) ** 63, 5 + np.sin(t / 9), 128.0)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd="/")
    assert out.stdout.strip() == "[]", f"the multimodal path loads scipy: {out.stdout}"


def test_face_preprocessing():
    red = np.zeros((10, 10, 3), np.uint8)
    red[..., 0] = 255
    assert to_gray(red)[0, 0] == pytest.approx(0.299 * 255)
    checker = np.kron(np.indices((48, 48)).sum(0) % 2, np.ones((2, 2))) * 200.0
    np.testing.assert_allclose(resize(checker), np.kron(np.indices((48, 48)).sum(0) % 2, 1) * 200)
    low = np.random.default_rng(0).uniform(100, 120, (96, 80, 3)).astype(np.uint8)
    x = face_input(low)
    assert x.shape == (48, 48, 1) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0  # equalization stretches 100-120 to 0-255
    eq = equalize(np.repeat(np.arange(64.0), 64).reshape(64, 64))
    assert np.abs(np.diff(np.unique(eq))).std() < 1.0  # evenly spread levels
    with pytest.raises(ValueError, match="shape"):
        face_input(np.zeros((4, 4, 2)))


def test_synthetic_faces_differ_by_class():
    a = np.stack([face_input(se.synth_face("happy", s)) for s in range(8)]).mean(0)
    b = np.stack([face_input(se.synth_face("fear", s)) for s in range(8)]).mean(0)
    # mouth region: fear's open mouth is dark where a smile is not
    assert b[33:40, 20:28].mean() < a[33:40, 20:28].mean() - 0.1


# -- loaders ----------------------------------------------------------------------------
def _cell(items) -> np.ndarray:
    c = np.empty((1, len(items)), dtype=object)
    for i, it in enumerate(items):
        c[0, i] = it
    return c


def test_amigos_loader(tmp_path):
    rng = np.random.default_rng(0)

    def trial(marker: float) -> np.ndarray:
        x = rng.standard_normal((int(60 * FS), 17))
        x[:, 14] = marker  # ECG right arm, column 15 (1-based)
        return x

    nan_trial = trial(9.0)
    nan_trial[5, 14] = np.nan
    labels = [np.array([[7.0, 2.0] + [1] * 10]), np.array([[3.0, 8.0] + [1] * 10]),
              np.array([[5.0, 5.0] + [1] * 10])]
    savemat(tmp_path / "Data_Preprocessed_P01.mat",
            {"joined_data": _cell([trial(1.0), trial(2.0), nan_trial]),
             "labels_selfassessment": _cell(labels)})
    savemat(tmp_path / "Data_Preprocessed_P09.mat",  # excluded participant
            {"joined_data": _cell([trial(3.0)]), "labels_selfassessment": _cell(labels[:1])})
    from vitaledge.train.emotion_data import QUADRANTS, load_amigos

    ts = load_amigos(tmp_path)
    assert [t.trial for t in ts.trials] == ["P01-01", "P01-02"]
    # trial 1: arousal 7, valence 2 -> LV-HA; trial 2: arousal 3, valence 8 -> HV-LA
    assert [QUADRANTS[t.label] for t in ts.trials] == ["LV-HA", "HV-LA"]
    assert ts.trials[0].ecg[0] == 1.0 and ts.trials[1].ecg[0] == 2.0
    assert ts.skipped == {"excluded_participant": 1, "empty": 0, "nan": 1}
    savemat(tmp_path / "Data_Preprocessed_P02.mat", {"joined_data": _cell([trial(1.0)])})
    with pytest.raises(ValueError, match="P02.mat: missing variable 'labels_selfassessment'"):
        load_amigos(tmp_path)
    (tmp_path / "Data_Preprocessed_P02.mat").unlink()
    savemat(tmp_path / "Data_Preprocessed_P03.mat",  # one trial: loadmat squeezes the cell
            {"joined_data": _cell([trial(4.0)]), "labels_selfassessment": _cell(labels[2:])})
    ts = load_amigos(tmp_path)
    assert ts.trials[-1].trial == "P03-01" and ts.trials[-1].ecg[0] == 4.0
    assert QUADRANTS[ts.trials[-1].label] == "LV-LA"  # 5 is not above the threshold


def test_dreamer_loader(tmp_path):
    rng = np.random.default_rng(0)
    stim = [rng.standard_normal((int(70 * 256), 2)) for _ in range(3)]
    subj = {"ECG": {"baseline": _cell(stim).T, "stimuli": _cell(stim).T},
            "ScoreValence": np.array([[1], [4], [5]]), "ScoreArousal": np.array([[5], [2], [4]])}
    savemat(tmp_path / "DREAMER.mat",
            {"DREAMER": {"ECG_SamplingRate": 256, "Data": _cell([subj, subj])}})
    from vitaledge.train.emotion_data import QUADRANTS, load_dreamer

    ts = load_dreamer(tmp_path)
    assert len(ts.trials) == 6 and ts.trials[0].fs == 256.0
    assert [QUADRANTS[t.label] for t in ts.trials[:3]] == ["LV-HA", "HV-LA", "HV-HA"]
    np.testing.assert_array_equal(ts.trials[1].ecg, stim[1][:, 0])


def test_a_sampling_rate_or_label_that_is_no_number_is_named(tmp_path):
    """DREAMER's ECG_SamplingRate 'abc' said only "could not convert string to float", and
    a WESAD label holding NaN "cannot convert float NaN to integer": neither named the
    file or the field."""
    from vitaledge.train.emotion_data import load_dreamer, load_wesad

    stim = [np.zeros((int(70 * 256), 2))]
    subj = {"ECG": {"baseline": _cell(stim).T, "stimuli": _cell(stim).T},
            "ScoreValence": np.array([[1]]), "ScoreArousal": np.array([[5]])}
    savemat(tmp_path / "DREAMER.mat", {"DREAMER": {"ECG_SamplingRate": "abc",
                                                   "Data": _cell([subj])}})
    with pytest.raises(ValueError, match=r"DREAMER\.mat: DREAMER\.ECG_SamplingRate is not a "
                                         r"number: could not convert string to float"):
        load_dreamer(tmp_path)
    label = np.r_[np.zeros(700), np.ones(7000)]
    label[5] = np.nan
    (tmp_path / "S2").mkdir()
    with open(tmp_path / "S2" / "S2.pkl", "wb") as f:
        pickle.dump({"signal": {"chest": {"ECG": np.zeros((len(label), 1))}},
                     "label": label}, f)
    with pytest.raises(ValueError, match=r"S2\.pkl: label holds values that are not finite "
                                         r"numbers"):
        load_wesad(tmp_path, trust_pickle=True)


def test_wesad_loader_needs_trust(tmp_path):
    label = np.r_[np.zeros(700), np.ones(7000), np.full(7000, 2), np.zeros(100)].astype(int)
    ecg = np.arange(len(label), dtype=float).reshape(-1, 1)
    (tmp_path / "S2").mkdir()
    with open(tmp_path / "S2" / "S2.pkl", "wb") as f:
        pickle.dump({"signal": {"chest": {"ECG": ecg}}, "label": label, "subject": "S2"}, f)
    from vitaledge.train.emotion_data import QUADRANTS, load_wesad

    with pytest.raises(ValueError, match="--trust-pickle"):
        load_wesad(tmp_path)
    ts = load_wesad(tmp_path, trust_pickle=True)
    assert [QUADRANTS[t.label] for t in ts.trials] == ["LV-LA", "LV-HA"]
    assert ts.trials[0].ecg[0] == 700 and len(ts.trials[1].ecg) == 7000


def test_data_without_a_trial_and_trials_too_short_are_told_apart(tmp_path):
    """Both said "no trial is long enough for one model input", which sent one to --hop
    when the files held no condition period at all."""
    from conftest import error_line, invoke

    label = np.r_[np.zeros(7000), np.full(700, 6)].astype(int)  # transient and ignored only
    (tmp_path / "S3").mkdir()
    with open(tmp_path / "S3" / "S3.pkl", "wb") as f:
        pickle.dump({"signal": {"chest": {"ECG": np.zeros((len(label), 1))}},
                     "label": label}, f)
    line = error_line(invoke(["train", "emotion-ecg", "--dataset", "wesad", "--data", tmp_path,
                              "--trust-pickle", "--out", tmp_path / "run"]))
    assert f"Error: {tmp_path}: no wesad trial in it (WESAD keeps" in line, line

    from vitaledge.device.inputs.emotion_ecg import default_signal
    from vitaledge.train.emotion_data import ecg_segments, synth_quadrant_trials

    short = synth_quadrant_trials(n_subjects=1, trials_per_class=1, seconds=20.0)
    with pytest.raises(ValueError, match="none of the 4 trials is long enough"):
        ecg_segments(short, {**default_signal(), "pad_short": False})


def test_an_ecg_data_set_is_one_registry_entry(monkeypatch, tmp_path):
    """A new ECG emotion data set is one entry of ECG_DATASETS: load_trials dispatches to it
    and its default threshold reaches its loader (train emotion-ecg builds its choices and
    option refusals from the registry when it is imported: an entry added at run time, as
    here, is not offered there); AMIGOS and DREAMER keep their thresholds (5 and 3), and an
    option a data set does not read is refused naming those that do."""
    from conftest import error_line, invoke

    from vitaledge.train import emotion_datasets as eds
    from vitaledge.train.emotion_data import TrialSet
    from vitaledge.train.emotion_datasets import load_trials

    assert (eds.ECG_DATASETS["amigos"].threshold, eds.ECG_DATASETS["dreamer"].threshold) == (5, 3)
    assert eds.OPTION_READERS["threshold"] == ("amigos", "dreamer")
    seen = {}

    def toy(data, threshold, **_):
        seen.update(data=data, threshold=threshold)
        return TrialSet([], ["LV-LA"], {})

    monkeypatch.setitem(eds.ECG_DATASETS, "toy", eds.EcgDataset(toy, ("threshold",), 7.0))
    with pytest.raises(ValueError, match=f"{tmp_path}: no toy trial in it$"):
        load_trials("toy", str(tmp_path))
    assert seen == {"data": str(tmp_path), "threshold": 7.0}
    with pytest.raises(ValueError, match="unknown dataset 'nope'; expected amigos, dreamer, "
                                         "wesad, synth, toy"):
        load_trials("nope", str(tmp_path))
    line = error_line(invoke(["train", "emotion-ecg", "--dataset", "wesad", "--data", tmp_path,
                              "--threshold", "4", "--out", tmp_path / "r"]))
    assert "--threshold: is read by --dataset amigos or dreamer; with --dataset wesad" in line


# -- models -----------------------------------------------------------------------------
def test_seed_000_model_is_exact():
    from vitaledge.train import zoo

    m = zoo.get("cnnlstm_ecg", "emotion-ecg").build((48, 128, 1), 4)
    assert m.count_params() == 2_231_268
    assert m.input_names == ["ecg"] and m.input_shape == (None, 48, 128, 1)
    assert m.get_layer("time_distributed").count_params() == 1_632
    assert m.get_layer("lstm").count_params() == 2_163_200
    assert m.layers[-1].get_config()["activation"] == "softmax"


def test_emotion_ecg_trains_and_writes_the_run(tmp_path):
    from vitaledge.train.backend import keras
    from vitaledge.train.emotion import EmotionEcgConfig, train_emotion_ecg

    # the seed's layer stack at a quarter width learns the same synthetic cues fast
    cfg = EmotionEcgConfig(dataset="synth", arch="cnnlstm_ecg_small", synth_subjects=8,
                           synth_trials=2, synth_seconds=61, hop_s=4.0, folds=0,
                           test_fraction=0.25, epochs=12, batch_size=8, learning_rate=3e-3)
    m = train_emotion_ecg(cfg, tmp_path, verbose=0)
    assert m["n_test"] >= 30 and m["accuracy"] >= 0.6  # chance is 0.25
    assert m["cv"] is None
    conf = json.loads((tmp_path / "config.json").read_text())
    assert conf["task"] == "emotion-ecg" and conf["labels"] == list(se.QUADRANTS)
    data = np.load(tmp_path / "data.npz")
    assert set(data.files) == {"calib_ecg", "test_ecg", "test_y"}
    assert data["test_ecg"].dtype == np.float32 and data["test_y"].dtype == np.int64
    assert len(np.unique(data["test_y"])) == 4
    model = keras.models.load_model(str(tmp_path / "model.keras"))
    probs = model.predict(data["test_ecg"], verbose=0)
    assert (probs.argmax(1) == data["test_y"]).mean() == pytest.approx(m["accuracy"])
    # the config's signal drives the device windower to inputs the model takes
    x = se.emotion_ecg(60, FS, se.QUADRANT_PROFILES["LV-LA"], se.draw_subject(1), 2)
    seg = emotion_ecg.EcgEmotionWindower(conf["signal"]).push(x)
    assert len(seg) == 2 and model.predict(np.stack(seg), verbose=0).shape == (2, 4)
    for name in ("metrics.json", "history.csv", "training_history.png", "confusion_matrix.png"):
        assert (tmp_path / name).exists()
    _converts_and_runs_in_the_daemon(tmp_path, m["accuracy"], "ecg.csv",
                                     lambda p: np.savetxt(p, x_stream, fmt="%.5f"), fs=FS,
                                     n_events=int((120 - 55) // 4) + 1)


x_stream = se.emotion_ecg(120, FS, se.QUADRANT_PROFILES["HV-HA"], se.draw_subject(3), 5)


def _converts_and_runs_in_the_daemon(run, keras_accuracy, stream_name, write_stream, fs,
                                     n_events):
    """The trained run converts to fp32 (fused and unrolled), fp16, int8 and int8-fc, each
    verified against Keras; the deployed one runs in the daemon on a stream."""
    from vitaledge.convert.pipeline import FAIL, ConvertOptions, convert_run
    from vitaledge.device.stream.daemon import Daemon
    from vitaledge.device.stream.daemon_config import DaemonConfig

    art = run / "art"
    results = {r.variant: r for r in convert_run(run, art, ConvertOptions(
        targets=["cpu"], max_drop=100.0, fused_reference=False))}
    assert {"cpu-fp32", "cpu-fp16", "cpu-int8", "cpu-int8-fc"} <= set(results)
    assert all(r.status != FAIL for r in results.values()), {
        k: r.error for k, r in results.items()}
    for name in ("cpu-fp32", "cpu-fp16"):
        assert results[name].metrics["accuracy"] == pytest.approx(keras_accuracy, abs=0.02)
    stream = run / stream_name
    write_stream(stream)
    events_path = run / "events.jsonl"
    Daemon(DaemonConfig(model=str(art / "cpu-int8-fc"), source=f"replay:{stream}", fs=fs,
                        out=[str(events_path)])).run(install_signals=False)
    events = [json.loads(x) for x in events_path.read_text().splitlines()]
    assert [e["type"] for e in events] == ["emotion"] * n_events
    return events


def test_cross_validation_folds_never_split_a_trial():
    """Held-out test and k folds grouped by trial: each development input is scored once,
    no trial is on two sides, every class is in every fold."""
    from vitaledge.train.emotion import group_splits, split_test
    from vitaledge.train.emotion_data import Segments

    trial = np.repeat(np.arange(40), 5)
    y = trial % 4
    seg = Segments(np.zeros((200, 1)), y, trial, np.asarray([f"s{t // 8}" for t in trial]))
    dev, test = split_test(seg, "trial", 0.25, seed=0)
    assert 40 <= len(test) <= 60 and not set(trial[dev]) & set(trial[test])
    folds = group_splits(y[dev], trial[dev], 5, seed=0)
    assert sorted(np.concatenate([va for _, va in folds]).tolist()) == list(range(len(dev)))
    for tr, va in folds:
        assert not set(trial[dev][tr]) & set(trial[dev][va])
        assert set(y[dev][va]) == {0, 1, 2, 3}
    dev_s, test_s = split_test(seg, "subject", 0.25, seed=0)
    assert not set(seg.subject[dev_s]) & set(seg.subject[test_s])
    with pytest.raises(ValueError, match="10 folds need at least 10 groups"):
        group_splits(y[:20], trial[:20], 10, seed=0)


def test_emotion_multimodal_trains_and_writes_the_run(tmp_path):
    from vitaledge.train.emotion import MultimodalConfig, train_emotion_multimodal

    cfg = MultimodalConfig(synth_subjects=4, synth_per_class=8, epochs=20, patience=20,
                           window_s=20.0, baselines=False, seed=0)
    m = train_emotion_multimodal(cfg, tmp_path, verbose=0)
    assert m["accuracy"] >= 0.5  # chance is 0.2
    assert set(m["auc"]) == set(se.EMOTIONS) and np.mean(list(m["auc"].values())) > 0.75
    assert [r["inputs"] for r in m["comparison"]] == ["physio+features+face"]
    conf = json.loads((tmp_path / "config.json").read_text())
    sig = conf["signal"]
    mm.check_signal(sig)
    assert conf["labels"] == list(se.EMOTIONS) and min(sig["feature_std"]) > 0
    data = np.load(tmp_path / "data.npz")
    assert data["test_physio"].shape[1:] == (320, 2) and data["test_face"].shape[1:] == (48, 48, 1)
    assert data["test_features"].shape[1:] == (len(hrv.FEATURES),)
    assert len(data["test_y"]) == m["n_test"] and len(data["calib_face"]) == m["data"]["train"]
    # the device makes the same inputs from raw signals and the saved signal dict
    from vitaledge.train.emotion_data import synth_multimodal

    ms = synth_multimodal(sig, 1, 1, seed=0)
    got = mm.model_inputs(ms.ecg[0], ms.gsr[0], ms.fs, ms.faces[0], sig, ms.stats["s00"])
    assert got["physio"].shape == (320, 2) and got["features"].shape == (8,)
    assert (tmp_path / "roc_curves.png").exists() and (tmp_path / "comparison.md").exists()
    # converted and replayed through the daemon as a session (ECG + GSR + faces): windows of
    # 20 s every 5 s after the first calib_s = 60 s
    from vitaledge.device.io.sessions import write_session
    from vitaledge.firmware_sim.patients.emotion import synth_session

    sess = synth_session(["fear", "sad"], seconds_each=50.0, fs=FS, seed=2)
    _converts_and_runs_in_the_daemon(tmp_path, m["accuracy"], "session.npz",
                                     lambda p: write_session(p, sess), fs=None,
                                     n_events=int((100 - 60 - 20) // 5) + 1)


def test_multimodal_stream_equals_windows():
    sig = mm.default_signal(window_s=10.0, hop_s=4.0) | {"calib_s": 6.0}
    subj = se.draw_subject(3)
    prof = se.EMOTION_PROFILES["angry"]
    ecg = se.emotion_ecg(30, FS, prof, subj, 1)
    gsr = se.emotion_gsr(30, FS, prof, subj, 2)
    cal = int(6 * FS)
    stats = mm.subject_stats(ecg[:cal], gsr[:cal], FS, sig)
    starts = range(cal, len(ecg) - int(10 * FS) + 1, int(4 * FS))
    want = [mm.model_inputs(ecg[a:a + 1280], gsr[a:a + 1280], FS, None, sig, stats)
            for a in starts]
    assert len(want) == 4 and want[0]["physio"].shape == (160, 2)
    for chunk in (100, 5000):
        w = mm.MultimodalWindower(sig)
        got = [o for i in range(0, len(ecg), chunk)
               for o in w.push(ecg[i:i + chunk], gsr[i:i + chunk])]
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a["physio"], b["physio"])
            np.testing.assert_array_equal(a["features"], b["features"])
    # the calibration made the ECG channel zero-mean, unit-variance at rest
    assert abs(float(want[0]["physio"][:, 0].mean())) < 0.5


def test_dreamer_trials_with_a_nan_rating_are_skipped_and_counted(tmp_path):
    """A NaN valence or arousal score is no label: the trial is skipped and counted as
    "nan" (it was labelled low valence or arousal, since NaN is not above the threshold)."""
    rng = np.random.default_rng(0)
    stim = [rng.standard_normal((int(70 * 256), 2)) for _ in range(3)]
    subj = {"ECG": {"baseline": _cell(stim).T, "stimuli": _cell(stim).T},
            "ScoreValence": np.array([[1.0], [np.nan], [5.0]]),
            "ScoreArousal": np.array([[5.0], [2.0], [np.nan]])}
    savemat(tmp_path / "DREAMER.mat",
            {"DREAMER": {"ECG_SamplingRate": 256, "Data": _cell([subj, subj])}})
    from vitaledge.train.emotion_data import load_dreamer

    ts = load_dreamer(tmp_path)
    assert [t.trial for t in ts.trials] == ["S01-01", "S02-01"] and ts.skipped["nan"] == 4


def test_every_architecture_names_its_inputs_as_the_model_does():
    """The zoo's ``inputs`` are the Keras model's input names, in order: the emotion
    trainers read them (the multimodal data, the run's config) from the zoo, so an entry
    that said ("beat",) for a face CNN would feed it the wrong arrays."""
    import inspect

    from vitaledge.train import zoo

    shapes = {"beat": (187, 1), "rr": (4,), "template": (187, 1), "ecg": (48, 128, 1),
              "mel": (2, 64, 32, 1), "physio": (64, 2), "features": (8,),
              "face": (48, 48, 1)}
    for name, arch in zoo.ZOO.items():
        first = next(iter(inspect.signature(arch.build.__wrapped__).parameters))
        arg = ({k: shapes[k] for k in arch.inputs} if first == "input_shapes"
               else shapes[arch.inputs[0]])
        assert first == "input_shapes" or len(arch.inputs) == 1, name
        model = arch.build(arg, 3)
        assert [t.name.split(":")[0] for t in model.inputs] == list(arch.inputs), name
