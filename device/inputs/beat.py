"""The beat classifier's signal spec: which lead, and how a beat window is cut from it.

In the manifest: ``{"kind": "beat", "window": <WindowSpec dict>, "lead": "MLII"}``, and for
a model that also takes each beat's RR features (an input named ``rr``) ``"rr": <RRSpec
dict>``, and for one that takes the patient's running template (input ``template``)
``"template": <TemplateSpec dict>``, and for one whose N/S decision is made by timing
``"premature": <PrematureRule dict>`` (:mod:`vitaledge.device.dsp.premature`; needs ``rr``),
and for one that corrects V by the patient's usual beat (its usual beats out of V, early
unlike beats with a compensatory pause into it) ``"dominant": <DominantRule dict>``
(:mod:`vitaledge.device.dsp.dominant`; needs ``rr`` and ``template``), and for one whose
beats vote with the patient's earlier beats of the same shape ``"similar":
<SimilarBeatVote dict>`` (:mod:`vitaledge.device.dsp.similar_beats`), and for one whose F
calls are decided as another class ``"fusion": <FusionRule dict>``
(:mod:`vitaledge.device.dsp.fusion`).
:meth:`BeatSignal.decide` turns the model's outputs into classes: the one place every
consumer (training reports, conversion checks, ``evaluate``, the daemon) does it.
The window convention, rate, length, filter and normalization are :class:`WindowSpec`'s
(:mod:`vitaledge.device.dsp.windows`), the RR features :mod:`vitaledge.device.dsp.rr`'s and
the template
:mod:`vitaledge.device.dsp.template`'s: the one implementation training uses too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitaledge.device.dsp.dominant import DominantRule
from vitaledge.device.dsp.fusion import FusionRule
from vitaledge.device.dsp.premature import PrematureRule
from vitaledge.device.dsp.rr import RRSpec
from vitaledge.device.dsp.similar_beats import SimilarBeatMemory, SimilarBeatVote
from vitaledge.device.dsp.spec_fields import SpecError, construct, read_fields, require
from vitaledge.device.dsp.template import BeatTemplate, TemplateSpec
from vitaledge.device.dsp.windows import WindowSpec
from vitaledge.device.inputs.signal_spec import SignalSpecBase

KIND = "beat"
#: The spec's fields that decide classes from the model's outputs (they travel with the
#: model) rather than make its inputs: a new model may bring its own.
DECISION_RULES = ("similar", "premature", "dominant", "fusion")


@dataclass
class DecisionMemory:
    """What a stream's decisions carry from one beat of the patient to the next: the
    similar-beat vote's earlier beats and the dominant-beat rule's template of the beats
    on time (each None when the model has no such stage)."""

    vote: SimilarBeatMemory | None = None
    usual: BeatTemplate | None = None


@dataclass(frozen=True)
class BeatSignal(SignalSpecBase):
    """How the beat model's input windows are made from one ECG lead."""

    window: WindowSpec
    lead: str = "MLII"
    kind: str = KIND
    rr: RRSpec | None = None
    template: TemplateSpec | None = None
    premature: PrematureRule | None = None
    dominant: DominantRule | None = None
    similar: SimilarBeatVote | None = None
    fusion: FusionRule | None = None

    def __post_init__(self) -> None:
        require(self.kind == KIND, "kind", f"{self.kind!r} is not {KIND!r}")
        require(self.premature is None or self.rr is not None, "premature",
                "the premature-beat rule needs the RR features (an \"rr\" spec)")
        require(self.premature is None or self.premature.max_irregularity is None
                or "irregularity" in self.rr.features, "premature",
                "the premature-beat rule's max_irregularity needs the \"irregularity\" RR "
                "feature")
        require(self.template is None or self.template.on_time is None or self.rr is not None,
                "template", "a template of the beats on time (\"on_time\") needs the RR "
                "features (an \"rr\" spec)")
        require(self.dominant is None or (self.rr is not None and self.template is not None),
                "dominant", "the dominant-beat rule needs the RR features and the template "
                "(\"rr\" and \"template\" specs)")

    def rule_template(self) -> TemplateSpec | None:
        """The dominant-beat rule's own template (None: no rule, or it reads the input)."""
        return None if self.dominant is None else self.dominant.template_spec(self.template.beats)

    def memory(self) -> DecisionMemory | None:
        """A fresh memory for a stream's decisions (one per patient), or None when no
        stage keeps earlier beats."""
        usual = self.rule_template()
        if self.similar is None and usual is None:
            return None
        return DecisionMemory(None if self.similar is None else self.similar.memory(),
                              None if usual is None else BeatTemplate(usual))

    def decide(self, probs: np.ndarray, labels: list[str], inputs: dict | None = None,
               memory: DecisionMemory | None = None, groups: np.ndarray | None = None,
               times: np.ndarray | None = None) -> np.ndarray:
        """The class index of each beat from the model's outputs ``probs`` (n, k): the
        similar-beat vote, the argmax, the fusion rule (F calls as N), then the
        dominant-beat rule (V beats like the usual
        one to N, early unlike ones with a compensatory pause to V) and the premature-beat
        rule on N/S beats when the spec has them; they read the model's
        ``inputs`` by name (``beat``, ``rr``, ``template``). The vote runs over one
        patient's beats in time order continuing a stream's ``memory``, or over each
        patient of ``groups`` (in ``times`` order) from the start
        (:meth:`SimilarBeatVote.apply`); with a vote, one of them must be given."""
        if all(getattr(self, key) is None for key in DECISION_RULES):
            return np.asarray(probs).argmax(axis=1)
        inputs = inputs if isinstance(inputs, dict) else {}
        need = ((["rr"] if self.premature is not None or self.dominant is not None else [])
                + (["beat", "template"] if self.dominant is not None else [])
                + (["beat"] if self.similar is not None else []))
        missing = [k for k in dict.fromkeys(need) if k not in inputs]
        if missing:
            raise ValueError(f"this beat model's decision rules need its {missing} inputs")
        usual = self.rule_template()
        if (self.similar is not None or usual is not None) and memory is None and groups is None:
            raise ValueError("this beat model's decisions run over each patient's beats in time "
                             "order: give each beat's record and sample, or a stream's memory "
                             "(a heldout.npz written before the vote lacks them: run convert "
                             "again)")
        if self.similar is not None:
            probs = self.similar.apply(probs, inputs["beat"],
                                       None if memory is None else memory.vote, groups, times)
        pred = np.asarray(probs).argmax(axis=1)
        if self.fusion is not None:
            pred = self.fusion.apply(pred, labels)
        if self.dominant is not None:
            template = (inputs["template"] if usual is None else self.dominant.usual(
                inputs["beat"], inputs["rr"], usual, None if memory is None else memory.usual,
                groups, times))
            pred = self.dominant.apply(pred, inputs["beat"], template, inputs["rr"], labels)
        if self.premature is not None:
            pred = self.premature.apply(pred, inputs["rr"], labels)
        return pred

    def input_names(self) -> list[str]:
        """The model inputs this spec makes, in the model's order."""
        return (["beat"] + (["rr"] if self.rr is not None else [])
                + (["template"] if self.template is not None else []))

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "window": self.window.to_dict(), "lead": self.lead}
        if self.rr is not None:
            d["rr"] = self.rr.to_dict()
        if self.template is not None:
            d["template"] = self.template.to_dict()
        for key in DECISION_RULES:
            if getattr(self, key) is not None:
                d[key] = getattr(self, key).to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict | BeatSignal, where: str = "signal") -> BeatSignal:
        """From a manifest's ``signal`` dict; unknown or missing fields are errors (``rr``,
        ``template``, ``premature``, ``dominant``, ``similar`` and ``fusion`` may be
        absent)."""
        if isinstance(d, BeatSignal):
            return d
        if isinstance(d, dict):
            d = {"rr": None, "template": None, "premature": None, "dominant": None,
                 "similar": None, "fusion": None, **d}
        return construct(cls, read_fields(cls, d, where, {"window": WindowSpec.from_dict,
                                                          "rr": _read_rr,
                                                          "template": _read_template,
                                                          "premature": _read_premature,
                                                          "dominant": _read_dominant,
                                                          "similar": _read_similar,
                                                          "fusion": _read_fusion}),
                         where)


def _read_rr(value, path: str) -> RRSpec | None:
    if value is None:
        return None
    try:
        return RRSpec.from_dict(value)
    except (TypeError, ValueError) as exc:
        raise SpecError(path, str(exc).removeprefix("rr.").removeprefix("rr: ")) from None


def _read_template(value, path: str) -> TemplateSpec | None:
    if value is None:
        return None
    try:
        return TemplateSpec.from_dict(value)
    except (TypeError, ValueError) as exc:
        raise SpecError(path, str(exc).removeprefix("template.").removeprefix("template: "))\
            from None


def _read_premature(value, path: str) -> PrematureRule | None:
    return None if value is None else PrematureRule.from_dict(value, path)


def _read_dominant(value, path: str) -> DominantRule | None:
    return None if value is None else DominantRule.from_dict(value, path)


def _read_similar(value, path: str) -> SimilarBeatVote | None:
    return None if value is None else SimilarBeatVote.from_dict(value, path)


def _read_fusion(value, path: str) -> FusionRule | None:
    return None if value is None else FusionRule.from_dict(value, path)
