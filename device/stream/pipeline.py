"""Streaming ECG in, beat events out: filter -> R-peak detection -> beat check -> beat window
-> model.

Everything is driven by sample counts, so feeding a record in chunks of any size gives the
same beats, windows and classes as feeding it whole. Windows follow the model manifest's
signal spec (either convention, with the kachuee running median RR computed from the
detected beats), cut at the source rate and resampled to the model's.

Signal-quality gating (on unless ``gating=False``; :mod:`~.dsp.signal_quality_index`):
every 2 s block is judged good, doubtful or unreadable from the 8 s before its end. Beats
in unreadable blocks are not classified and make no event; beats in doubtful blocks carry
``"quality": "doubtful"``; beats in good blocks keep the event exactly as without gating
(no ``quality`` field, so existing consumers see nothing new on clean signal). Each run of
doubtful or unreadable blocks (cut into pieces of at most ``MAX_RUN_S``, and ended by a
hole) gives one ``doubtful``/``unreadable`` status event with its start, end and reason.
A beat waits for its block's judgement: up to ``block_s + delay_s`` (3 s) more latency, and
for the beat check (:mod:`~.dsp.beat_check`, about 4 s after the beat; the two waits
overlap).
The samples are cut at the judgement points, so beats and status events come out in the
same order for any chunking.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from vitaledge.device.dsp.beat_check import BeatCheck
from vitaledge.device.dsp.filters import CausalFilter
from vitaledge.device.dsp.rhythm import RhythmStats
from vitaledge.device.dsp.rpeaks import RPeakDetector
from vitaledge.device.dsp.rr import RRFeatures
from vitaledge.device.dsp.signal_buffer import SignalBuffer
from vitaledge.device.dsp.signal_quality_index import (
    GOOD,
    UNREADABLE,
    BlockQuality,
    QualityIndex,
    QualitySpec,
)
from vitaledge.device.dsp.template import BeatTemplate
from vitaledge.device.dsp.windows import Cut, median_rr, plan_cut, window_from_span
from vitaledge.device.model.runtime import Model
from vitaledge.device.stream import events as event


class SignalError(ValueError):
    """The input stream is unusable as given (NaN samples, wrong rate ...)."""


class StreamShapeError(ValueError):
    """The stream has another number of channels than the model reads. Unlike a
    :class:`SignalError` (one chunk refused, the next may do) no chunk of such a stream can
    be used, so the daemon stops with it: refused chunk by chunk, a multimodal model on a
    one-lead record ran to the end and exited 0, and an ECG model read a two-column
    session as one interleaved ECG."""


def one_channel(chunk: np.ndarray) -> np.ndarray:
    """``chunk`` as one channel, (n,) or (n, 1); more columns are a StreamShapeError."""
    x = np.asarray(chunk, dtype=np.float64)
    if x.ndim == 2 and x.shape[1] != 1 or x.ndim > 2:
        raise StreamShapeError(f"the stream has {x.shape[-1]} channels per sample (a chunk "
                               f"shaped {list(x.shape)}); this model reads one ECG lead")
    return x.ravel()


def check_finite(x: np.ndarray, at: int) -> None:
    """A :class:`SignalError` naming the stream index (``at`` + row) of the first
    non-finite sample of ``x``: one channel (n,) or several (n, c)."""
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.argmax(bad.reshape(len(x), -1).any(axis=1)))
        raise SignalError(f"non-finite sample at stream index {at + row}")


@dataclass
class _Pending:
    r: int
    rr: float | None
    cut: Cut
    feats: np.ndarray | None = None  # RR features, once the next R peak has come


class BeatPipeline:
    """Turns a stream of ECG samples (physical units, one lead) into beat events.

    The beat :class:`~.stages.Stage`; it wants the daemon's signal monitor in front of it
    (faulty stretches arrive as gaps) and a stream at least as fast as its windows."""

    task = "beat"
    #: the daemon cuts stream faults (NaN, saturation, lead-off) out before this stage
    wants_signal_monitor = True
    #: its events are beats: the daemon's no-beats watch applies, and gating
    emits_beats = True

    #: A run of doubtful/unreadable blocks is reported in pieces at most this long, so a
    #: live stream hears of a long one while it lasts.
    MAX_RUN_S = 30.0

    def __init__(self, model: Model, fs: float, start_time: float = 0.0,
                 gating: bool = True, quality: QualitySpec | None = None,
                 lead: str = "MLII"):
        if model.manifest.task != "beat":
            raise SignalError(f"model task {model.manifest.task!r} is not a beat classifier")
        self.model = model
        self.fs = float(fs)
        self.start_time = start_time
        self.spec = model.manifest.signal.window  # typed and checked with the manifest
        self._filter = CausalFilter(self.spec.filter, self.fs)
        self._buf = SignalBuffer()
        self._detector = RPeakDetector(self.fs)
        self._check = BeatCheck(self.fs, lead=lead)  # adds beats only on its net's leads
        self._pending: deque[_Pending] = deque()
        self._rr_hist: deque[float] = deque(maxlen=self.spec.rr_context)
        self._last_r: int | None = None
        self.stats = RhythmStats(model.labels)
        self.samples_in = 0
        self.dropped_edge = 0
        self._offset = 0  # absolute index of the detector/buffer's sample 0
        self.gaps = 0
        rr_spec = model.manifest.signal.rr
        # A model with RR features classifies a beat once its post-RR is known: when the
        # next R peak is found (or the stream ends or breaks).
        self._rrf = RRFeatures(self.fs, rr_spec) if rr_spec is not None else None
        t_spec = model.manifest.signal.template
        self._tmpl = BeatTemplate(t_spec) if t_spec is not None else None
        #: what the decisions keep of this stream's beats: the similar-beat vote's and the
        #: dominant-beat rule's template (a DecisionMemory; None without either)
        self.memory = self._memory(model)
        self.quality_spec = quality or QualitySpec()
        self.quality_counts = {"good_s": 0.0, "doubtful_s": 0.0, "unreadable_s": 0.0,
                               "flagged_beats": 0, "gated_beats": 0,
                               "checked_out_beats": 0, "added_beats": 0}
        self.quality_reasons: dict[str, float] = {}  # seconds flagged per reason
        self.set_gating(gating)

    @property
    def decided_samples(self) -> int:
        """Absolute stream position up to which beats are decided: where the beat check has
        decided its beats and, when gating, the end of the judged quality blocks (what the
        no-beats watch measures pauses against, so these delays are not taken for a
        pause)."""
        checked = self._offset + self._checked_until()
        return min(self._judged, checked) if self._quality is not None else checked

    def set_gating(self, on: bool) -> None:
        """Turn signal-quality gating on or off (before the first sample)."""
        if self.samples_in:
            raise SignalError("gating can only be set before the stream starts")
        self.gating = bool(on)
        self._quality = (QualityIndex(self.fs, self.quality_spec, self._detector)
                         if on else None)
        self._blocks: deque[BlockQuality] = deque()  # judged, still needed by beats
        self._judged = 0  # absolute end of the judged blocks
        self._run: list | None = None  # [state, start, stop, reasons] of a flagged run

    @property
    def min_source_fs(self) -> float:
        """Windows are made at the model's rate; a slower stream cannot be upsampled."""
        return float(self.spec.fs)

    def face(self, frame) -> list[dict]:
        """Camera frames are not for this stage."""
        return []

    #: Signal kept before the beat check's decided point for beats still to come: one the
    #: detector reports later than the check waits for (given when it comes after the last
    #: beat given), and a window reaches back up to 1 s before its R peak (more with a
    #: resampling filter or a long ``before``).
    KEEP_S = 6.0

    #: Holes up to this long keep the detector's learned levels and the RR history (the
    #: heart goes on beating through a lead-off); longer ones start from scratch.
    WARM_GAP_S = 30.0

    def gap(self, n_missing: int) -> list[dict]:
        """Samples were lost: finish what can be finished, then restart detection after
        the hole so that no beat is made of signal on both sides of it."""
        events = self.flush()
        if self._rrf is not None:
            self._rrf.gap(n_missing / self.fs)  # no interval across the hole
        self._offset = self.samples_in + int(n_missing)
        self.samples_in = self._offset
        self._filter.reset()
        self._buf = SignalBuffer()
        self._check = BeatCheck(self.fs, self._check.net, lead=self._check.lead)
        if n_missing <= self.WARM_GAP_S * self.fs:
            self._detector = self._detector.resumed()
        else:
            self._detector = RPeakDetector(self.fs)
            self._rr_hist.clear()
            if self._tmpl is not None:
                self._tmpl.reset()
            self.memory = self._memory(self.model)
        if self._quality is not None:
            self._quality = self._quality.resumed(self._offset, self._detector)
            self._blocks.clear()
            self._judged = self._offset
        self._last_r = None
        self.gaps += 1
        return events

    def swap_model(self, model: Model) -> None:
        """Replace the model (hot reload); its window and RR specs must equal the current
        ones."""
        old = self.model.manifest.signal
        if (model.manifest.task != "beat" or model.manifest.signal.window != self.spec
                or model.manifest.signal.rr != old.rr
                or model.manifest.signal.template != old.template):
            raise SignalError("new model's task, window or RR spec differs from the running "
                              "model's; restart the daemon to change them")
        same = (model.manifest.sha256 == self.model.manifest.sha256
                and model.manifest.signal.similar == old.similar
                and model.manifest.signal.dominant == old.dominant)
        self.model = model
        if not same:  # another network's outputs do not vote; the same one's (a reload,
            self.memory = self._memory(model)  # probation passed) keep their memory

    @staticmethod
    def _memory(model: Model):
        """A fresh memory for the model's decisions over the patient's beats (the
        similar-beat vote's, the dominant-beat rule's template; None without them)."""
        return model.manifest.signal.memory()

    def process(self, chunk: np.ndarray) -> list[dict]:
        x = one_channel(chunk)
        check_finite(x, self.samples_in)
        if self._quality is None:
            self.samples_in += len(x)
            self._buf.append(self._filter.process(x))
            for r in self._checked(x, self._detector.process(x)):
                self._queue(r)
            return self._classify_ready(final=False)
        events: list[dict] = []
        while len(x):  # pieces ending at the judgement points: the same order any chunking
            take = min(len(x), max(1, self._quality.due() - self.samples_in))
            piece, x = x[:take], x[take:]
            self.samples_in += len(piece)
            self._buf.append(self._filter.process(piece))
            peaks, blocks = self._quality.process(piece)
            for r in self._checked(piece, peaks):
                self._queue(r)
            events += self._classify_ready(final=False)
            if blocks:
                events += self._judged_blocks(blocks)
                events += self._classify_ready(final=False)
        return events

    def flush(self) -> list[dict]:
        """End of stream: decide the last beats; windows that cannot complete are dropped."""
        peaks, blocks = (self._quality.flush() if self._quality is not None
                         else (self._detector.flush(), []))
        for r in self._checked(None, peaks):
            self._queue(r)
        if self._rrf is not None:
            for r_abs, feats in self._rrf.flush():
                self._attach(r_abs, feats)
        events = self._classify_ready(final=False)
        events += self._judged_blocks(blocks) + self._end_run()
        return events + self._classify_ready(final=True)

    def _checked_until(self) -> int:
        """Samples since the last hole whose beats the beat check has decided."""
        return self._check.decided(self.samples_in - self._offset)

    def _checked(self, x: np.ndarray | None, peaks: list[int]) -> list[int]:
        """The beats the beat check gives for the detector's ``peaks`` (``x`` None: the end
        of the stream), counting the detections it drops and the beats it adds."""
        dropped, added = self._check.dropped, self._check.added
        given = self._check.flush(peaks) if x is None else self._check.process(x, peaks)
        self.quality_counts["checked_out_beats"] += self._check.dropped - dropped
        self.quality_counts["added_beats"] += self._check.added - added
        return given

    # -- signal quality ------------------------------------------------------------------
    def _judged_blocks(self, blocks: list[BlockQuality]) -> list[dict]:
        """Record judged blocks; the status events of flagged runs that ended."""
        events: list[dict] = []
        for b in blocks:
            self.quality_counts[f"{b.state}_s"] += (b.stop - b.start) / self.fs
            if b.state != GOOD:
                self.quality_reasons[b.reason] = (self.quality_reasons.get(b.reason, 0.0)
                                                  + (b.stop - b.start) / self.fs)
            self._blocks.append(b)
            self._judged = b.stop
            run = self._run
            if run is not None and (run[0] != b.state or run[2] != b.start
                                    or run[2] - run[1] >= self.MAX_RUN_S * self.fs):
                events += self._end_run()
            if b.state != GOOD:
                if self._run is None:
                    self._run = [b.state, b.start, b.stop, []]
                self._run[2] = b.stop
                self._run[3].append(b.reason)
        return events

    def _end_run(self) -> list[dict]:
        if self._run is None:
            return []
        state, a, b, reasons = self._run
        self._run = None
        reason = max(set(reasons), key=reasons.count)
        return [event.quality_run(state, round(self.start_time + a / self.fs, 4),
                                  round(self.start_time + b / self.fs, 4), a, b, reason)]

    def _state_at(self, r_abs: int) -> str:
        """The judged state of the block holding absolute sample ``r_abs``."""
        while self._blocks and self._blocks[0].stop <= r_abs:
            self._blocks.popleft()
        return self._blocks[0].state if self._blocks else GOOD

    def _queue(self, r: int) -> None:
        rr = None if self._last_r is None else float(r - self._last_r)
        if rr is not None:
            self._rr_hist.append(rr)
        self._last_r = r
        med = median_rr(np.asarray(self._rr_hist), self.spec, self.fs)
        self._pending.append(_Pending(r, rr, plan_cut(r, med, self.fs, self.spec)))
        if self._rrf is not None:
            for r_abs, feats in self._rrf.push(self._offset + r):
                self._attach(r_abs, feats)

    def _attach(self, r_abs: int, feats: np.ndarray) -> None:
        """Give the pending beat at absolute sample ``r_abs`` its RR features."""
        for p in reversed(self._pending):
            if self._offset + p.r == r_abs:
                p.feats = feats
                return

    def _ready(self, p: _Pending) -> bool:
        return (p.cut.stop <= self._buf.end and (self._rrf is None or p.feats is not None)
                and (self._quality is None or self._offset + p.r < self._judged))

    def _classify_ready(self, final: bool) -> list[dict]:
        ready: list[_Pending] = []
        wins = []
        states: list[str] = []
        while self._pending and self._ready(self._pending[0]):
            p = self._pending.popleft()
            state = GOOD if self._quality is None else self._state_at(self._offset + p.r)
            if state == UNREADABLE:
                self.quality_counts["gated_beats"] += 1
                continue
            if p.cut.start < self._buf.start:
                self.dropped_edge += 1
                continue
            states.append(state)
            wins.append(window_from_span(self._buf.get(p.cut.start, p.cut.stop), p.cut,
                                         self.fs, self.spec))
            ready.append(p)
        if final:
            self.dropped_edge += len(self._pending)
            self._pending.clear()
        # beats still to come lie after the check's decided point (all but one reported
        # later than the check waits for): keep their windows
        back = self._checked_until() - int(self.KEEP_S * self.fs)
        keep = self._pending[0].cut.start if self._pending else back
        self._buf.trim(min(keep, back))
        if not ready:
            return []
        inputs = {"beat": np.stack(wins)}
        if self._rrf is None and self._tmpl is None:
            probs = self.model.predict(inputs["beat"])
        else:
            if self._rrf is not None:
                inputs["rr"] = np.stack([p.feats for p in ready])
            if self._tmpl is not None:
                inputs["template"] = self._tmpl.push_all(wins, inputs.get("rr"))
            probs = self.model.predict(inputs)
        classes = self.model.decide(probs, inputs, memory=self.memory) \
            if self._rrf is not None or self.memory is not None else np.argmax(probs, axis=1)
        events = []
        for p, pr, state, k in zip(ready, probs, states, classes, strict=True):
            r_abs = self._offset + p.r
            label = self.model.labels[int(k)]
            rr_s = None if p.rr is None else p.rr / self.fs
            self.stats.add(label, rr_s)
            if state != GOOD:
                self.quality_counts["flagged_beats"] += 1
            events.append(event.beat(round(self.start_time + r_abs / self.fs, 4), r_abs, label,
                                     event.probabilities(self.model.labels, pr), rr_s,
                                     quality=None if state == GOOD else state))
        return events

    def quality_summary(self) -> dict:
        """Seconds judged per state, beats flagged doubtful and beats gated (unreadable),
        detections the beat check dropped as noise and beats it added, and the seconds
        flagged (doubtful or unreadable) per reason; and the beat check's lead, the leads its
        network was trained on and whether it adds beats on this one."""
        check = self._check
        return {"gating": self.gating,
                "beat_check": ({"lead": check.lead, "trained_on": list(check.net.leads),
                                "adds": check.adds} if check.on else None),
                **{k: round(v, 1) if isinstance(v, float) else v
                   for k, v in self.quality_counts.items()},
                "flagged_reasons_s": {k: round(v, 1) for k, v in
                                      sorted(self.quality_reasons.items(), key=lambda kv: -kv[1])}}


def run_record(model: Model, signal: np.ndarray, fs: float, chunk: int | None = None,
               gating: bool = True, lead: str = "MLII") -> list[dict]:
    """All events of a whole signal of ``lead`` (beats, and the quality runs when gating),
    optionally fed in chunks of ``chunk`` samples."""
    pipe = BeatPipeline(model, fs, gating=gating, lead=lead)
    events: list[dict] = []
    step = chunk or len(signal)
    for i in range(0, len(signal), step):
        events += pipe.process(signal[i:i + step])
    return events + pipe.flush()
