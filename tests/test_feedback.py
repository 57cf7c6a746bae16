"""Feedback while it works: the progress line, the run summary and /health in words, the
CPU features a bench figure comes with, and what ``device info`` says of an artifact."""

from __future__ import annotations

import io

from vitaledge.device.bench.latency import cpu_features, environment, format_table
from vitaledge.device.stream.progress import ProgressLine
from vitaledge.device.stream.report import (
    clock,
    format_health,
    format_position,
    format_summary,
)

X86 = ("processor\t: 0\nmodel name\t: Some Xeon\nflags\t\t: fpu sse2 avx avx2 fma avx512f "
       "avx512_vnni avx_vnni amx_tile amx_int8\n")
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes asimddp i8mm sve\nCPU part\t: 0xd0c\n"


def test_cpu_features_from_cpuinfo_flags():
    assert cpu_features(X86) == ["avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni",
                                 "amx_tile", "amx_int8"]
    assert cpu_features(ARM) == ["asimd", "asimddp", "i8mm", "sve"]
    assert cpu_features("model name\t: unknown\n") == []


def test_bench_environment_and_footer_name_the_features():
    env = environment(None)
    assert isinstance(env["cpu_features"], list)
    res = {"rows": [], "environment": {**env, "cpu_features": ["avx2", "avx512_vnni"]}}
    assert "· avx2 avx512_vnni ·" in format_table(res).splitlines()[-1]
    old = {k: v for k, v in env.items() if k != "cpu_features"}  # a result saved before
    assert "CPU features not recorded" in format_table({"rows": [], "environment": old})


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_line_only_on_a_terminal():
    pipe = io.StringIO()
    with ProgressLine(pipe) as line:
        line.update("record 100: 1 of 2", force=True)
        assert line.counter("record") is None
    assert pipe.getvalue() == ""
    tty = Tty()
    with ProgressLine(tty) as line:
        line.counter("record")(0, 2, "100")
        line.update("too soon")  # rate-limited
        line.counter("record")(1, 2, "208")
    assert tty.getvalue() == ("\rrecord 100: 1 of 2\x1b[K\rrecord 208: 2 of 2\x1b[K"
                              "\r\x1b[K")


def test_run_summary_and_position_in_words():
    assert clock(1805.6) == "30:05" and clock(3725) == "1:02:05"
    summary = {"samples": 650000, "signal_seconds": 1805.6, "wall_seconds": 7.8,
               "realtime_factor": 231.4, "events_this_run": {"beat": 2271, "status": 1},
               "sinks": ["events.jsonl", "events.db"], "dropped_chunks": 2,
               "dropped_samples": 640, "dropped_edge_beats": 2,
               "signal_fault_samples": {"non_finite": 0, "saturation": 0, "lead_off": 720},
               "rss_mb": 77.0, "ready_seconds": 0.157,
               "rhythm": {"beats": 2271, "classes": {"N": 1949, "S": 295},
                          "heart_rate_bpm": 78.6}}
    text = format_summary(summary).splitlines()
    assert text[0] == ("2,271 beat events, 1 status event from 30:05 of signal in 7.8 s, "
                       "231x real time → events.jsonl, events.db")
    assert text[1].startswith("beats: N 1,949 · S 295; heart rate 78.6 bpm")
    assert "640 samples dropped" in text[2] and "720 samples lead off" in text[2]
    assert "0% of the signal" in text[2] and "replay:FILE" not in text[2]
    # a file piped into stdin: most of it dropped, and the summary says why (it said only
    # the count, and the run exited 0 as if it had read the file)
    piped = {**summary, "samples": 86_400, "dropped_samples": 67_840, "dropped_chunks": 1_060}
    line = format_summary(piped).splitlines()[2]
    assert "67,840 samples dropped on a full queue (1,060 chunks, 79% of the signal); the " \
           "source sent them faster than the models ran" in line, line
    assert "--source replay:FILE" in line
    pos = {"samples": 360 * 750, "fs": 360.0, "length": 650000, "events": {"beat": 900},
           "source": "replay:100"}
    assert format_position(pos, 5.0) == ("replay:100  12:30 / 30:05 of signal (42 %)  "
                                         "900 beat events  150x real time")


def test_run_summary_says_how_much_was_unreadable_and_why():
    """A run whose signal was all unreadable printed 'no signal faults' and nothing about
    it: the summary now gives the flagged time, its share, the gated detections and why."""
    quiet = {"samples": 43_200, "signal_seconds": 120.0, "wall_seconds": 0.3,
             "events_this_run": {"status": 5}, "sinks": ["ev.jsonl"],
             "signal_quality": {"gating": True, "good_s": 0.0, "doubtful_s": 0.0,
                                "unreadable_s": 120.0, "flagged_beats": 0,
                                "gated_beats": 223,
                                "flagged_reasons_s": {"low_amplitude": 118.0, "rate": 2.0}}}
    text = format_summary(quiet).splitlines()
    assert text[1] == ("signal quality: 2:00 unreadable (100%), no beats there (223 "
                       "detections); why: low amplitude 1:58, rate 0:02"), text
    some = {**quiet, "signal_quality": {**quiet["signal_quality"], "unreadable_s": 0.0,
                                        "doubtful_s": 2.0, "flagged_beats": 1,
                                        "flagged_reasons_s": {"inconsistent_beats": 2.0}}}
    assert format_summary(some).splitlines()[1] == (
        "signal quality: 0:02 doubtful (2%, 1 beat flagged); why: inconsistent beats 0:02")
    clean = {**quiet, "signal_quality": {**quiet["signal_quality"], "unreadable_s": 0.0}}
    assert not any(x.startswith("signal quality") for x in format_summary(clean).splitlines())


def test_health_in_words():
    h = {"status": "degraded", "degraded": ["no beats for 12 s"], "uptime_s": 3725.0,
         "model": "/models/beat", "model_sha256": "ab" * 32, "source": "serial:/dev/ttyACM0",
         "fs": 360.0, "samples_in": 360 * 60, "last_seq": 4242,
         "events_this_run": {"beat": 70}, "rhythm": {}}
    text = format_health(h)
    assert text.splitlines()[0] == "state: degraded (no beats for 12 s)"
    assert "uptime: 1:02:05" in text and "sha256 abababababab" in text
    assert "21,600 samples (1:00 of signal)" in text and "last seq 4,242" in text
