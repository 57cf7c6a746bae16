"""The dominant-beat rule: a beat shaped like the patient's usual beat, on time, is not
ventricular.

A network trained on some patients calls a new patient's wide but normal beats (left or
right bundle branch block, an unusual axis) ventricular: it has not seen that patient's
normal shape. The patient's own running template (:mod:`vitaledge.device.dsp.template`,
the median of the recent windows) knows it. A ventricular ectopic beat differs from the
dominant beat and usually comes early; so a beat the network calls V whose window
correlates with the template above ``min_corr`` and whose pre-RR over the patient's mean
is above ``min_pre_rel`` (not premature) is N.

The thresholds were chosen on DS1 patients only: out-of-fold predictions of the DS1
patient-wise folds (docs/results.md). The rule travels in the manifest's signal spec
(``"dominant"``), so training reports, conversion checks, ``evaluate`` and the daemon
decide the same way; it needs the ``rr`` and ``template`` inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitaledge.device.dsp.rr import FEATURES
from vitaledge.device.dsp.spec_fields import construct, read_fields, require

VENTRICULAR, NORMAL = "V", "N"


def correlation(windows: np.ndarray, templates: np.ndarray) -> np.ndarray:
    """(n,) Pearson correlation of each window with its template (0 for a flat one)."""
    a = np.asarray(windows, np.float64).reshape(len(windows), -1)
    t = np.asarray(templates, np.float64).reshape(len(templates), -1)
    a = a - a.mean(axis=1, keepdims=True)
    t = t - t.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (t * t).sum(axis=1))
    return np.where(den > 0, (a * t).sum(axis=1) / np.where(den > 0, den, 1.0), 0.0)


@dataclass(frozen=True)
class DominantRule:
    """V -> N for beats like the template (``min_corr``) and on time (``min_pre_rel``)."""

    min_corr: float = 0.9
    min_pre_rel: float = 0.9

    def __post_init__(self) -> None:
        require(-1.0 < self.min_corr < 1.0, "min_corr",
                f"expected a correlation in (-1, 1), got {self.min_corr!r}")
        require(self.min_pre_rel > 0, "min_pre_rel",
                f"expected a positive ratio, got {self.min_pre_rel!r}")

    @classmethod
    def from_dict(cls, d: dict, where: str = "dominant") -> DominantRule:
        """From a signal spec's ``dominant`` dict; unknown or missing fields are errors."""
        return construct(cls, read_fields(cls, d, where), where)

    def to_dict(self) -> dict:
        return {"min_corr": float(self.min_corr), "min_pre_rel": float(self.min_pre_rel)}

    def apply(self, pred: np.ndarray, windows: np.ndarray, templates: np.ndarray,
              rr: np.ndarray, labels: list[str]) -> np.ndarray:
        """``pred`` (class indices into ``labels``) with V beats that match the template
        and are not premature turned into N."""
        pred = np.asarray(pred).copy()
        if len(pred) == 0:
            return pred
        v, n = labels.index(VENTRICULAR), labels.index(NORMAL)
        pre_rel = np.asarray(rr, np.float64).reshape(len(pred), -1)[:, FEATURES.index("pre_rel")]
        usual = (correlation(windows, templates) > self.min_corr) & (pre_rel > self.min_pre_rel)
        pred[(pred == v) & usual] = n
        return pred
