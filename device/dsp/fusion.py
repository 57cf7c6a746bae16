"""The fusion rule: the network's F calls are decided as another class (N).

A fusion beat is a sinus and a ventricular beat at once, its shape somewhere between the
patient's own N and V beats: personal twice over. A network trained on other patients
has seen a few hundred of them (DS1 holds 415, 388 of them in 208), and on a new patient
its F calls are almost never F: on DS1's patient-wise 4-fold, over three network seeds and
two detector versions (six runs), 2 of its 8,918 F calls were fusion beats and 8,592 were
N beats, most of them 203's and 124's, whose odd normal beats it took for fusion. Those
calls cost the runs 0.4 to 5.4 points of accuracy and made the fold that tests 203 and 124
swing with the smallest change in the training data (docs/results.md).

The rule decides the network's F calls as ``as_class`` (N), right after the argmax, so the
dominant-beat and premature-beat rules then treat them as they treat N beats (a beat early
and unlike the usual one with a compensatory pause is still V; an early one of normal
shape in a regular rhythm is S). It gives up F: the class keeps its reference beats in the
reports, found by nothing. Manifests written before it read ``fusion`` as null and decide
as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitaledge.device.dsp.spec_fields import construct, read_fields, require

FUSION = "F"
#: The classes F calls may be decided as.
TARGETS = ("N", "V", "Q")


@dataclass(frozen=True)
class FusionRule:
    """The network's F calls become ``as_class``."""

    as_class: str = "N"

    def __post_init__(self) -> None:
        require(self.as_class in TARGETS, "as_class",
                f"expected one of {list(TARGETS)}, got {self.as_class!r}")

    @classmethod
    def from_dict(cls, d, where: str = "fusion") -> FusionRule:
        """From a signal spec's ``fusion`` dict; unknown or missing fields are errors."""
        return construct(cls, read_fields(cls, d, where), where)

    def to_dict(self) -> dict:
        return {"as_class": self.as_class}

    def apply(self, pred: np.ndarray, labels: list[str]) -> np.ndarray:
        """``pred`` (class indices into ``labels``) with every F call made ``as_class``."""
        pred = np.asarray(pred).copy()
        if FUSION in labels:
            pred[pred == labels.index(FUSION)] = labels.index(self.as_class)
        return pred
