"""Window -> model -> event stages on one sample stream, and a fan-out over several.

Every stage satisfies :class:`Stage`, the calls the daemon makes.
:class:`~.pipeline.BeatPipeline` is the beat stage; this module adds

* :class:`EcgEmotionStage`: the ECG emotion model on sliding 48 s windows of the same
  ECG stream (window, hop and baseline rule from the manifest's signal spec);
* :class:`SpeechEmotionStage`: the speech model on sliding clips of an audio stream;
* :class:`MultimodalStage`: the ECG+GSR+face model on a two-channel stream and face frames
  (replayed from a session file, :mod:`.sessions`);
* :class:`FanOut`: several stages fed the same stream, so one ECG stream yields beat
  events and emotion estimates.

:data:`STAGES` maps each manifest task to the function that makes its stage;
:func:`stage_for` picks from it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol, runtime_checkable

import numpy as np

from vitaledge.device.model.manifest import input_key
from vitaledge.device.model.runtime import Model
from vitaledge.device.stream import events as event
from vitaledge.device.stream.pipeline import (
    BeatPipeline,
    SignalError,
    StreamShapeError,
    check_finite,
    one_channel,
)


class StageStats(Protocol):
    def summary(self) -> dict: ...


@runtime_checkable
class Stage(Protocol):
    """What the daemon calls on a stage: one model on one sample stream.

    ``process``, ``gap``, ``face`` and ``flush`` return the events they make (in stream
    order); ``swap_model`` hot-reloads a model of the same ``task`` and signal spec or
    raises :class:`SignalError`. ``wants_signal_monitor`` asks the daemon to cut stream
    faults out (as gaps) before they reach the stage; ``decided_samples`` is the stream
    position up to which its events are final; ``min_source_fs`` is the slowest
    stream the stage can use (None: any). ``emits_beats``: its events are beats, so the
    daemon watches for them stopping (``no_beats``) and ``set_gating`` turns its
    signal-quality gating on or off (a no-op for the others); ``quality_summary`` gives
    the gate's figures for ``/health`` and the metrics (None for a stage without a gate)."""

    task: str
    fs: float
    model: Model
    samples_in: int
    dropped_edge: int
    gaps: int
    stats: StageStats
    wants_signal_monitor: bool
    emits_beats: bool

    def set_gating(self, on: bool) -> None: ...

    def quality_summary(self) -> dict | None: ...

    @property
    def decided_samples(self) -> int: ...

    @property
    def min_source_fs(self) -> float | None: ...

    def process(self, chunk: np.ndarray) -> list[dict]: ...

    def gap(self, n_missing: int) -> list[dict]: ...

    def face(self, frame) -> list[dict]: ...

    def flush(self) -> list[dict]: ...

    def swap_model(self, model: Model) -> None: ...


class LabelStats:
    """Counts of the estimates per label and the latest one."""

    def __init__(self, task: str, labels: list[str]):
        self.task = task
        self.counts: Counter[str] = Counter()
        self.labels = labels
        self.last: dict | None = None

    def add(self, event: dict) -> None:
        self.counts[event["class"]] += 1
        self.last = {"time": event["time"], "class": event["class"]}

    def summary(self) -> dict:
        return {"task": self.task, "estimates": sum(self.counts.values()),
                "classes": {lab: self.counts.get(lab, 0) for lab in self.labels},
                "last": self.last}


def _check_finite(x: np.ndarray, at: int) -> np.ndarray:
    x = one_channel(x)
    check_finite(x, at)
    return x


class WindowStage:
    """Shared bookkeeping of the emotion stages: sample counting, events, model swap."""

    task = ""
    wants_signal_monitor = False
    emits_beats = False
    min_source_fs: float | None = None
    #: The stage's windows step by its signal spec's ``hop_s``, which the daemon's hop
    #: replaces (a stage without one steps by a hop of its own)
    signal_hop = False

    def __init__(self, model: Model, fs: float, start_time: float = 0.0,
                 hop_s: float | None = None):
        if model.manifest.task != self.task:
            raise SignalError(f"model task {model.manifest.task!r} is not {self.task!r}")
        self.model = model
        # the manifest's (typed, checked) signal spec, with the daemon's hop when one is
        # configured and the stage steps by its spec's hop
        self.signal = model.manifest.signal
        if hop_s and self.signal_hop:
            self.signal = replace(self.signal, hop_s=float(hop_s))
        self.fs = float(fs)
        self.start_time = start_time
        self.samples_in = 0
        self.dropped_edge = 0
        self.gaps = 0
        self.stats = LabelStats(self.task, model.labels)

    @property
    def decided_samples(self) -> int:
        """A window's event is final when it is made: every sample in is decided."""
        return self.samples_in

    def swap_model(self, model: Model) -> None:
        if model.manifest.task != self.task or model.manifest.signal != self.model.manifest.signal:
            raise SignalError("new model's task or signal spec differs from the running "
                              "model's; restart the daemon to change them")
        self.model = model

    def face(self, frame) -> list[dict]:
        """Camera frames, for the stages that use faces; the others ignore them."""
        return []

    def set_gating(self, on: bool) -> None:
        """No beats, no beat gating: nothing to turn."""

    def quality_summary(self) -> None:
        """No signal-quality gate, no figures."""
        return None

    def _events(self, batch, ends: list[int], length: int) -> list[dict]:
        """Classify ``batch`` (what ``Model.predict`` takes: stacked windows, or a list of
        stacked inputs for a multi-input model) and make one event per window."""
        if not ends:
            return []
        probs = self.model.predict(batch)
        events = []
        for end, pr in zip(ends, probs, strict=True):
            label = self.model.labels[int(np.argmax(pr))]
            ev = event.emotion(self.task, round(self.start_time + end / self.fs, 4), end,
                               round(length / self.fs, 3), label,
                               event.probabilities(self.model.labels, pr))
            self.stats.add(ev)
            events.append(ev)
        return events


class EcgEmotionStage(WindowStage):
    """ECG emotion estimates every ``hop_s`` from the stream's sliding 48 s window.

    The windower (``device.emotion_ecg.EcgEmotionWindower``) defines the baseline as the
    mean of the stream's first seconds; after a gap the stream restarts as a new trial."""

    task = "emotion-ecg"
    signal_hop = True

    def __init__(self, model: Model, fs: float, start_time: float = 0.0,
                 hop_s: float | None = None):
        super().__init__(model, fs, start_time, hop_s)
        self._restart(0)

    def _restart(self, offset: int) -> None:
        from vitaledge.device.inputs.emotion_ecg import EcgEmotionWindower

        self._win = EcgEmotionWindower(self.signal, self.fs)
        self._offset = offset
        # Segment geometry at the model's rate, as the windower computes it.
        s, fs_model = self.signal, float(self.signal.fs)
        self._ratio = self.fs / fs_model
        self._first_out = int(round((s.baseline_s + s.skip_s) * fs_model))
        self._hop_out = max(1, int(round(s.hop_s * fs_model)))
        self._seg_out = int(round(s.window_s * fs_model)) * int(s.n_windows)
        self._length = int(round(self._seg_out * self._ratio))

    def process(self, chunk: np.ndarray) -> list[dict]:
        x = _check_finite(chunk, self.samples_in)
        self.samples_in += len(x)
        inputs = self._win.push(x)
        first_index = self._win.n_emitted - len(inputs)
        ends = [self._offset + int(round((self._first_out + (first_index + k) * self._hop_out
                                          + self._seg_out) * self._ratio))
                for k in range(len(inputs))]
        return self._events(np.stack(inputs) if inputs else None, ends, self._length)

    def gap(self, n_missing: int) -> list[dict]:
        self.samples_in += int(n_missing)
        self.gaps += 1
        self._restart(self.samples_in)
        return []

    def flush(self) -> list[dict]:
        return []


class SpeechEmotionStage(WindowStage):
    """Speech emotion estimates on sliding clips of an audio stream.

    A clip is ``offset_s + duration_s`` seconds (what the model saw per file in training),
    taken every ``hop_s`` (default: half a clip). At the end of the stream, audio that never
    filled a clip but holds at least ``offset_s + min_duration_s`` seconds is classified
    as one clip (zero-padded as in training), so a short utterance still gets an estimate.
    """

    task = "emotion-speech"

    def __init__(self, model: Model, fs: float, start_time: float = 0.0,
                 hop_s: float | None = None):
        super().__init__(model, fs, start_time, hop_s)
        self.spec = model.manifest.signal
        if self.spec.feature_norm == "speaker":  # refused at start, not at the first clip
            raise SignalError("the model standardizes by speaker (feature_norm 'speaker'): a "
                              "stream has no speaker's clips to take the statistics from; "
                              "train with --feature-norm utterance for a device")
        self._length = int(round((self.spec.offset_s + self.spec.duration_s) * self.fs))
        self._hop = int(round((hop_s or (self.spec.offset_s + self.spec.duration_s) / 2)
                              * self.fs))
        if self._hop <= 0:
            raise SignalError(f"hop {hop_s} s is not positive")
        self._restart(0)

    def _restart(self, offset: int) -> None:
        self._buf = np.zeros(0)
        self._buf_start = offset      # absolute index of _buf[0]
        self._next = offset           # absolute start of the next clip
        self._emitted_since_restart = 0

    def _clip(self, start: int, stop: int) -> np.ndarray:
        from vitaledge.device.inputs.mel import model_input

        a, b = start - self._buf_start, stop - self._buf_start
        return model_input(self._buf[a:b], self.fs, self.spec, source="audio stream")

    def process(self, chunk: np.ndarray) -> list[dict]:
        x = _check_finite(chunk, self.samples_in)
        self.samples_in += len(x)
        self._buf = np.concatenate([self._buf, x])
        inputs, ends = [], []
        while self._next + self._length <= self._buf_start + len(self._buf):
            inputs.append(self._clip(self._next, self._next + self._length))
            ends.append(self._next + self._length)
            self._next += self._hop
            self._emitted_since_restart += 1
        drop = self._next - self._buf_start
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf_start = self._next
        return self._events(np.stack(inputs) if inputs else None, ends, self._length)

    def _tail(self) -> list[dict]:
        need = int(round((self.spec.offset_s + self.spec.min_duration_s) * self.fs))
        end = self._buf_start + len(self._buf)
        if self._emitted_since_restart or end - self._next < need:
            return []
        self._emitted_since_restart += 1
        return self._events(self._clip(self._next, end)[None], [end], end - self._next)

    def gap(self, n_missing: int) -> list[dict]:
        events = self._tail()
        self.samples_in += int(n_missing)
        self.gaps += 1
        self._restart(self.samples_in)
        return events

    def flush(self) -> list[dict]:
        return self._tail()


class MultimodalStage(WindowStage):
    """The multimodal model (seed 001) on a two-channel [ECG, GSR] stream plus face frames.

    ``face(frame)`` hands over camera frames as they come; each window (every ``hop_s`` of
    ``window_s`` seconds, after the stream's first ``calib_s`` seconds of calibration, see
    ``device.multimodal.MultimodalWindower``) is paired with the latest frame taken at or
    before the window's end. A window with no frame yet is reported, not classified."""

    task = "emotion-multimodal"
    signal_hop = True

    def __init__(self, model: Model, fs: float, start_time: float = 0.0,
                 hop_s: float | None = None):
        from vitaledge.device.inputs.multimodal import MultimodalWindower

        super().__init__(model, fs, start_time, hop_s)
        if abs(float(self.signal.fs) - self.fs) > 1e-6:
            raise SignalError(f"stream is {self.fs} Hz, the multimodal model expects "
                              f"{self.signal.fs} Hz ECG/GSR")
        self._make = lambda: MultimodalWindower(self.signal)
        # window geometry in stream samples, as the windower cuts them
        self._calib = int(round(self.signal.calib_s * self.fs))
        self._length = int(round(self.signal.window_s * self.fs))
        self._hop = max(1, int(round(self.signal.hop_s * self.fs)))
        self._restart(0)
        self._frames: list = []          # (time_s, image), oldest first
        self.order = [input_key(t.name) for t in model.manifest.inputs]
        self.skipped_no_face = 0

    def _restart(self, offset: int) -> None:
        self._win = self._make()
        self._offset = offset     # stream index where the windower's stream begins
        self._n_windows = 0       # windows cut since then

    def face(self, frame) -> list[dict]:
        self._frames.append((float(frame.time_s), frame.image))
        return []

    def process(self, chunk: np.ndarray) -> list[dict]:
        x = np.asarray(chunk, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != 2:
            raise StreamShapeError(f"the multimodal model needs [ecg, gsr] columns, got a "
                                   f"chunk shaped {list(x.shape)}")
        check_finite(x, self.samples_in)
        self.samples_in += len(x)
        windows = self._win.push(x[:, 0], x[:, 1])
        from vitaledge.device.inputs.face import face_input

        inputs, ends, events = [], [], []
        for w in windows:
            end = (self._offset + self._calib + self._n_windows * self._hop + self._length)
            self._n_windows += 1
            t_end = end / self.fs
            frames = [f for f in self._frames if f[0] <= t_end]
            if not frames:
                self.skipped_no_face += 1
                events.append(event.no_face(round(self.start_time + t_end, 3)))
                continue
            inputs.append({**w, "face": face_input(frames[-1][1])})
            ends.append(end)
        # a later window can use only frames after the next window's end and the latest one
        # before it
        t_next = (self._offset + self._calib + self._n_windows * self._hop
                  + self._length) / self.fs
        older = [f for f in self._frames if f[0] <= t_next]
        self._frames = older[-1:] + [f for f in self._frames if f[0] > t_next]
        if inputs:
            batch = [np.stack([inp[name] for inp in inputs]) for name in self.order]
            events += self._events(batch, ends, self._length)
        return events

    def gap(self, n_missing: int) -> list[dict]:
        self.samples_in += int(n_missing)
        self.gaps += 1
        self._restart(self.samples_in)
        return []

    def flush(self) -> list[dict]:
        return []


class FanOut:
    """Several stages on one stream, each fed every call. The first is the primary stage:
    its figures (samples, rate, model, rhythm statistics) stand for the stream."""

    def __init__(self, stages: list[Stage]):
        if not stages:
            raise ValueError("FanOut needs at least one stage")
        self.stages = stages

    @property
    def primary(self) -> Stage:
        return self.stages[0]

    @property
    def samples_in(self) -> int:
        return self.primary.samples_in

    @property
    def decided_samples(self) -> int:
        """The stream position up to which the first stage's events are final (a gated beat
        stage decides its beats only once their quality block is judged)."""
        return self.primary.decided_samples

    @property
    def fs(self) -> float:
        return self.primary.fs

    @property
    def model(self) -> Model:
        return self.primary.model

    @property
    def stats(self) -> StageStats:
        return self.primary.stats

    @property
    def dropped_edge(self) -> int:
        return self.primary.dropped_edge

    @property
    def gaps(self) -> int:
        return self.primary.gaps

    def process(self, chunk: np.ndarray) -> list[dict]:
        return [e for s in self.stages for e in s.process(chunk)]

    def gap(self, n_missing: int) -> list[dict]:
        return [e for s in self.stages for e in s.gap(n_missing)]

    def face(self, frame) -> list[dict]:
        """A camera frame, for the stages that use faces."""
        return [e for s in self.stages for e in s.face(frame)]

    def flush(self) -> list[dict]:
        return [e for s in self.stages for e in s.flush()]

    def swap_model(self, model: Model) -> None:
        """Give ``model`` to the stage of its task (the others keep theirs)."""
        for s in self.stages:
            if s.task == model.manifest.task:
                s.swap_model(model)
                return
        raise SignalError(f"no running stage takes a {model.manifest.task!r} model")

    def summary(self) -> dict:
        return {s.task: s.stats.summary() for s in self.stages}


def beat_stage(model: Model, fs: float, hop_s: float | None = None,
               lead: str = "MLII") -> Stage:
    """The beat stage on ``lead``; beats have no hop (one event per detected beat)."""
    return BeatPipeline(model, fs, lead=lead)


def window_stage(cls: type[WindowStage]) -> Callable[..., Stage]:
    """The factory of an emotion stage, which takes the daemon's hop."""
    def make(model: Model, fs: float, hop_s: float | None = None,
             lead: str = "MLII") -> Stage:
        return cls(model, fs, hop_s=hop_s)
    make.__doc__ = cls.__doc__
    return make


#: Manifest task -> ``make(model, fs, hop_s, lead)``; a new task's stage is one entry here.
STAGES: dict[str, Callable[..., Stage]] = {
    "beat": beat_stage,
    "emotion-ecg": window_stage(EcgEmotionStage),
    "emotion-speech": window_stage(SpeechEmotionStage),
    "emotion-multimodal": window_stage(MultimodalStage),
}


def stage_for(model: Model, fs: float, hop_s: float | None = None,
              lead: str = "MLII") -> Stage:
    """The stage that runs ``model`` on a stream of ``lead`` at ``fs`` Hz."""
    task = model.manifest.task
    if task not in STAGES:
        raise SignalError(f"model task {task!r} has no streaming stage (known: "
                          f"{', '.join(STAGES)})")
    return STAGES[task](model, fs, hop_s, lead)
