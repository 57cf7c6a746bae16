"""The similar-beat vote: a new patient's beats of one shape get one answer.

A network trained on other patients is unsure of a new patient's beats, and its mistakes
are scattered: of a hundred beats of one shape it calls most of them right and some of
them wrong. The patient's own recent beats know better. Before the class is decided, each
beat's class probabilities are averaged with those of the previous ``beats`` beats of the
same patient whose window correlates with its own above ``min_corr`` (the network's own
outputs for them, not their voted ones). A beat with no such neighbour keeps its own.

Causal (only earlier beats vote), so the daemon decides a beat as soon as it is classified
and the batch evaluation of a record decides exactly what a stream of it does
(:class:`SimilarBeatMemory` carries the earlier beats from one call to the next). The
windows compared are the model's ``beat`` input.

``beats`` and ``min_corr`` were read off the out-of-fold predictions of the DS1
patient-wise folds of three network seeds (docs/results.md, "The similar-beat vote"); the
vote travels in the manifest's signal spec (``"similar"``), so training reports,
conversion checks, ``evaluate``, the daemon and the firmware header decide the same way.
numpy only: this is on the daemon's import path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitaledge.device.dsp.shape import patient_rows, unit_rows
from vitaledge.device.dsp.spec_fields import construct, read_fields, require


class SimilarBeatMemory:
    """One patient's last ``beats`` windows (as :func:`~.shape.unit_rows`) and network
    outputs, float32 as a microcontroller keeps them: the state the vote carries from one
    beat to the next."""

    def __init__(self, beats: int) -> None:
        self.beats = beats
        self.windows: np.ndarray | None = None  # (beats, L) ring, allocated on first use
        self.probs: np.ndarray | None = None    # (beats, k)
        self.count = 0                          # beats seen (the ring holds the last ones)

    def vote(self, unit: np.ndarray, probs: np.ndarray, min_corr: float) -> np.ndarray:
        """The voted outputs of one beat (``unit``: its window as a unit row), then the
        beat joins the memory with its own outputs."""
        if self.windows is None:
            self.windows = np.zeros((self.beats, len(unit)), np.float32)
            self.probs = np.zeros((self.beats, len(probs)), np.float32)
        held = min(self.count, self.beats)
        out = np.asarray(probs, np.float64)
        if held:
            near = self.windows[:held] @ unit > min_corr
            if near.any():
                out = (out + self.probs[:held][near].sum(axis=0)) / (1 + int(near.sum()))
        slot = self.count % self.beats
        self.windows[slot] = unit
        self.probs[slot] = probs
        self.count += 1
        return out


@dataclass(frozen=True)
class SimilarBeatVote:
    """Average each beat's outputs with those of the patient's previous ``beats`` beats
    whose window correlates with its own above ``min_corr``."""

    beats: int = 300
    min_corr: float = 0.95

    def __post_init__(self) -> None:
        require(isinstance(self.beats, int) and not isinstance(self.beats, bool)
                and 1 <= self.beats <= 10_000, "beats",
                f"expected a whole number of beats in [1, 10000], got {self.beats!r}")
        require(-1.0 < self.min_corr < 1.0, "min_corr",
                f"expected a correlation in (-1, 1), got {self.min_corr!r}")

    @classmethod
    def from_dict(cls, d: dict, where: str = "similar") -> SimilarBeatVote:
        """From a signal spec's ``similar`` dict; unknown or missing fields are errors."""
        return construct(cls, read_fields(cls, d, where), where)

    def to_dict(self) -> dict:
        return {"beats": int(self.beats), "min_corr": float(self.min_corr)}

    def memory(self) -> SimilarBeatMemory:
        """An empty memory: one per patient (per stream)."""
        return SimilarBeatMemory(self.beats)

    def apply(self, probs: np.ndarray, windows: np.ndarray,
              memory: SimilarBeatMemory | None = None, groups: np.ndarray | None = None,
              times: np.ndarray | None = None) -> np.ndarray:
        """The voted outputs of every row of ``probs`` (outputs for ``windows``), in the
        rows' order. The rows are one patient's beats in time order, continuing
        ``memory`` (a stream's; without it, a fresh one); or, with ``groups`` (a patient
        id per row) and optionally ``times`` (each beat's time), each patient's beats are
        voted in time order from a fresh memory."""
        probs = np.asarray(probs, np.float64)
        if len(probs) != len(windows):
            raise ValueError(f"similar-beat vote: {len(probs)} outputs for {len(windows)} "
                             "windows")
        out = probs.copy()
        if len(probs) == 0:
            return out
        units = unit_rows(windows, np.float32)
        if groups is None:
            mem = memory if memory is not None else self.memory()
            for i in range(len(probs)):
                out[i] = mem.vote(units[i], probs[i], self.min_corr)
            return out
        if memory is not None:
            raise ValueError("similar-beat vote: give a stream's memory or groups, not both")
        for rows in patient_rows(groups, times):
            mem = self.memory()
            for i in rows:
                out[i] = mem.vote(units[i], probs[i], self.min_corr)
        return out
