"""What every task's signal spec answers beyond its fields (the manifest's ``signal``): the
names of the model inputs it makes, for the manifest to check, and how a class is decided
from the model's outputs. A spec without decision rules or named inputs inherits these;
the beat model's (:class:`~vitaledge.device.inputs.beat.BeatSignal`) overrides both."""

from __future__ import annotations

import numpy as np


class SignalSpecBase:
    """The defaults: no input names to check, and the argmax as the decision."""

    def input_names(self) -> list[str] | None:
        """The model inputs this spec makes, in the model's order (None: not checked)."""
        return None

    def decide(self, probs: np.ndarray, labels: list[str], inputs: dict | None = None,
               memory=None, groups: np.ndarray | None = None,
               times: np.ndarray | None = None) -> np.ndarray:
        """The class index of each row of ``probs``: its argmax."""
        return np.asarray(probs).argmax(axis=1)
