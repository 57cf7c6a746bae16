"""The daemon's registries are complete: every documented source scheme, sink scheme and
manifest task has an entry, and every entry opens something or refuses bad arguments with
its documented message. Also the typed queue items and the event builders' JSON shape."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import numpy as np
import pytest

from vitaledge.device.stream import events as event
from vitaledge.device.stream import sinks, sources

REPO = Path(__file__).resolve().parents[1]


def _documented_source_schemes() -> set[str]:
    toml = (REPO / "docs" / "device.toml").read_text()
    line = toml[toml.index("\nsource ="):]
    doc = line[: line.index("\nfs =")]  # the source line and its continuation
    from_toml = {m.split(":")[0] for m in re.findall(r"([a-z][a-z+-]*)(?::[A-Z]|\s*[|\n])",
                                                      doc.split("#", 1)[1])}
    from_docstring = set(re.findall(r"^``([a-z][a-z+-]*)[:`]", sources.__doc__, re.M))
    return from_toml | from_docstring


def test_every_documented_source_scheme_is_registered():
    documented = _documented_source_schemes()
    assert {"replay", "stdin", "stdin-pcm", "tcp", "serial", "frames+tcp"} <= documented
    assert documented == set(sources.SOURCES)


def test_unknown_source_lists_the_registry():
    with pytest.raises(sources.SourceError) as exc:
        sources.open_source("bogus:x")
    for kind in sources.SOURCES.values():  # each with its usage, from the registry
        assert kind.usage in str(exc.value)


def test_every_source_opens_or_refuses_bad_arguments(tmp_path):
    csv = tmp_path / "x.csv"
    np.savetxt(csv, np.sin(np.arange(500) / 10))
    src = sources.open_source(f"replay:{csv}", fs=360.0)
    assert src.fs == 360.0 and sum(len(c) for c in src.chunks) == 500
    refusals = {"replay": ("replay:", "needs a path: replay:PATH"),
                "stdin": ("stdin", "needs the sample rate"),
                "stdin-pcm": ("stdin-pcm", "needs the sample rate"),
                "tcp": ("tcp:nohost", "expected tcp:HOST:PORT"),
                "serial": ("serial:", "expected serial:PATH or serial:PATH@BAUD"),
                "frames+tcp": ("frames+tcp:7000", "expected frames+tcp:HOST:PORT")}
    assert set(refusals) == set(sources.SOURCES)
    for spec, message in refusals.values():
        with pytest.raises(sources.SourceError, match=re.escape(message)):
            sources.open_source(spec)
    for spec in ("tcp:127.0.0.1:0", "frames+tcp:127.0.0.1:0"):  # listeners open and stop
        src = sources.open_source(spec, fs=360.0)
        assert src.fs == 360.0
        src.stop()
    for spec in ("tcp:127.0.0.1:99999", "frames+tcp:127.0.0.1:70000"):  # not a TCP port
        with pytest.raises(sources.SourceError, match=r"port \d+ is not a TCP port"):
            sources.open_source(spec, fs=360.0)


def test_a_listener_that_cannot_bind_names_the_source():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for scheme in ("tcp", "frames+tcp"):
            with pytest.raises(sources.SourceError, match=rf"{re.escape(scheme)} source "
                               rf"127.0.0.1:{port}: cannot listen"):
                sources.open_source(f"{scheme}:127.0.0.1:{port}", fs=360.0)


def test_a_replayed_file_is_played_by_the_format_its_suffix_picks(tmp_path):
    """replay:PATH dispatches on REPLAY_FORMATS: one suffix, one format; a configured rate
    applies only to a CSV; anything else is a WFDB record."""
    suffixes = [x for f in sources.REPLAY_FORMATS.values() for x in f.suffixes]
    assert len(suffixes) == len(set(suffixes)) and not sources.REPLAY_FORMATS["wfdb"].suffixes
    kinds = {"replay:a/x.CSV": "csv", "replay:s.npz": "session", "replay:v.flac": "audio",
             "replay:../shared/data/mitdb/100": "wfdb", "tcp:127.0.0.1:9": None}
    assert {spec: sources.replay_kind(spec) for spec in kinds} == kinds
    assert [sources.carries_rate(s) for s in kinds] == [False, True, True, True, False]
    (tmp_path / "x.csv").write_text("0.1\n0.2\n0.3\n")
    src = sources.open_source(f"replay:{tmp_path / 'x.csv'}", fs=250.0)
    assert src.fs == 250.0 and np.concatenate(list(src.chunks)).tolist() == [0.1, 0.2, 0.3]
    with pytest.raises(sources.SourceError, match="CSV replay needs the sample rate"):
        sources.open_source(f"replay:{tmp_path / 'x.csv'}")


def test_every_documented_sink_scheme_is_registered():
    doc = sinks.__doc__[sinks.__doc__.index(":data:`SINKS`"):]  # the schemes paragraph
    documented = set(re.findall(r"``([a-z]+)(?::PATH|://HOST:PORT/PREFIX)?``", doc))
    assert documented == set(sinks.SINKS) == {"jsonl", "sqlite", "stdout", "mqtt", "mqtts"}
    assert set(sinks.SUFFIXES.values()) <= set(sinks.SINKS)


def test_a_sink_kind_says_what_the_daemon_checks_of_it(tmp_path):
    """What the daemon's checks read of a sink's kind: a file sink's path (sink_file), and
    which sinks are brokers (sink_kind; their spools and OTA). The checks themselves are
    tested in test_cli_bad_input (a sink that is an input, two sinks on one spool) and
    test_ota (an mqtt sink is needed)."""
    assert sinks.sink_file(str(tmp_path / "a.db")) == tmp_path / "a.db"
    assert sinks.sink_file(f"jsonl:{tmp_path / 'x'}") == tmp_path / "x"
    assert sinks.sink_file("stdout") is None and sinks.sink_file("mqtt://h:1/p") is None
    assert [k for k, v in sinks.SINKS.items() if v.broker] == ["mqtt", "mqtts"]
    assert sinks.sink_kind("mqtts://h:8883/p").broker and not sinks.sink_kind("-").broker
    with pytest.raises(ValueError, match="unknown sink"):
        sinks.sink_kind("carrier-pigeon:x")


def test_every_sink_opens_on_a_tmp_path_and_refuses_bad_arguments(tmp_path):
    ev = [{"type": "status", "status": "hello", "time": 0.0, "seq": 7}]
    for spec in (f"jsonl:{tmp_path / 'a.jsonl'}", str(tmp_path / "b.jsonl"),
                 f"sqlite:{tmp_path / 'a.db'}", str(tmp_path / "b.sqlite3"), "stdout", "-"):
        s = sinks.open_sink(spec)
        s.write(ev)
        assert s.last_seq() == (0 if spec in ("stdout", "-") else 7)
        s.close()
    for spec, message in {"jsonl:": "jsonl sink needs a path", "sqlite:": "sqlite sink needs "
                          "a path", "stdout:x": "stdout sink takes no path"}.items():
        with pytest.raises(ValueError, match=message):
            sinks.open_sink(spec)
    with pytest.raises(ValueError) as exc:
        sinks.open_sink(str(tmp_path / "events.txt"))
    for key in [*sinks.SINKS, *sinks.SUFFIXES]:
        assert key in str(exc.value)


def test_every_manifest_task_has_a_stage():
    from vitaledge.device.model.manifest import TASKS
    from vitaledge.device.stream.stages import STAGES

    assert set(STAGES) == set(TASKS)


def test_stage_classes_carry_the_protocol_members():
    from vitaledge.device.stream.pipeline import BeatPipeline
    from vitaledge.device.stream.stages import (
        STAGES,
        EcgEmotionStage,
        FanOut,
        MultimodalStage,
        SpeechEmotionStage,
    )

    classes = (BeatPipeline, EcgEmotionStage, SpeechEmotionStage, MultimodalStage)
    for cls in classes:
        for name in ("task", "wants_signal_monitor", "emits_beats", "min_source_fs",
                     "process", "gap", "face", "flush", "swap_model", "set_gating",
                     "quality_summary", "decided_samples"):
            assert hasattr(cls, name), (cls.__name__, name)
    assert {cls.task for cls in classes} == set(STAGES)
    # the daemon's no-beats watch and gating follow the stage's trait, not its task name
    assert [cls.emits_beats for cls in classes] == [True, False, False, False]
    assert "__getattr__" not in vars(FanOut)


def test_queue_items_from_source_output():
    from vitaledge.device.io.sessions import FaceFrame
    from vitaledge.device.stream.protocol import Gap, StatusEvent
    from vitaledge.device.stream.queue_items import (
        DeviceStatus,
        FaceItem,
        Samples,
        WireGap,
        from_source,
    )

    x = np.zeros(5)
    s = from_source(x)
    assert isinstance(s, Samples) and s.lost_samples == s.span == 5
    g = from_source(Gap(12, "lost_frames"))
    assert isinstance(g, WireGap) and (g.lost_samples, g.span) == (0, 12)
    st = from_source(StatusEvent({"status": "hello"}))
    assert isinstance(st, DeviceStatus) and st.info == {"status": "hello"}
    f = from_source(FaceFrame(1.0, np.zeros((2, 2))))
    assert isinstance(f, FaceItem) and (f.lost_samples, f.span) == (0, 0)


def _line(e: dict) -> str:
    return json.dumps(e, separators=(",", ":"))


def test_event_builders_keep_the_json_fields_and_order():
    assert _line(event.beat(1.25, 450, "N", {"N": 0.9, "V": 0.1}, 0.8)) == (
        '{"type":"beat","time":1.25,"sample":450,"class":"N","probabilities":'
        '{"N":0.9,"V":0.1},"rr":0.8,"heart_rate":75.0}')
    assert _line(event.beat(1.0, 360, "N", {}, None)).endswith('"rr":null,"heart_rate":null}')
    assert _line(event.emotion("emotion-ecg", 55.0, 19800, 48.0, "LVLA", {"LVLA": 1.0})) == (
        '{"type":"emotion","task":"emotion-ecg","time":55.0,"sample":19800,"window_s":48.0,'
        '"class":"LVLA","probabilities":{"LVLA":1.0}}')
    assert _line(event.wire_gap("lead_off", 2.0, 36, False)) == (
        '{"type":"status","status":"gap","reason":"lead_off","time":2.0,'
        '"missing_samples":36,"concealed":false}')
    assert _line(event.gap(2.0, 36)) == (
        '{"type":"status","status":"gap","time":2.0,"missing_samples":36}')
    assert _line(event.device_status({"status": "hello", "fs": 360.0}, 0.5)) == (
        '{"type":"status","status":"hello","fs":360.0,"time":0.5}')
    assert _line(event.signal_change("saturation", 3.0, "saturation", 90)) == (
        '{"type":"status","status":"saturation","time":3.0,"fault":"saturation",'
        '"fault_samples":90}')
    assert _line(event.signal_change("signal_ok", 3.0)) == (
        '{"type":"status","status":"signal_ok","time":3.0}')
    assert _line(event.rate_change("rate_ok", 1.0, 359.9, 360.0)) == (
        '{"type":"status","status":"rate_ok","time":1.0,"measured_hz":359.9,'
        '"configured_hz":360.0}')
    assert _line(event.signal_error("bad")) == (
        '{"type":"status","status":"signal_error","error":"bad"}')
    assert _line(event.sample_rate_mismatch(100.0, 125.0, "slow")) == (
        '{"type":"status","status":"sample_rate_mismatch","time":0.0,"source_fs":100.0,'
        '"model_fs":125.0,"error":"slow"}')


def test_pcm_reads_that_end_inside_a_sample_stay_aligned_and_a_torn_end_is_counted():
    """A read of an odd number of bytes kept the samples after it aligned? It dropped the
    odd byte, so every later sample was read across two; a torn last byte went unsaid."""
    pcm = (np.arange(-500, 500) * 30).astype("<i2")

    class OddReads:  # a pipe that hands over 7 bytes at a time
        def __init__(self, data):
            self.data = data

        def read(self, n):
            out, self.data = self.data[:7], self.data[7:]
            return out

    counts: dict = {}
    heard = np.concatenate(list(sources.pcm_chunks(OddReads(pcm.tobytes() + b"\x01"), 64,
                                                   counts)))
    np.testing.assert_array_equal(heard, pcm / 32768.0)
    assert counts == {"garbage_bytes": 1}


def test_a_two_column_csv_or_line_is_not_read_as_its_first_column(tmp_path):
    """A time,value CSV was replayed from its time column, a ramp in which the detector
    found 474 beats in 4 minutes, 'no signal faults'."""
    tv = tmp_path / "tv.csv"
    tv.write_text("time,ecg\n" + "".join(f"{i / 360:.6f},{np.sin(i / 9):.4f}\n"
                                          for i in range(100)))
    with pytest.raises(sources.SourceError, match=r"tv\.csv:2: 2 columns; a replay CSV holds "
                                                  r"one sample per line"):
        sources.read_csv_samples(tv)
    one = tmp_path / "one.csv"
    one.write_text("ecg\n0.5\n\n-0.25\n")
    assert sources.read_csv_samples(one).tolist() == [0.5, -0.25]
    counts: dict = {}
    chunks = list(sources.text_samples(iter(["0.5", "0.001,0.2", "-0.25,", "x"]), "stdin", 8,
                                       counts))
    assert [c.tolist() for c in chunks] == [[0.5, -0.25]] and counts["malformed_lines"] == 2


def test_a_sources_entry_says_what_it_is():
    """What the daemon needs to know of a source before opening it is in its entry: the
    listening ones need a token off loopback, the replay is the one that is not live (no
    --speed elsewhere, a progress line), stdin-pcm carries audio rates."""
    listening = {s for s, k in sources.SOURCES.items() if k.listens}
    assert listening == {"tcp", "frames+tcp"}
    for scheme in listening:
        with pytest.raises(sources.SourceError, match="token"):
            sources.check_source_safety(f"{scheme}:0.0.0.0:0")
        sources.check_source_safety(f"{scheme}:127.0.0.1:0")  # loopback: no token needed
    assert [s for s in sources.SOURCES if not sources.is_live(f"{s}:x")] == ["replay"]
    assert {s for s, k in sources.SOURCES.items() if k.audio} == {"stdin-pcm"}
    with pytest.raises(sources.SourceError, match="sample rate 200000"):
        sources.open_source("stdin", fs=200_000)  # an audio rate, for an ECG source


def test_device_run_help_names_every_registry_entry():
    """--model, --emotion-model, --source, --fs, --sink, --source-token-file and --delegate
    take their words from the registries: a new stage, source, replay format, sink or
    delegate shows in the help (the hand-written --model help had left out
    emotion-multimodal)."""
    from click.testing import CliRunner

    from vitaledge.cli import main
    from vitaledge.device.model.runtime import DELEGATE_LIBS
    from vitaledge.device.stream.daemon_config import EMOTION_MODEL_TASKS
    from vitaledge.device.stream.sinks import SINKS, SUFFIXES
    from vitaledge.device.stream.sources import REPLAY_FORMATS, SOURCES
    from vitaledge.device.stream.stages import STAGES

    out = " ".join(CliRunner().invoke(main, ["device", "run", "--help"],
                                      terminal_width=1000).output.split())
    for words in [*STAGES, *EMOTION_MODEL_TASKS, *(k.usage for k in SOURCES.values()),
                  *(f.name for f in REPLAY_FORMATS.values()), *(k.usage for k in SINKS.values()),
                  *(f"PATH{s}" for s in SUFFIXES), *DELEGATE_LIBS]:
        assert words in out, words
    assert all(k.usage for k in [*SOURCES.values(), *SINKS.values()])
    assert all(f.name for f in REPLAY_FORMATS.values())
    fs_help = out.split("--fs FLOAT")[1].split("--speed")[0]
    assert all(n in fs_help for n, k in SOURCES.items() if k.live)
    assert all(f.name in fs_help for f in REPLAY_FORMATS.values() if not f.carries_rate)
    assert not any(f.name in fs_help for f in REPLAY_FORMATS.values() if f.carries_rate)


def test_every_signal_spec_answers_input_names_and_decide():
    """The manifest and the runtime call input_names() and decide() on any task's spec
    (they probed for them with getattr); a spec without rules decides by the argmax."""
    import numpy as np

    from vitaledge.device.inputs.signal_spec import SignalSpecBase
    from vitaledge.device.model.manifest import SIGNAL_SPECS

    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    for task, cls in SIGNAL_SPECS.items():
        assert issubclass(cls, SignalSpecBase), task
        assert callable(cls.input_names) and callable(cls.decide)
        if "decide" not in vars(cls):  # no rules of its own: the argmax
            assert cls.decide(None, probs, ["a", "b", "c"]).tolist() == [1, 0]
