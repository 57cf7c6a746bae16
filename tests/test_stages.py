"""Emotion inference on streams: the ECG emotion stage on sliding windows of the ECG stream
(beside the beat stage, in the daemon) and the speech stage on audio (wav replay, PCM)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from vitaledge.device.model.runtime import Model

pytestmark = pytest.mark.slow


def _convert_toy(tmp, name, task, labels, signal, build, x_shape):
    """A small untrained Keras model with the task's input shape, converted through
    ``vitaledge convert`` (unrolled fp32): the stages' plumbing does not need accuracy."""
    from vitaledge.convert.pipeline import ConvertOptions, convert_run
    from vitaledge.train.backend import keras

    run = tmp / name
    run.mkdir()
    model = build(keras)
    model.save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"task": task, "arch": "toy",
                                                 "labels": labels, "signal": signal}))
    rng = np.random.default_rng(0)
    shapes = x_shape if isinstance(x_shape, dict) else {model.input_names[0]: x_shape}
    arrays = {}
    for name, shape in shapes.items():
        X = rng.standard_normal((8, *shape)).astype(np.float32)
        arrays.update({f"calib_{name}": X, f"test_{name}": X})
    np.savez(run / "data.npz", **arrays, test_y=rng.integers(0, len(labels), 8))
    convert_run(run, tmp / f"{name}-art", ConvertOptions(targets=["cpu"], quant="none",
                                                         max_drop=100.0))
    return tmp / f"{name}-art" / "cpu-fp32"


@pytest.fixture(scope="module")
def ecg_emotion_art(tmp_path_factory):
    from vitaledge.device.inputs.emotion_ecg import default_signal

    def build(keras):
        L = keras.layers
        inp = L.Input((48, 128, 1), name="ecg")
        x = L.TimeDistributed(L.Conv1D(2, 5, activation="relu", padding="same"))(inp)
        x = L.LSTM(4)(L.Reshape((48, 256))(x))
        return keras.Model(inp, L.Dense(4, activation="softmax")(x))

    return _convert_toy(tmp_path_factory.mktemp("ee"), "ecg", "emotion-ecg",
                        ["LVLA", "LVHA", "HVLA", "HVHA"], default_signal(hop_s=10.0), build,
                        (48, 128, 1))


@pytest.fixture(scope="module")
def speech_art(tmp_path_factory):
    from vitaledge.device.inputs.mel import SpeechSignal

    sig = SpeechSignal()

    def build(keras):
        L = keras.layers
        inp = L.Input(sig.input_shape, name="mel")
        x = L.TimeDistributed(L.Conv2D(2, 3, activation="elu"))(inp)
        x = L.TimeDistributed(L.MaxPooling2D(8))(x)
        x = L.LSTM(4)(L.TimeDistributed(L.Flatten())(x))
        return keras.Model(inp, L.Dense(7, activation="softmax")(x))

    labels = ["neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    return _convert_toy(tmp_path_factory.mktemp("sp"), "speech", "emotion-speech", labels,
                        sig.to_dict(), build, sig.input_shape)


def test_ecg_emotion_stage_matches_batch_segments_for_any_chunking(ecg_emotion_art):
    from vitaledge.device.inputs.emotion_ecg import segments
    from vitaledge.device.stream.stages import EcgEmotionStage
    from vitaledge.firmware_sim.patients.ecg import synth_record

    model = Model(ecg_emotion_art)
    sig = model.manifest.signal
    ecg = synth_record(minutes=2.0, seed=4).signal[:, 0]  # lead 1, 360 Hz, 120 s
    segs = segments(ecg, 360.0, sig, trim_end=False)
    assert len(segs) == int((120 - 7 - 48) // 10) + 1 == 7
    want = model.predict(segs)
    runs = []
    for chunk in (997, len(ecg)):
        stage = EcgEmotionStage(model, 360.0)
        events = []
        for i in range(0, len(ecg), chunk):
            events += stage.process(ecg[i:i + chunk])
        events += stage.flush()
        runs.append(events)
    assert runs[0] == runs[1]
    events = runs[0]
    assert [e["type"] for e in events] == ["emotion"] * 7
    for k, e in enumerate(events):
        assert e["sample"] == round((7 + 10 * k + 48) * 360)  # end of segment k
        assert e["class"] == model.labels[int(want[k].argmax())]
        got = np.array([e["probabilities"][lab] for lab in model.labels])
        np.testing.assert_allclose(got, want[k], atol=1e-4)


def test_ecg_emotion_stage_refuses_other_models_and_bad_samples(ecg_emotion_art, converted):
    from vitaledge.device.stream.pipeline import SignalError
    from vitaledge.device.stream.stages import EcgEmotionStage, stage_for

    out, _ = converted
    with pytest.raises(SignalError, match="'beat' is not 'emotion-ecg'"):
        EcgEmotionStage(Model(out / "cpu-int8"), 360.0)
    stage = stage_for(Model(ecg_emotion_art), 360.0)
    with pytest.raises(SignalError, match="non-finite sample at stream index 12"):
        stage.process(np.r_[np.zeros(12), np.nan])


def test_daemon_gives_beats_and_emotion_estimates_from_one_stream(
        ecg_emotion_art, converted, synth_dir, tmp_path):
    from vitaledge.device.io.records import read_record
    from vitaledge.device.stream.daemon import Daemon
    from vitaledge.device.stream.daemon_config import DaemonConfig

    out, _ = converted
    events_path = tmp_path / "ev.jsonl"
    d = Daemon(DaemonConfig(model=str(out / "cpu-int8"), emotion_model=str(ecg_emotion_art),
                            emotion_hop_s=20.0, source=f"replay:{synth_dir / 's000'}",
                            out=[str(events_path)]))
    summary = d.run(install_signals=False)
    events = [json.loads(x) for x in events_path.read_text().splitlines()]
    beats = [e for e in events if e["type"] == "beat"]
    emotions = [e for e in events if e["type"] == "emotion"]
    seconds = len(read_record(synth_dir / "s000").signal) / 360.0   # 3 min
    assert len(beats) > 150
    assert len(emotions) == int((seconds - 7 - 48) // 20) + 1 == 7
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert summary["stages"]["emotion-ecg"]["estimates"] == len(emotions)
    assert summary["stages"]["beat"]["beats"] == len(beats)


def test_speech_stage_on_wav_replay_and_pcm(speech_art, tmp_path):
    import io

    import soundfile as sf

    from vitaledge.device.inputs.mel import model_input
    from vitaledge.device.stream.daemon import Daemon
    from vitaledge.device.stream.daemon_config import DaemonConfig
    from vitaledge.device.stream.sources import pcm_chunks
    from vitaledge.device.stream.stages import SpeechEmotionStage
    from vitaledge.firmware_sim.patients.speech import synth_clip

    model = Model(speech_art)
    sig = model.manifest.signal
    fs = 16000.0
    audio = np.concatenate([synth_clip("happy", fs, 4.0, np.random.default_rng(1)),
                            synth_clip("sad", fs, 4.0, np.random.default_rng(2))])        # 8 s
    wav = tmp_path / "talk.wav"
    sf.write(wav, audio, int(fs), subtype="PCM_16")
    pcm = (np.clip(audio, -1, 1 - 2 ** -15) * 32768).astype("<i2")
    heard = np.concatenate(list(pcm_chunks(io.BytesIO(pcm.tobytes() + b"\x01"), 1000)))
    np.testing.assert_array_equal(heard, pcm / 32768.0)   # the torn last byte is dropped

    events_path = tmp_path / "speech.jsonl"
    Daemon(DaemonConfig(model=str(speech_art), source=f"replay:{wav}",
                        out=[str(events_path)])).run(install_signals=False)
    events = [json.loads(x) for x in events_path.read_text().splitlines()]
    clip, hop = int(3.5 * fs), int(1.75 * fs)       # offset 0.5 s + 3 s, half-clip hop
    x, _ = sf.read(wav)
    starts = range(0, len(x) - clip + 1, hop)
    assert [e["sample"] for e in events] == [s + clip for s in starts] == [56000, 84000, 112000]
    want = model.predict(np.stack([model_input(x[s:s + clip], fs, sig) for s in starts]))
    assert [e["class"] for e in events] == [model.labels[k] for k in want.argmax(1)]

    # A short utterance never fills a clip: it is classified once, at the end of the stream.
    stage = SpeechEmotionStage(model, fs)
    assert stage.process(x[: int(2.0 * fs)]) == []
    tail = stage.flush()
    assert len(tail) == 1 and tail[0]["sample"] == int(2.0 * fs)
    want = model.predict(model_input(x[: int(2.0 * fs)], fs, sig)[None])
    assert tail[0]["class"] == model.labels[int(want.argmax())]


@pytest.fixture(scope="module")
def multimodal_art(tmp_path_factory):
    from vitaledge.device.inputs.multimodal import default_signal

    sig = {**default_signal(window_s=10.0, hop_s=5.0), "calib_s": 10.0}
    shapes = {"physio": (160, 2), "features": (len(sig["features"]),), "face": (48, 48, 1)}

    def build(keras):
        L = keras.layers
        physio, feats = L.Input(shapes["physio"], name="physio"), L.Input(shapes["features"],
                                                                             name="features")
        face = L.Input(shapes["face"], name="face")
        f = L.GlobalAveragePooling2D()(L.Conv2D(2, 3, activation="relu")(face))
        x = L.Concatenate()([L.LSTM(4)(physio), L.Dense(4, activation="relu")(feats), f])
        return keras.Model([physio, feats, face], L.Dense(5, activation="softmax")(x))

    return _convert_toy(tmp_path_factory.mktemp("mm"), "mm", "emotion-multimodal",
                        ["happy", "sad", "angry", "neutral", "fear"], sig, build, shapes)


def test_multimodal_session_replay_through_the_daemon(multimodal_art, tmp_path):
    from vitaledge.device.inputs.multimodal import model_inputs, subject_stats
    from vitaledge.device.io.sessions import read_session, write_session
    from vitaledge.device.stream.daemon import Daemon
    from vitaledge.device.stream.daemon_config import DaemonConfig
    from vitaledge.firmware_sim.patients.emotion import synth_session

    model = Model(multimodal_art)
    assert [t.name for t in model.manifest.inputs] == [
        "serving_default_physio:0", "serving_default_features:0", "serving_default_face:0"]
    sig = model.manifest.signal
    sess = synth_session(["happy", "angry"], seconds_each=30.0, fs=128.0, face_every_s=2.0,
                         seed=3)
    path = write_session(tmp_path / "session.npz", sess)
    events_path = tmp_path / "mm.jsonl"
    Daemon(DaemonConfig(model=str(multimodal_art), source=f"replay:{path}",
                        out=[str(events_path)])).run(install_signals=False)
    events = [json.loads(x) for x in events_path.read_text().splitlines()]
    assert [e["type"] for e in events] == ["emotion"] * 9       # windows at 10, 15 ... 50 s

    s = read_session(path)
    fs, win, calib = 128, 10 * 128, 10 * 128
    stats = subject_stats(s.ecg[:calib], s.gsr[:calib], fs, sig)
    batch = []
    for k, e in enumerate(events):
        a = calib + k * 5 * 128
        assert e["sample"] == a + win
        face = s.faces[np.flatnonzero(s.face_times <= (a + win) / fs)[-1]]
        w = model_inputs(s.ecg[a:a + win], s.gsr[a:a + win], fs, face, sig, stats)
        batch.append([w["physio"], w["features"], w["face"]])
    want = model.predict([np.stack([b[i] for b in batch]) for i in range(3)])
    assert [e["class"] for e in events] == [model.labels[k] for k in want.argmax(1)]
    got = np.array([[e["probabilities"][lab] for lab in model.labels] for e in events])
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_a_stream_of_the_wrong_channel_count_stops_the_daemon(multimodal_art, ecg_emotion_art,
                                                              tmp_path):
    """A multimodal model on a one-lead record refused every chunk and exited 0 ("no signal
    faults"); an ECG model on an [ecg, gsr] session read the two columns interleaved as one
    ECG (twice the signal time, four times the emotion events)."""
    from vitaledge.device.io.sessions import write_session
    from vitaledge.device.stream.daemon import Daemon, DaemonFailure
    from vitaledge.device.stream.daemon_config import DaemonConfig
    from vitaledge.firmware_sim.patients.emotion import synth_session

    session = write_session(tmp_path / "s.npz", synth_session(["happy"], seconds_each=20.0,
                                                             fs=128.0, seed=1))
    lead = tmp_path / "lead.csv"
    np.savetxt(lead, np.sin(np.arange(128 * 20) / 10.0), fmt="%.5f")
    for task, art, src, fs, words in (
            ("mm", multimodal_art, lead, 128.0, "needs [ecg, gsr] columns"),
            ("ecg", ecg_emotion_art, session, None, "2 channels per sample")):
        out = tmp_path / f"{task}.jsonl"
        with pytest.raises(DaemonFailure, match=rf"StreamShapeError: .*{re.escape(words)}"):
            Daemon(DaemonConfig(model=str(art), source=f"replay:{src}", fs=fs,
                                out=[str(out)])).run(install_signals=False)
        assert not [e for e in map(json.loads, out.read_text().splitlines())
                    if e["type"] == "emotion"]


def test_a_speaker_normalized_speech_model_is_refused_at_start(speech_art, tmp_path):
    """It reported ready and failed at the first clip (no speaker statistics on a stream)."""
    import shutil

    from vitaledge.device.stream.pipeline import SignalError
    from vitaledge.device.stream.stages import SpeechEmotionStage

    art = tmp_path / "spk"
    shutil.copytree(speech_art, art)
    raw = json.loads((art / "manifest.json").read_text())
    raw["signal"]["feature_norm"] = "speaker"
    (art / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(SignalError, match=r"standardizes by speaker .* --feature-norm "
                                          r"utterance"):
        SpeechEmotionStage(Model(art), 16000.0)
    SpeechEmotionStage(Model(speech_art), 16000.0)  # utterance/none: as before


def test_the_daemons_hop_replaces_the_spec_hop_of_the_stages_that_step_by_it(
        ecg_emotion_art, multimodal_art, speech_art):
    """``emotion_hop_s`` (the daemon's --emotion-hop) steps the ECG emotion and multimodal
    windows in place of their manifest's hop; the speech stage, whose spec has no hop,
    steps by the daemon's hop itself and keeps its spec."""
    from vitaledge.device.stream.stages import stage_for

    for art, fs in ((ecg_emotion_art, 360.0), (multimodal_art, 128.0)):
        model = Model(art)
        assert stage_for(model, fs).signal.hop_s == model.manifest.signal.hop_s != 7.5
        assert stage_for(model, fs, 7.5).signal.hop_s == 7.5
    speech = Model(speech_art)
    stage = stage_for(speech, 16000.0, 0.25)
    assert stage.signal == speech.manifest.signal
    events = stage.process(np.zeros(int(4.0 * 16000)))  # clips of 3.5 s every 0.25 s
    assert [e["sample"] for e in events] == [56000, 60000, 64000]


def test_the_emotion_hop_is_refused_without_an_emotion_model_and_taken_by_a_main_one(
        ecg_emotion_art, converted, synth_dir, tmp_path):
    """--emotion-hop was refused unless --emotion-model was given, though an emotion-ecg
    model run as the main model steps by it (its config key was taken for it); with a beat
    model alone it does nothing, and is refused whether flag or key."""
    from conftest import error_line, invoke

    out, _ = converted
    rec = f"replay:{synth_dir / 's000'}"
    line = error_line(invoke(["device", "run", "--model", out / "cpu-int8", "--source", rec,
                              "--emotion-hop", "5", "--sink", tmp_path / "a.jsonl"]))
    assert "emotion_hop_s (--emotion-hop) steps an emotion model's windows" in line, line
    assert not (tmp_path / "a.jsonl").exists()
    events = tmp_path / "e.jsonl"
    r = invoke(["device", "run", "--model", ecg_emotion_art, "--source", rec,
                "--emotion-hop", "20", "--sink", events])
    assert r.exit_code == 0, r.output
    times = [json.loads(x)["time"] for x in events.read_text().splitlines()
             if json.loads(x)["type"] == "emotion"]
    assert len(times) == 7 and np.allclose(np.diff(times), 20.0), times
