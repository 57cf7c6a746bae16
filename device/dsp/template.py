"""The patient's running average beat: each beat's window beside the median of the windows
of the patient's recent beats (or of those that came on time).

A new patient's normal beats can look like nothing in the training set (bundle-branch
block, an unusual axis); what marks a ventricular or fusion beat on any patient is that it
differs from that patient's usual beat. Giving the model the beat and the patient's own
template (the sample-wise median of the previous ``beats`` windows, robust to the odd
ectopic beat) lets it learn "unlike this patient's beats" instead of "unlike the training
patients' beats" (the idea of patient-adaptive heartbeat classification, e.g. Hu, Palreddy
& Tompkins, IEEE TBME 44(9), 1997; Kiranyaz, Ince & Gabbouj, IEEE TBME 63(3), 2016).

The usual beat is the one that comes on time. A median over every recent beat learns the
ectopic beat once it is every other beat (bigeminy) or comes in runs: on DS1, 85 of MIT-BIH
208's ventricular beats matched such a template so closely that the dominant-beat rule
called them normal. With ``on_time = (lo, hi)`` only beats whose pre-RR lies within ``lo``
to ``hi`` times the local mean RR (the ``pre_rr`` and ``local_rr`` RR features) enter the
template: a premature beat (a ventricular ectopic is early) or an escape beat after a pause
does not. The dominant-beat rule compares beats with such a template
(:mod:`vitaledge.device.dsp.dominant`); the network's template input takes every beat
(``on_time`` null: given the network too, it cost V and S on DS1 patients,
docs/results.md).

Causal and in beat order, so the stream computes exactly what training computed:
:class:`BeatTemplate` is the one implementation and :func:`templates` feeds it a record's
windows. A beat with no beat in the history yet (the first of a stream) is its own
template.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from vitaledge.device.dsp.rr import FEATURES

PRE_RR, LOCAL_RR = FEATURES.index("pre_rr"), FEATURES.index("local_rr")


def on_time_bounds(value) -> tuple[float, float]:
    """``on_time`` as a pair of floats ``(lo, hi)`` with 0 < lo < 1 < hi; a ValueError
    saying what is wrong otherwise."""
    ok = (isinstance(value, (tuple, list)) and len(value) == 2
          and all(isinstance(b, (int, float)) and not isinstance(b, bool) and np.isfinite(b)
                  for b in value)
          and 0 < value[0] < 1 < value[1])
    if not ok:
        raise ValueError(f"expected [lo, hi] with 0 < lo < 1 < hi or null, got {value!r}")
    return float(value[0]), float(value[1])


@dataclass(frozen=True)
class TemplateSpec:
    """How the running template is made; saved in the manifest's signal spec."""

    beats: int = 20
    on_time: tuple[float, float] | None = None

    def __post_init__(self):
        if not (isinstance(self.beats, int) and self.beats >= 1):
            raise ValueError(f"template.beats: expected an int >= 1, got {self.beats!r}")
        if self.on_time is not None:
            try:
                object.__setattr__(self, "on_time", on_time_bounds(self.on_time))
            except ValueError as exc:
                raise ValueError(f"template.on_time: {exc}") from None

    def to_dict(self) -> dict:
        return {"beats": self.beats,
                "on_time": None if self.on_time is None else list(self.on_time)}

    @classmethod
    def from_dict(cls, d: dict) -> TemplateSpec:
        """From a signal spec's ``template`` dict; ``on_time`` may be absent (null)."""
        unknown = set(d) - {"beats", "on_time"}
        if unknown:
            raise ValueError(f"template: unknown keys {sorted(unknown)}")
        return cls(**{"on_time": None, **d})

    def pace(self, rr: np.ndarray | None) -> np.ndarray | None:
        """Each beat's pre-RR over its local mean RR from its RR features ``rr`` (n, k), the
        measure ``on_time`` bounds; None when every beat enters the template."""
        if self.on_time is None:
            return None
        if rr is None:
            raise ValueError("template.on_time needs each beat's RR features (an \"rr\" spec)")
        rr = np.asarray(rr, np.float64).reshape(-1, np.shape(rr)[-1])
        return rr[:, PRE_RR] / np.maximum(rr[:, LOCAL_RR], 1e-9)


class BeatTemplate:
    """Streaming: :meth:`push` each beat's window in beat order; it returns that beat's
    template (from the windows before it) and then remembers the window if it came on
    time."""

    def __init__(self, spec: TemplateSpec | None = None):
        self.spec = spec or TemplateSpec()
        self._hist: deque[np.ndarray] = deque(maxlen=self.spec.beats)

    def push(self, window: np.ndarray, pace: float | None = None) -> np.ndarray:
        """``pace``: the beat's pre-RR over its local mean RR (:meth:`TemplateSpec.pace`),
        needed when the spec has ``on_time``."""
        w = np.asarray(window, np.float32)
        t = (np.median(np.stack(self._hist), axis=0).astype(np.float32) if self._hist
             else w.copy())
        bounds = self.spec.on_time
        if bounds is not None and pace is None:
            raise ValueError("template.on_time needs each beat's pre-RR over its local mean RR")
        if bounds is None or bounds[0] <= pace <= bounds[1]:
            self._hist.append(w)
        return t

    def push_all(self, windows: np.ndarray, rr: np.ndarray | None = None) -> np.ndarray:
        """:meth:`push` each of ``windows`` (n, ...) in order; their templates, stacked.
        ``rr``: the beats' RR features (n, k), needed when the spec has ``on_time``."""
        w = np.asarray(windows, np.float32)
        pace = self.spec.pace(rr)
        if pace is not None and len(pace) != len(w):
            raise ValueError(f"template: {len(w)} windows but {len(pace)} RR feature rows")
        if not len(w):
            return np.zeros_like(w)
        return np.stack([self.push(x, None if pace is None else float(pace[i]))
                         for i, x in enumerate(w)])

    def reset(self) -> None:
        """A long hole: another stretch of recording, maybe another electrode placement."""
        self._hist.clear()


def templates(windows: np.ndarray, spec: TemplateSpec | None = None,
              rr: np.ndarray | None = None) -> np.ndarray:
    """(n, length) templates of a record's windows (n, length), in beat order; ``rr``: the
    beats' RR features (n, k), needed when the spec has ``on_time``."""
    return BeatTemplate(spec).push_all(windows, rr)
