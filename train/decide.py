"""Classes of a training-side beat set as the device decides them: the signal spec's
decision (:meth:`vitaledge.device.inputs.beat.BeatSignal.decide`: the similar-beat vote,
the argmax and the decision rules), with each record's beats as one patient in time order.
Training reports, validation, ``evaluate`` and ``convert``'s checks all decide here."""

from __future__ import annotations

import numpy as np

from vitaledge.device.io.aami import CLASSES
from vitaledge.device.io.beats import BeatSet


def decide_beats(signal, probs: np.ndarray, beats: BeatSet) -> np.ndarray:
    """Class indices of ``beats`` from model outputs ``probs``: a decision over a
    patient's beats in time order (the similar-beat vote) runs per record in sample
    order."""
    return signal.decide(probs, list(CLASSES), beats.inputs(), groups=beats.record,
                         times=beats.sample)
