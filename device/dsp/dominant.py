"""The dominant-beat rule: a beat shaped like the patient's usual beat is not ventricular,
and an early beat unlike it, followed by a full compensatory pause, is.

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

The converse (``compensatory``): a beat the network did not call V is V when its window
is unlike the template (correlation below ``max_corr``), it comes early (pre-RR over the
patient's mean below ``max_pre_rel``) and the pause after it is compensatory (pre-RR plus
post-RR above ``min_pause`` times the mean). That is the textbook sign of a premature
ventricular beat: it does not reset the sinus node, so the next sinus beat comes when it
would have, two cycles after the last one; an atrial premature beat resets it, and the
pause after it is shorter. A network trained on other patients called many of a new
patient's ventricular beats something else when they looked unlike anything it had
learned as V (on DS1, 223's and 106's N, 215's S and F); the timing and the patient's own
usual beat tell. A beat invented by noise between two real ones has no such pause (pre
plus post is one cycle), nor has the real beat after it when early (pre plus post under
1.9 cycles); a missed beat after an early one, or a window
made unlike the template by noise, can still meet it (on DS1's noise-stress copies it
found more true V than it added false ones; docs/results.md). Manifests written before
it read ``compensatory`` as null.

The thresholds were chosen on DS1 patients only, on the out-of-fold predictions of the
DS1 patient-wise folds of three network seeds (docs/results.md). ``min_corr`` and
``min_corr_any`` were first chosen (0.9 and 0.95) against the template of every beat; the
template of the beats on time holds sinus beats only, and against it 0.75 and 0.9 free
more of a new patient's usual beats the network calls V at no cost in S (DS1, retrained,
means of three network seeds: V +P +2.7 points, Se -0.8). The rule travels in the
manifest's signal spec (``"dominant"``), so training reports, conversion checks,
``evaluate``, the daemon and the firmware header decide the same way; it needs the ``rr``
and ``template`` inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitaledge.device.dsp.rr import FEATURES
from vitaledge.device.dsp.shape import correlation, patient_rows
from vitaledge.device.dsp.spec_fields import SpecError, construct, read_fields, require
from vitaledge.device.dsp.template import BeatTemplate, TemplateSpec, on_time_bounds

VENTRICULAR, NORMAL = "V", "N"
#: The classes the rule decides between: a model's labels must hold them.
LABELS = (NORMAL, VENTRICULAR)


@dataclass(frozen=True)
class CompensatoryPause:
    """Not-V -> V for beats unlike the template (correlation below ``max_corr``), early
    (``pre_rel`` below ``max_pre_rel``) and followed by a compensatory pause (``pre_rel +
    post_rel`` above ``min_pause``). Chosen on DS1 patients (docs/results.md)."""

    max_corr: float = 0.7
    max_pre_rel: float = 0.9
    min_pause: float = 1.9

    def __post_init__(self) -> None:
        require(-1.0 < self.max_corr < 1.0, "max_corr",
                f"expected a correlation in (-1, 1), got {self.max_corr!r}")
        require(0 < self.max_pre_rel < 1.0, "max_pre_rel",
                f"expected a ratio in (0, 1): an early beat, got {self.max_pre_rel!r}")
        require(self.min_pause > 1.0, "min_pause",
                f"expected a ratio above 1 (pre plus post RR over the mean RR), got "
                f"{self.min_pause!r}")

    @classmethod
    def from_dict(cls, d, where: str) -> CompensatoryPause | None:
        """From the dominant rule's ``compensatory`` dict, or None for null."""
        return None if d is None else construct(cls, read_fields(cls, d, where), where)

    def to_dict(self) -> dict:
        return {"max_corr": float(self.max_corr), "max_pre_rel": float(self.max_pre_rel),
                "min_pause": float(self.min_pause)}

    def ventricular(self, corr: np.ndarray, rr: np.ndarray) -> np.ndarray:
        """(n,) bool: which beats, of correlations ``corr`` with the template and RR
        feature rows ``rr``, are early, unlike the usual beat and followed by a pause."""
        pre = rr[:, FEATURES.index("pre_rel")]
        post = rr[:, FEATURES.index("post_rel")]
        return (corr < self.max_corr) & (pre < self.max_pre_rel) & (pre + post > self.min_pause)


@dataclass(frozen=True)
class DominantRule:
    """V -> N for beats like the template (``min_corr``) and on time (``min_pre_rel``), or
    very like it (``min_corr_any``) at any time; -> V for early beats unlike it followed by
    a compensatory pause (``compensatory``)."""

    min_corr: float = 0.75
    min_pre_rel: float = 0.9
    min_corr_any: float | None = 0.9
    on_time: tuple[float, float] | None = (0.9, 1.3)
    compensatory: CompensatoryPause | None = CompensatoryPause()

    def __post_init__(self) -> None:
        require(-1.0 < self.min_corr < 1.0, "min_corr",
                f"expected a correlation in (-1, 1), got {self.min_corr!r}")
        require(self.min_pre_rel > 0, "min_pre_rel",
                f"expected a positive ratio, got {self.min_pre_rel!r}")
        require(self.min_corr_any is None or self.min_corr <= self.min_corr_any < 1.0,
                "min_corr_any", f"expected a correlation in [min_corr, 1) or null, got "
                f"{self.min_corr_any!r}")
        require(self.compensatory is None or self.compensatory.max_corr <= self.min_corr,
                "compensatory.max_corr", f"expected at most min_corr ({self.min_corr!r}), got "
                f"{None if self.compensatory is None else self.compensatory.max_corr!r}: a "
                "beat cannot be both like the usual beat and unlike it")
        if self.on_time is not None:
            try:
                object.__setattr__(self, "on_time", on_time_bounds(self.on_time))
            except ValueError as exc:
                raise SpecError("on_time", str(exc)) from None

    @classmethod
    def from_dict(cls, d: dict, where: str = "dominant") -> DominantRule:
        """From a signal spec's ``dominant`` dict; unknown or missing fields are errors,
        except ``min_corr_any``, ``on_time`` and ``compensatory``, which manifests written
        before them lack (read as null)."""
        if isinstance(d, dict):
            d = {"min_corr_any": None, "on_time": None, "compensatory": None, **d}
        # on_time: a JSON list, checked by __post_init__ like a value given in Python
        return construct(cls, read_fields(cls, d, where, {
            "on_time": lambda v, _: v, "compensatory": CompensatoryPause.from_dict}), where)

    def to_dict(self) -> dict:
        return {"min_corr": float(self.min_corr), "min_pre_rel": float(self.min_pre_rel),
                "min_corr_any": (None if self.min_corr_any is None
                                 else float(self.min_corr_any)),
                "on_time": None if self.on_time is None else list(self.on_time),
                "compensatory": (None if self.compensatory is None
                                 else self.compensatory.to_dict())}

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
        rr = np.asarray(rr)
        if groups is None:
            if memory is None:
                raise ValueError("dominant-beat rule: its template of the beats on time runs "
                                 "over each patient's beats in time order: give each beat's "
                                 "record and sample, or a stream's memory")
            return memory.push_all(w, rr)
        out = np.empty_like(w)
        for rows in patient_rows(groups, times):
            out[rows] = BeatTemplate(spec).push_all(w[rows], rr[rows])
        return out

    def apply(self, pred: np.ndarray, windows: np.ndarray, templates: np.ndarray,
              rr: np.ndarray, labels: list[str]) -> np.ndarray:
        """``pred`` (class indices into ``labels``) with V beats that match the template
        and are not premature, or match it closely at any time, turned into N; and other
        beats early, unlike it and followed by a compensatory pause turned into V."""
        pred = np.asarray(pred).copy()
        if len(pred) == 0:
            return pred
        v, n = labels.index(VENTRICULAR), labels.index(NORMAL)
        rr = np.asarray(rr, np.float64).reshape(len(pred), -1)
        corr = correlation(windows, templates)
        usual = (corr > self.min_corr) & (rr[:, FEATURES.index("pre_rel")] > self.min_pre_rel)
        if self.min_corr_any is not None:
            usual |= corr > self.min_corr_any
        pred[(pred == v) & usual] = n
        if self.compensatory is not None:
            pred[self.compensatory.ventricular(corr, rr)] = v
        return pred

