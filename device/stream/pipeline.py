"""Streaming ECG in, beat events out: filter -> R-peak detection -> beat window -> model.

Everything is driven by sample counts, so feeding a record in chunks of any size gives the
same beats, windows and classes as feeding it whole. Windows follow the model manifest's
signal spec (either convention, with the kachuee running median RR computed from the
detected beats), cut at the source rate and resampled to the model's.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from vitaledge.device.dsp.filters import CausalFilter
from vitaledge.device.dsp.rhythm import RhythmStats
from vitaledge.device.dsp.rpeaks import RPeakDetector
from vitaledge.device.dsp.rr import RRFeatures
from vitaledge.device.dsp.signal_buffer import SignalBuffer
from vitaledge.device.dsp.windows import Cut, median_rr, plan_cut, window_from_span
from vitaledge.device.model.runtime import Model
from vitaledge.device.stream import events as event


class SignalError(ValueError):
    """The input stream is unusable as given (NaN samples, wrong rate ...)."""


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

    def __init__(self, model: Model, fs: float, start_time: float = 0.0):
        if model.manifest.task != "beat":
            raise SignalError(f"model task {model.manifest.task!r} is not a beat classifier")
        self.model = model
        self.fs = float(fs)
        self.start_time = start_time
        self.spec = model.manifest.signal.window  # typed and checked with the manifest
        self._filter = CausalFilter(self.spec.filter, self.fs)
        self._buf = SignalBuffer()
        self._detector = RPeakDetector(self.fs)
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

    @property
    def min_source_fs(self) -> float:
        """Windows are made at the model's rate; a slower stream cannot be upsampled."""
        return float(self.spec.fs)

    def face(self, frame) -> list[dict]:
        """Camera frames are not for this stage."""
        return []

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
        if n_missing <= self.WARM_GAP_S * self.fs:
            self._detector = self._detector.resumed()
        else:
            self._detector = RPeakDetector(self.fs)
            self._rr_hist.clear()
        self._last_r = None
        self.gaps += 1
        return events

    def swap_model(self, model: Model) -> None:
        """Replace the model (hot reload); its window and RR specs must equal the current
        ones."""
        old = self.model.manifest.signal
        if (model.manifest.task != "beat" or model.manifest.signal.window != self.spec
                or model.manifest.signal.rr != old.rr):
            raise SignalError("new model's task, window or RR spec differs from the running "
                              "model's; restart the daemon to change them")
        self.model = model

    def process(self, chunk: np.ndarray) -> list[dict]:
        x = np.asarray(chunk, dtype=np.float64).ravel()
        if not np.all(np.isfinite(x)):
            bad = int(np.argmax(~np.isfinite(x)))
            raise SignalError(f"non-finite sample at stream index {self.samples_in + bad}")
        self.samples_in += len(x)
        self._buf.append(self._filter.process(x))
        for r in self._detector.process(x):
            self._queue(r)
        return self._classify_ready(final=False)

    def flush(self) -> list[dict]:
        """End of stream: decide the last beats; windows that cannot complete are dropped."""
        for r in self._detector.flush():
            self._queue(r)
        if self._rrf is not None:
            for r_abs, feats in self._rrf.flush():
                self._attach(r_abs, feats)
        return self._classify_ready(final=True)

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
        return p.cut.stop <= self._buf.end and (self._rrf is None or p.feats is not None)

    def _classify_ready(self, final: bool) -> list[dict]:
        ready: list[_Pending] = []
        wins = []
        while self._pending and self._ready(self._pending[0]):
            p = self._pending.popleft()
            if p.cut.start < self._buf.start:
                self.dropped_edge += 1
                continue
            wins.append(window_from_span(self._buf.get(p.cut.start, p.cut.stop), p.cut,
                                         self.fs, self.spec))
            ready.append(p)
        if final:
            self.dropped_edge += len(self._pending)
            self._pending.clear()
        keep = (self._pending[0].cut.start if self._pending
                else self._buf.end - int(4 * self.fs))
        self._buf.trim(min(keep, self._buf.end - int(4 * self.fs)))
        if not ready:
            return []
        if self._rrf is None:
            probs = self.model.predict(np.stack(wins))
        else:
            probs = self.model.predict({"beat": np.stack(wins),
                                        "rr": np.stack([p.feats for p in ready])})
        events = []
        for p, pr in zip(ready, probs, strict=True):
            r_abs = self._offset + p.r
            k = int(np.argmax(pr))
            label = self.model.labels[k]
            rr_s = None if p.rr is None else p.rr / self.fs
            self.stats.add(label, rr_s)
            events.append(event.beat(round(self.start_time + r_abs / self.fs, 4), r_abs, label,
                                     event.probabilities(self.model.labels, pr), rr_s))
        return events


def run_record(model: Model, signal: np.ndarray, fs: float, chunk: int | None = None) -> list[dict]:
    """All beat events of a whole signal, optionally fed in chunks of ``chunk`` samples."""
    pipe = BeatPipeline(model, fs)
    events: list[dict] = []
    step = chunk or len(signal)
    for i in range(0, len(signal), step):
        events += pipe.process(signal[i:i + step])
    return events + pipe.flush()
