"""The exact, reproducible configuration of one beat-model training run.

Saved as ``config.json`` in the run directory; loading refuses unknown keys so that a stale
or misspelled option is an error, not silently ignored.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from vitaledge.device.dsp.windows import WindowSpec

#: The most networks one model averages (``--ensemble``; vitaledge.train.ensemble).
MAX_ENSEMBLE = 16

#: Networks ``train beat`` averages by default for a model with RR inputs (the default
#: tiny-rrt): on DS1 patient-wise 4-fold, two sets of six seeds both reach V Se and +P
#: >= 85 %, two sets of three only one (docs/results.md, "Six networks averaged").
RR_ENSEMBLE = 6


def check_ensemble(n) -> None:
    """An ensemble size is a whole number of networks, 1 to :data:`MAX_ENSEMBLE`."""
    if isinstance(n, bool) or not (isinstance(n, int) and 1 <= n <= MAX_ENSEMBLE):
        raise ValueError(f"ensemble is a number of networks, 1 to {MAX_ENSEMBLE}, got {n!r}")


#: The values a beat run's decision options take (``train beat``'s choices read them too).
CHOICES = {"s_rule": ("network", "timing"), "v_rule": ("network", "template"),
           "f_rule": ("network", "normal"), "vote": ("none", "similar"),
           "checkpoint": ("best", "average")}

_FRACTION = (lambda v: 0 <= v < 1, "is not a fraction from 0 to under 1")
_AT_LEAST_0 = (lambda v: v >= 0, "is out of range")
_AT_LEAST_1 = (lambda v: v >= 1, "is out of range")
#: The bounds of a config's numbers, once their type is right: (holds, what it says if not).
BOUNDS = {"test_fraction": _FRACTION, "val_fraction": _FRACTION,
          "s_rule_threshold": (lambda v: 0 < v < 1, "is not a probability between 0 and 1"),
          "learning_rate": (lambda v: v >= 1e-12, "is out of range"),
          "s_rule_irregularity": _AT_LEAST_0, "seed": _AT_LEAST_0, "network_seed": _AT_LEAST_0,
          "patience": _AT_LEAST_0, "folds": _AT_LEAST_0, "val_min_support": _AT_LEAST_0,
          "epochs": _AT_LEAST_1, "batch_size": _AT_LEAST_1}

#: What each annotation of a config field accepts from JSON (bool is never a number).
_JSON_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "dict": (dict,),
               "list[str]": (list,)}


def field_problem(name: str, annotation: str, value) -> str | None:
    """Why ``value`` (read from JSON) cannot be the field ``name`` of type ``annotation``
    (``"float"``, ``"list[str] | None"``, ...), or None; other annotations are not checked
    here (their own from_dict does)."""
    kinds = [k.strip() for k in annotation.split("|")]
    if value is None and "None" in kinds:
        return None
    known = [k for k in kinds if k in _JSON_TYPES]
    if len(known) < len(kinds) - ("None" in kinds):
        return None
    for k in known:
        if isinstance(value, _JSON_TYPES[k]) and not isinstance(value, bool):
            if k == "float" and not math.isfinite(value):
                return f"{name}: {value!r} is not a finite number"
            if k == "list[str]" and not all(isinstance(v, str) for v in value):
                return f"{name}: expected a list of names (strings), got {value!r}"
            return None
    return f"{name}: expected {annotation}, got {value!r}"


def check_fields(cls, d: dict) -> None:
    """A ValueError naming the first field of ``d`` whose value has the wrong type, is
    outside its :data:`BOUNDS` or is not one of its :data:`CHOICES` (a config.json edited by
    hand was a TypeError traceback deep in training, or accepted)."""
    for f in fields(cls):
        if f.name not in d:
            continue
        v = d[f.name]
        problem = field_problem(f.name, f.type if isinstance(f.type, str) else
                                getattr(f.type, "__name__", str(f.type)), v)
        if problem is None and v is not None and f.name in BOUNDS and not BOUNDS[f.name][0](v):
            problem = f"{f.name}: {v!r} {BOUNDS[f.name][1]}"
        if problem is None and f.name in CHOICES and v not in CHOICES[f.name]:
            problem = f"{f.name}: {v!r}, expected one of {', '.join(CHOICES[f.name])}"
        if problem:
            raise ValueError(problem)


def known_keys(cls, d: dict) -> dict:
    """A copy of ``d`` once every key is a field of the dataclass ``cls``; a ValueError
    naming the others (a config.json of another version, or edited by hand)."""
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"config: unknown keys {sorted(unknown)}")
    return dict(d)


@dataclass
class BeatTrainConfig:
    arch: str = "resnet1d"
    records: str | None = None  # WFDB directory
    record_list: list[str] | None = None
    csv_train: str | None = None
    csv_test: str | None = None
    lead: str = "MLII"
    window: WindowSpec = field(default_factory=WindowSpec.kachuee)
    split: str = "beat"
    test_fraction: float = 0.2
    test_records: list[str] | None = None
    val_fraction: float = 0.1
    #: a class counts in the validation F1 that picks the epoch only with at least this
    #: many validation beats (vitaledge.train.fit.selection_f1)
    val_min_support: int = 20
    balance: str = "none"
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-3
    patience: int = 6
    #: the weights kept: "best" (the epoch of best validation macro F1, early stopping at
    #: ``patience``) or "average" (every epoch runs; the mean of the second half's weights,
    #: vitaledge.train.weight_average)
    checkpoint: str = "best"
    seed: int = 0
    #: the networks' starting weights: seeds network_seed, network_seed + 1, ... (one per
    #: ensemble member); None: seed's. The split, folds and validation patients stay seed's,
    #: so runs that differ only here measure what the random start does
    network_seed: int | None = None
    task: str = "beat"
    #: where training windows sit: the annotated R peaks or the device detector's
    anchor: str = "annotated"
    #: RR-feature spec (vitaledge.device.dsp.rr.RRSpec as a dict) for models with an "rr"
    #: input; None for window-only models
    rr: dict | None = None
    #: patient-wise folds for ``split="patients"``
    folds: int = 4
    #: the patient's running template (vitaledge.device.dsp.template.TemplateSpec as a
    #: dict) for models with a "template" input
    template: dict | None = None
    #: the N/S decision: "network" (the argmax) or "timing" (the premature-beat rule,
    #: vitaledge.device.dsp.premature, fitted on the training patients; needs RR features)
    s_rule: str = "network"
    #: the rule's probability threshold (chosen on DS1 patients, docs/results.md)
    s_rule_threshold: float = 0.8
    #: the rhythm irregularity (rr feature ``irregularity``) above which the rule calls no
    #: beat S, or None for no such gate (0.1 chosen on DS1 patients, docs/results.md)
    s_rule_irregularity: float | None = 0.1
    #: the fitted rule (PrematureRule as a dict), written by training
    premature: dict | None = None
    #: V as the network says ("network", the argmax) or as the patient's template corrects
    #: it ("template": the dominant-beat rule, vitaledge.device.dsp.dominant: V beats like
    #: the template and on time are N, early unlike beats with a compensatory pause are V;
    #: needs RR features and the template input)
    v_rule: str = "network"
    #: the dominant-beat rule (DominantRule as a dict), written by training
    dominant: dict | None = None
    #: before the class is decided: "none", or "similar" (the similar-beat vote,
    #: vitaledge.device.dsp.similar_beats: each beat's outputs averaged with those of the
    #: patient's earlier beats of the same shape)
    vote: str = "none"
    #: the vote (SimilarBeatVote as a dict), written by training
    similar: dict | None = None
    #: the network's F calls: as it says ("network") or decided as N ("normal": the fusion
    #: rule, vitaledge.device.dsp.fusion; on new patients they are almost never F)
    f_rule: str = "network"
    #: the fusion rule (FusionRule as a dict), written by training
    fusion: dict | None = None
    #: noisy copies of the training records to fit on as well (vitaledge.train.noise_aug.
    #: NoiseAug as a dict); None: the clean records only
    noise_aug: dict | None = None
    #: networks trained on the same beats from seeds seed, seed + 1, ...; their class
    #: probabilities averaged in one model (vitaledge.train.ensemble)
    ensemble: int = 1

    def __post_init__(self):
        check_ensemble(self.ensemble)

    def beat_signal(self):
        """The device's signal spec of this run's model (what the manifest carries)."""
        from vitaledge.device.inputs.beat import DECISION_RULES, BeatSignal

        d = {"kind": "beat", "window": self.window.to_dict(), "lead": self.lead}
        for key in ("rr", "template", *DECISION_RULES):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return BeatSignal.from_dict(d)

    def template_spec(self):
        """The TemplateSpec of ``template`` (None for models without that input)."""
        from vitaledge.device.dsp.template import TemplateSpec

        return None if self.template is None else TemplateSpec.from_dict(self.template)

    def rr_spec(self):
        """The RRSpec of ``rr`` (None for window-only models)."""
        from vitaledge.device.dsp.rr import RRSpec

        return None if self.rr is None else RRSpec.from_dict(self.rr)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["window"] = self.window.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> BeatTrainConfig:
        d = known_keys(cls, d)
        check_fields(cls, d)
        from .splits import SPLITS  # a run of a split that is not (any more): refused at once

        if d.get("split", "beat") not in SPLITS:
            raise ValueError(f"split {d['split']!r}: expected one of {', '.join(SPLITS)}")
        # a config written before the regularity gate existed: its fitted rule has none
        d.setdefault("s_rule_irregularity", None)
        if "window" in d:
            d["window"] = WindowSpec.from_dict(d["window"])
        if d.get("noise_aug") is not None:
            from .noise_aug import NoiseAug

            d["noise_aug"] = NoiseAug.from_dict(d["noise_aug"]).to_dict()
        return cls(**d)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> BeatTrainConfig:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: not a valid training config: {exc}") from exc
