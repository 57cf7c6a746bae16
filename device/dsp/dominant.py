"""The dominant-beat rule: a beat shaped like the patient's usual beat is not ventricular.

A network trained on some patients calls a new patient's wide but normal beats (left or
right bundle branch block, an unusual axis) ventricular: it has not seen that patient's
normal shape. The patient's own running template (:mod:`vitaledge.device.dsp.template`,
the median of the recent windows) knows it. A ventricular ectopic beat starts in the
ventricles, so its QRS differs from the dominant beat, and it usually comes early. A beat
the network calls V is therefore N:

* when its window correlates with the template above ``min_corr`` and its pre-RR over
  the patient's mean is above ``min_pre_rel`` (like the usual beat and not premature); or
* whatever its timing, when it correlates above ``min_corr_any``: a premature beat shaped
  almost exactly like the patient's sinus beat was conducted through the normal pathway,
  i.e. it is supraventricular, and the premature-beat rule that runs next calls it S by
  its timing. (Before this second condition, two network seeds of three called 207's and
  118's atrial premature beats V by the dozen or hundred; ``None`` turns it off, and manifests
  written before it existed read as ``None``.)

The template it compares with is its own: the median of the patient's recent beats that
came on time (``on_time``: pre-RR within 0.9-1.3 of the local mean RR,
:mod:`vitaledge.device.dsp.template`), not the network's template input, which takes every
beat. In bigeminy or a run the ectopic beats are half the recent beats or more, a median
over all of them becomes ventricular in shape, and the rule then called the run's V beats N
(MIT-BIH 208 and 207 on DS1). Read off the out-of-fold outputs of three network seeds and
retrained, the template of beats on time raised V sensitivity on DS1 by 2-2.5 points at no
loss of +P (docs/results.md). ``on_time`` null (manifests written before it) compares with
the template input, as before. Like the vote, it is causal over one patient's beats in time
order: :meth:`DominantRule.usual` continues a stream's template or runs per patient.

The thresholds were chosen on DS1 patients only: out-of-fold predictions of the DS1
patient-wise folds, ``min_corr_any`` on three network seeds' (docs/results.md). The rule
travels in the manifest's signal spec (``"dominant"``), so training reports, conversion
checks, ``evaluate``, the daemon and the firmware header decide the same way; it needs the
``rr`` and ``template`` inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitaledge.device.dsp.rr import FEATURES
from vitaledge.device.dsp.shape import correlation, patient_rows
from vitaledge.device.dsp.spec_fields import SpecError, construct, read_fields, require
from vitaledge.device.dsp.template import BeatTemplate, TemplateSpec, on_time_bounds

VENTRICULAR, NORMAL = "V", "N"


@dataclass(frozen=True)
class DominantRule:
    """V -> N for beats like the template (``min_corr``) and on time (``min_pre_rel``), or
    very like it (``min_corr_any``) at any time."""

    min_corr: float = 0.9
    min_pre_rel: float = 0.9
    min_corr_any: float | None = 0.95
    on_time: tuple[float, float] | None = (0.9, 1.3)

    def __post_init__(self) -> None:
        require(-1.0 < self.min_corr < 1.0, "min_corr",
                f"expected a correlation in (-1, 1), got {self.min_corr!r}")
        require(self.min_pre_rel > 0, "min_pre_rel",
                f"expected a positive ratio, got {self.min_pre_rel!r}")
        require(self.min_corr_any is None or self.min_corr <= self.min_corr_any < 1.0,
                "min_corr_any", f"expected a correlation in [min_corr, 1) or null, got "
                f"{self.min_corr_any!r}")
        if self.on_time is not None:
            try:
                object.__setattr__(self, "on_time", on_time_bounds(self.on_time))
            except ValueError as exc:
                raise SpecError("on_time", str(exc)) from None

    @classmethod
    def from_dict(cls, d: dict, where: str = "dominant") -> DominantRule:
        """From a signal spec's ``dominant`` dict; unknown or missing fields are errors,
        except ``min_corr_any`` and ``on_time``, which manifests written before them lack
        (read as null)."""
        if isinstance(d, dict):
            d = {"min_corr_any": None, "on_time": None, **d}
        # on_time: a JSON list, checked by __post_init__ like a value given in Python
        return construct(cls, read_fields(cls, d, where, {"on_time": lambda v, _: v}), where)

    def to_dict(self) -> dict:
        return {"min_corr": float(self.min_corr), "min_pre_rel": float(self.min_pre_rel),
                "min_corr_any": (None if self.min_corr_any is None
                                 else float(self.min_corr_any)),
                "on_time": None if self.on_time is None else list(self.on_time)}

    def template_spec(self, beats: int) -> TemplateSpec | None:
        """The spec of the template this rule compares with, over ``beats`` beats (the
        template input's), or None: it compares with the template input."""
        return None if self.on_time is None else TemplateSpec(beats, self.on_time)

    def usual(self, windows: np.ndarray, rr: np.ndarray, spec: TemplateSpec,
              memory: BeatTemplate | None = None, groups: np.ndarray | None = None,
              times: np.ndarray | None = None) -> np.ndarray:
        """(n, L) templates of ``spec`` for the rows of ``windows``: one patient's beats in
        time order continuing a stream's ``memory``, or, with ``groups`` (a patient id per
        row, ``times`` each beat's time), each patient's beats in time order from a fresh
        template."""
        w = np.asarray(windows, np.float32).reshape(len(windows), -1)
        out = np.empty_like(w)
        pace = spec.pace(rr)
        if groups is None:
            if memory is None:
                raise ValueError("dominant-beat rule: its template of the beats on time runs "
                                 "over each patient's beats in time order: give each beat's "
                                 "record and sample, or a stream's memory")
            for i in range(len(w)):
                out[i] = memory.push(w[i], float(pace[i]))
            return out
        for rows in patient_rows(groups, times):
            t = BeatTemplate(spec)
            for i in rows:
                out[i] = t.push(w[i], float(pace[i]))
        return out

    def apply(self, pred: np.ndarray, windows: np.ndarray, templates: np.ndarray,
              rr: np.ndarray, labels: list[str]) -> np.ndarray:
        """``pred`` (class indices into ``labels``) with V beats that match the template
        and are not premature, or match it closely at any time, turned into N."""
        pred = np.asarray(pred).copy()
        if len(pred) == 0:
            return pred
        v, n = labels.index(VENTRICULAR), labels.index(NORMAL)
        pre_rel = np.asarray(rr, np.float64).reshape(len(pred), -1)[:, FEATURES.index("pre_rel")]
        corr = correlation(windows, templates)
        usual = (corr > self.min_corr) & (pre_rel > self.min_pre_rel)
        if self.min_corr_any is not None:
            usual |= corr > self.min_corr_any
        pred[(pred == v) & usual] = n
        return pred

