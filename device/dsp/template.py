"""The patient's running average beat: each beat's window beside the median of the windows
of the beats before it.

A new patient's normal beats can look like nothing in the training set (bundle-branch
block, an unusual axis); what marks a ventricular or fusion beat on any patient is that it
differs from that patient's usual beat. Giving the model the beat and the patient's own
template (the sample-wise median of the previous ``beats`` windows, robust to the odd
ectopic beat) lets it learn "unlike this patient's beats" instead of "unlike the training
patients' beats" (the idea of patient-adaptive heartbeat classification, e.g. Hu, Palreddy
& Tompkins, IEEE TBME 44(9), 1997; Kiranyaz, Ince & Gabbouj, IEEE TBME 63(3), 2016).

Causal and in beat order, so the stream computes exactly what training computed:
:class:`BeatTemplate` is the one implementation and :func:`templates` feeds it a record's
windows. The first beat of a stream, with no history, is its own template.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class TemplateSpec:
    """How the running template is made; saved in the manifest's signal spec."""

    beats: int = 20

    def __post_init__(self):
        if not (isinstance(self.beats, int) and self.beats >= 1):
            raise ValueError(f"template.beats: expected an int >= 1, got {self.beats!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TemplateSpec:
        unknown = set(d) - {"beats"}
        if unknown:
            raise ValueError(f"template: unknown keys {sorted(unknown)}")
        return cls(**d)


class BeatTemplate:
    """Streaming: :meth:`push` each beat's window in beat order; it returns that beat's
    template (from the windows before it) and then remembers the window."""

    def __init__(self, spec: TemplateSpec | None = None):
        self.spec = spec or TemplateSpec()
        self._hist: deque[np.ndarray] = deque(maxlen=self.spec.beats)

    def push(self, window: np.ndarray) -> np.ndarray:
        w = np.asarray(window, np.float32)
        t = (np.median(np.stack(self._hist), axis=0).astype(np.float32) if self._hist
             else w.copy())
        self._hist.append(w)
        return t

    def reset(self) -> None:
        """A long hole: another stretch of recording, maybe another electrode placement."""
        self._hist.clear()


def templates(windows: np.ndarray, spec: TemplateSpec | None = None) -> np.ndarray:
    """(n, length) templates of a record's windows (n, length), in beat order."""
    t = BeatTemplate(spec)
    return (np.stack([t.push(w) for w in windows]) if len(windows)
            else np.zeros_like(np.asarray(windows, np.float32)))
