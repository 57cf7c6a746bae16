"""``vitaledge bench stream``: records replayed through the real daemon pipeline in small
chunks, as fast as possible, on one core.

Reported per record: real-time factor (signal seconds per wall second); the R-peak-to-event
latency of each beat event (``r_to_event_ms_*``: the signal time from its R peak to the
end of the chunk that decides it, i.e. the next R peak for the post-RR interval, the
detector's look-ahead, the window after the R peak, the quality block being judged and
chunking, plus the compute time of that pipeline call); and that compute time alone
(``compute_ms_*``: the arrival of the deciding chunk -> the event). One core sustains about
``real-time factor`` concurrent streams of that rate (the pipeline is single-threaded and
streams are independent), which is what the ``streams/core`` column states.

Speech (an ``emotion-speech`` artifact): ``--data`` is a directory of audio clips (wav or
flac, searched recursively, the first ``clips`` in path order). Each clip is read and
chunked by the daemon's own replay source and streamed, ``chunk_s`` seconds per call, as
fast as possible on one thread through the daemon's speech stage (``stage_for``, i.e.
:class:`~vitaledge.device.stream.stages.SpeechEmotionStage`: resampling to the model's
rate, log-mel images and the model, one decision per clip of ``offset_s + duration_s``
seconds every half clip, plus the stage's end-of-stream tail). Reported per clip and in
total: audio seconds, decisions (emotion events), wall seconds (the pipeline calls only,
not reading the file), real-time factor (audio seconds per wall second) and streams per
core; the decision latency, the compute time of the pipeline call that emits each emotion
event (p50/p95/p99 ms); and, once, the model's single-invoke latency (``Model.predict``
on one real clip's input: quantize, invoke, dequantize) and the features' time (the log-mel
images of that clip), p50 ms.

:data:`STREAM_BENCHES` maps the manifest's task to its bench and table;
:func:`bench_stream` and :func:`format_stream` dispatch on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vitaledge.device.io.records import list_records, read_record, select_records
from vitaledge.device.model.manifest import load_manifest
from vitaledge.device.model.runtime import Model
from vitaledge.device.stream.pipeline import BeatPipeline
from vitaledge.device.stream.sources import REPLAY_FORMATS

Progress = Callable[[int, int, str], None]


def bench_beat_stream(artifact: str | Path, records: str | Path, chunk_s: float = 0.1,
                      names: list[str] | None = None, progress: Progress | None = None,
                      clips: int | None = None) -> dict:
    """One row per record of ``records`` (only ``names`` when given); ``progress`` is
    called with (records done, records in all, the record now replayed)."""
    if clips is not None:
        raise ValueError("a beat artifact replays WFDB records: choose them with --records "
                         "(--clips is for speech artifacts)")
    model = Model(artifact, threads=1)
    paths = select_records(list_records(records), names)
    rows = []
    for i, p in enumerate(paths):
        if progress is not None:
            progress(i, len(paths), p.name)
        rec = read_record(p, annotator=None)
        try:
            pipe = BeatPipeline(model, rec.fs, lead=rec.lead)
        except ValueError as exc:  # "filter high edge 40.0 Hz is not below Nyquist"
            raise ValueError(f"{p}: {rec.fs:g} Hz: {exc}") from exc
        chunk = max(1, int(round(chunk_s * rec.fs)))
        algo, compute = [], []
        wall = 0.0
        # the stream's chunks, then its end: flush() decides the last beats (the daemon
        # writes them; they were left out, 2,269 beats of record 100 against its 2,271)
        pieces = [rec.signal[i:i + chunk] for i in range(0, len(rec.signal), chunk)]
        for piece in [*pieces, None]:
            t = time.perf_counter()
            events = pipe.flush() if piece is None else pipe.process(piece)
            dt = time.perf_counter() - t
            wall += dt
            for e in events:
                if e.get("type") != "beat":
                    continue  # quality status events (gating) carry no beat
                algo.append((pipe.samples_in - e["sample"]) / rec.fs * 1e3)
                compute.append(dt * 1e3)
        a, c = np.asarray(algo), np.asarray(compute)
        rtf = len(rec.signal) / rec.fs / wall
        rows.append({"record": rec.name, "fs": rec.fs, "seconds": round(len(rec.signal) /
                                                                         rec.fs, 1),
                     "beats": len(a), "wall_s": round(wall, 3), "realtime_factor": round(rtf, 1),
                     "streams_per_core": int(rtf),
                     "r_to_event_ms_p50": _percentile(a + c, 50, 1),
                     "r_to_event_ms_p95": _percentile(a + c, 95, 1),
                     "r_to_event_ms_p99": _percentile(a + c, 99, 1),
                     "compute_ms_p50": _percentile(c, 50, 3),
                     "compute_ms_p99": _percentile(c, 99, 3)})
    return {"artifact": str(artifact), "chunk_s": chunk_s, "rows": rows}


def _percentile(x: np.ndarray, q: float, digits: int) -> float | None:
    """The ``q``-th percentile of ``x`` rounded, or None for a record without a beat (a
    flat or short record: its other figures still count)."""
    return round(float(np.percentile(x, q)), digits) if len(x) else None


def format_beat_stream(res: dict) -> str:
    head = (f"{'record':<8}{'seconds':>8}{'beats':>7}{'wall s':>8}{'x real':>8}"
            f"{'streams/core':>13}{'R->event p50':>13}{'p95 ms':>8}{'p99 ms':>8}"
            f"{'window->event p50':>18}"
            f"{'p99 ms':>8}")
    lines = [f"{res['artifact']} · chunks of {res['chunk_s']} s", head]
    for r in res["rows"]:
        v = {k: "-" if x is None else x for k, x in r.items()}  # no beat: no latency
        lines.append(f"{v['record']:<8}{v['seconds']:>8}{v['beats']:>7}{v['wall_s']:>8}"
                     f"{v['realtime_factor']:>8}{v['streams_per_core']:>13}"
                     f"{v['r_to_event_ms_p50']:>13}{v['r_to_event_ms_p95']:>8}"
                     f"{v['r_to_event_ms_p99']:>8}"
                     f"{v['compute_ms_p50']:>18}{v['compute_ms_p99']:>8}")
    return "\n".join(lines)


#: Audio files the speech bench streams: what the daemon's replay source reads as audio.
AUDIO_SUFFIXES = REPLAY_FORMATS["audio"].suffixes
#: Clips streamed when no count is given.
DEFAULT_CLIPS = 40


def list_clips(directory: str | Path, limit: int | None = None) -> list[Path]:
    """Audio files under ``directory`` (recursively, in path order), the first ``limit``."""
    d = Path(directory)
    if not d.is_dir():
        raise ValueError(f"{d}: not a directory")
    paths = sorted(p for p in d.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES
                   and p.is_file())
    if not paths:
        raise ValueError(f"{d}: no audio clips ({', '.join(AUDIO_SUFFIXES)}) in it or below")
    return paths[:limit] if limit else paths


def _ms(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def _speech_row(name: str, fs: float | None, seconds: float, compute: list[float],
                wall: float) -> dict:
    rtf = seconds / wall if wall > 0 else 0.0
    return {"clip": name, "fs": fs, "seconds": round(seconds, 2), "decisions": len(compute),
            "wall_s": round(wall, 4), "realtime_factor": round(rtf, 1),
            "streams_per_core": int(rtf),
            "decision_ms_p50": _ms(compute, 50), "decision_ms_p95": _ms(compute, 95),
            "decision_ms_p99": _ms(compute, 99)}


def _invoke_ms(model: Model, audio: np.ndarray, fs: float, runs: int = 20) -> dict:
    """p50 ms of the log-mel images of one clip and of one ``Model.predict`` on them."""
    from vitaledge.device.inputs.mel import model_input

    spec = model.manifest.signal
    clip = audio[:int(round((spec.offset_s + spec.duration_s) * fs))]
    feats, calls = [], []
    for i in range(runs + 3):  # three warm-up calls, not counted
        t = time.perf_counter()
        x = model_input(clip, fs, spec, source="bench clip")
        t1 = time.perf_counter()
        model.predict(x[None])
        t2 = time.perf_counter()
        if i >= 3:
            feats.append((t1 - t) * 1e3)
            calls.append((t2 - t1) * 1e3)
    return {"invoke_ms_p50": _ms(calls, 50), "invoke_ms_p99": _ms(calls, 99),
            "features_ms_p50": _ms(feats, 50)}


def bench_speech_stream(artifact: str | Path, data: str | Path, chunk_s: float = 0.1,
                        names: list[str] | None = None, progress: Progress | None = None,
                        clips: int | None = None) -> dict:
    """One row per audio clip under ``data`` (the first ``clips``, default
    :data:`DEFAULT_CLIPS`) streamed through the daemon's speech stage, and a total row;
    ``progress`` is called with (clips done, clips in all, the clip now streamed)."""
    from vitaledge.device.stream.sources import check_fs, replay_source
    from vitaledge.device.stream.stages import stage_for

    if names:
        raise ValueError("--records names WFDB records; a speech artifact streams the audio "
                         "clips under --data (limit them with --clips)")
    if chunk_s <= 0:
        raise ValueError(f"chunk of {chunk_s} s: must be positive")
    model = Model(artifact, threads=1)
    root = Path(data)
    paths = list_clips(root, clips or DEFAULT_CLIPS)
    spec = model.manifest.signal
    rows, pooled = [], []
    total_s = total_wall = 0.0
    first: tuple[np.ndarray, float] | None = None
    for k, p in enumerate(paths):
        name = p.relative_to(root).with_suffix("").as_posix()
        if progress is not None:
            progress(k, len(paths), name)
        src = replay_source(str(p), speed=None, chunk_s=chunk_s)  # the daemon's reader
        check_fs(str(p), src.fs, audio=True)
        stage = stage_for(model, src.fs)                           # the daemon's stage
        chunks, compute, wall = [], [], 0.0
        for chunk in src.chunks:
            chunks.append(chunk)
            t = time.perf_counter()
            events = stage.process(chunk)
            dt = time.perf_counter() - t
            wall += dt
            compute += [dt * 1e3 for e in events if e.get("type") == "emotion"]
        t = time.perf_counter()
        events = stage.flush()
        dt = time.perf_counter() - t
        wall += dt
        compute += [dt * 1e3 for e in events if e.get("type") == "emotion"]
        seconds = stage.samples_in / src.fs
        rows.append(_speech_row(name, src.fs, seconds, compute, wall))
        pooled += compute
        total_s += seconds
        total_wall += wall
        if first is None and compute:
            first = (np.concatenate(chunks), src.fs)
    res = {"artifact": str(artifact), "task": model.manifest.task, "chunk_s": chunk_s,
           "threads": 1, "clip_s": round(spec.offset_s + spec.duration_s, 3),
           "model_rate": spec.sample_rate, "rows": rows,
           "total": _speech_row("total", None, total_s, pooled, total_wall)}
    res.update(_invoke_ms(model, *first) if first is not None else
               {"invoke_ms_p50": None, "invoke_ms_p99": None, "features_ms_p50": None})
    return res


def format_speech_stream(res: dict) -> str:
    rows = [*res["rows"], res["total"]]
    w = max(6, *(len(r["clip"]) for r in rows)) + 2
    cols = [("seconds", "seconds", 9), ("decisions", "decisions", 10), ("wall s", "wall_s", 9),
            ("x real", "realtime_factor", 9), ("streams/core", "streams_per_core", 13),
            ("decision p50", "decision_ms_p50", 13), ("p95 ms", "decision_ms_p95", 8),
            ("p99 ms", "decision_ms_p99", 8)]

    def line(r: dict) -> str:
        return f"{r['clip']:<{w}}" + "".join(
            f"{'-' if r[k] is None else r[k]:>{n}}" for _, k, n in cols)

    def ms(v) -> str:
        return "-" if v is None else f"{v} ms"

    out = [f"{res['artifact']} · {res['task']} · chunks of {res['chunk_s']} s · one thread · "
           f"a decision per {res['clip_s']} s clip",
           f"{'clip':<{w}}" + "".join(f"{h:>{n}}" for h, _, n in cols)]
    out += [line(r) for r in res["rows"]]
    out.append(line(res["total"]))
    out.append(f"model: one invoke (Model.predict, one clip) p50 {ms(res['invoke_ms_p50'])}, "
               f"p99 {ms(res['invoke_ms_p99'])}; log-mel images of one clip p50 "
               f"{ms(res['features_ms_p50'])}")
    return "\n".join(out)


#: Manifest task -> (bench, table) of ``bench stream``; a new task's bench is one entry here.
STREAM_BENCHES: dict[str, tuple[Callable[..., dict], Callable[[dict], str]]] = {
    "beat": (bench_beat_stream, format_beat_stream),
    "emotion-speech": (bench_speech_stream, format_speech_stream),
}


def bench_stream(artifact: str | Path, records: str | Path, chunk_s: float = 0.1,
                 names: list[str] | None = None, progress: Progress | None = None,
                 clips: int | None = None) -> dict:
    """The stream bench of the artifact's task (:data:`STREAM_BENCHES`): WFDB records for
    a beat model, audio clips for a speech model, under ``records``."""
    task = load_manifest(artifact, verify_file=False)[0].task
    if task not in STREAM_BENCHES:
        raise ValueError(f"{artifact}: no stream bench for task {task!r} (known: "
                         f"{', '.join(STREAM_BENCHES)})")
    res = STREAM_BENCHES[task][0](artifact, records, chunk_s, names, progress=progress,
                                  clips=clips)
    return {**res, "task": task}


def format_stream(res: dict) -> str:
    """The table of a :func:`bench_stream` result, by its task."""
    return STREAM_BENCHES[res.get("task", "beat")][1](res)
