"""Every event the daemon writes, built in one place.

An event is a flat dict that the sinks write as one JSON line (and the API serves):
``beat`` and ``emotion`` events carry a classification, ``status`` events report what
happened to the stream (``status`` names the kind). The key order here is the order of
the fields in the JSON output; the daemon adds ``seq`` last when it numbers them.
"""

from __future__ import annotations

from collections.abc import Sequence


def probabilities(labels: Sequence[str], scores) -> dict[str, float]:
    """The model's scores per label, rounded for the event."""
    return {lab: round(float(v), 4) for lab, v in zip(labels, scores, strict=True)}


def beat(time: float, sample: int, label: str | None, probs: dict[str, float] | None,
         rr_s: float | None, quality: str | None = None) -> dict:
    """One classified heartbeat; ``rr_s`` is the interval to the previous beat. A beat in
    a stretch the signal-quality index doubts carries ``quality`` (``"doubtful"``); a
    beat on good signal has no such field. ``label`` and ``probs`` are None for a beat
    detected without a model (``bench noise-stress`` detection only; never the daemon)."""
    e = {"type": "beat", "time": time, "sample": int(sample), "class": label,
         "probabilities": probs,
         "rr": None if rr_s is None else round(rr_s, 4),
         "heart_rate": None if not rr_s else round(60.0 / rr_s, 1)}
    if quality is not None:
        e["quality"] = quality
    return e


def emotion(task: str, time: float, sample: int, window_s: float, label: str,
            probs: dict[str, float]) -> dict:
    """One emotion estimate of ``task`` on the window ending at ``sample``."""
    return {"type": "emotion", "task": task, "time": time, "sample": int(sample),
            "window_s": window_s, "class": label, "probabilities": probs}


# -- status events ----------------------------------------------------------------------
def status(kind: str, time: float, **fields) -> dict:
    """A status event of ``kind`` at stream ``time`` (s), with the kind's own fields."""
    return {"type": "status", "status": kind, "time": time, **fields}


def gap(time: float, missing: int) -> dict:
    """Samples the daemon dropped on a full queue: the stream skips ``missing`` samples."""
    return status("gap", time, missing_samples=missing)


def wire_gap(reason: str, time: float, missing: int, concealed: bool) -> dict:
    """Samples lost on the wire (or withheld by the board) for ``reason``; ``concealed``
    when the hole was filled in."""
    return {"type": "status", "status": "gap", "reason": reason, "time": time,
            "missing_samples": missing, "concealed": concealed}


def device_status(info: dict, time: float) -> dict:
    """What the board reported (``info`` holds its ``status`` kind and fields)."""
    return {"type": "status", **info, "time": time}


def signal_change(kind: str, time: float, fault: str | None = None,
                  fault_samples: int | None = None) -> dict:
    """The signal monitor's fault starts (``kind`` names it) or ends (``signal_ok``)."""
    if fault:
        return status(kind, time, fault=fault, fault_samples=fault_samples)
    return status(kind, time)


def quality_run(state: str, start: float, end: float, start_sample: int, end_sample: int,
                reason: str) -> dict:
    """A stretch [start, end) (s; samples) the signal-quality index judged ``state``:
    ``unreadable`` (no beat events inside) or ``doubtful`` (its beats carry
    ``"quality": "doubtful"``); ``reason`` names the failing index (``noise``, ``rate``,
    ``detectors_disagree``, ``inconsistent_beats``, ``low_amplitude``, ``short``)."""
    return status(state, end, start=start, end=end, start_sample=int(start_sample),
                  end_sample=int(end_sample), reason=reason)


def no_signal(time: float, silent_s: float) -> dict:
    """A live source has sent nothing for ``silent_s`` seconds."""
    return status("no_signal", time, silent_s=silent_s)


def signal_resumed(time: float, silent_s: float) -> dict:
    """Samples arrive again after ``silent_s`` seconds of silence."""
    return status("signal_resumed", time, silent_s=silent_s)


def rate_change(kind: str, time: float, measured_hz: float, configured_hz: float) -> dict:
    """``rate_mismatch`` or ``rate_ok``: the measured arrival rate against the configured."""
    return status(kind, time, measured_hz=measured_hz, configured_hz=configured_hz)


def no_face(time: float) -> dict:
    """A multimodal window had no camera frame yet: reported, not classified."""
    return status("no_face", time)


def sample_rate_mismatch(source_fs: float, model_fs: float, error: str) -> dict:
    """The source is slower than the model's windows need; the daemon refuses to start."""
    return status("sample_rate_mismatch", 0.0, source_fs=source_fs, model_fs=model_fs,
                  error=error)


def signal_error(error: str) -> dict:
    """A chunk a stage refused (it carries no stream time: the stage did not advance)."""
    return {"type": "status", "status": "signal_error", "error": error}


def no_beats(time: float, no_beats_s: float, last_beat_time: float | None) -> dict:
    """The signal is present but no beat has come for ``no_beats_s`` seconds (since the
    beat at ``last_beat_time``, None when there was none yet, or since a gap)."""
    return status("no_beats", time, no_beats_s=no_beats_s, last_beat_time=last_beat_time)


def beats_resumed(time: float, no_beats_s: float) -> dict:
    """Beats again at ``time`` after a pause of ``no_beats_s`` seconds."""
    return status("beats_resumed", time, no_beats_s=no_beats_s)


def sink_error(time: float, sink: str, error: str) -> dict:
    """Sink ``sink`` failed to write; it keeps its events and is retried with backoff."""
    return status("sink_error", time, sink=sink, error=error)


def sink_recovered(time: float, sink: str, written: int) -> dict:
    """Sink ``sink`` writes again; ``written`` events it had missed were written."""
    return status("sink_recovered", time, sink=sink, written=written)


def failure(kind: str, time: float, error: str) -> dict:
    """``pipeline_error`` or ``source_error``: the daemon stops and exits non-zero."""
    return status(kind, time, error=error)
