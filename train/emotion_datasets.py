"""The ECG emotion data sets ``train emotion-ecg --dataset`` reads: one registry entry
each, with its loader and what it takes, and :func:`load_trials`, which dispatches on it.
Light to import (the CLI builds its choices and option checks from it); a loader imports
:mod:`.emotion_data` when it runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vitaledge.device.cli_shared import option_readers

if TYPE_CHECKING:
    from .emotion_data import TrialSet


@dataclass(frozen=True)
class EcgDataset:
    """A data set: its loader (``data``, then the options as keywords) and what it takes."""

    load: Callable[..., TrialSet]
    #: the options of train emotion-ecg it reads (given with another data set: refused)
    options: tuple[str, ...] = ()
    #: the rating above which valence / arousal is high (None: labels not from ratings)
    threshold: float | None = None
    #: it reads --data (False: generated)
    needs_data: bool = True
    #: said when --data holds none of its trials
    empty_hint: str = ""


def _amigos(data: str, threshold: float, **_) -> TrialSet:
    from .emotion_data import load_amigos

    return load_amigos(data, threshold=threshold)


def _dreamer(data: str, threshold: float, **_) -> TrialSet:
    from .emotion_data import load_dreamer

    return load_dreamer(data, threshold=threshold)


def _wesad(data: str, trust_pickle: bool = False, **_) -> TrialSet:
    from .emotion_data import load_wesad

    return load_wesad(data, trust_pickle=trust_pickle)


def _synth(data: None, synth_subjects: int = 12, synth_trials: int = 2,
           synth_seconds: float = 75.0, seed: int = 0, **_) -> TrialSet:
    from .emotion_data import synth_quadrant_trials

    return synth_quadrant_trials(synth_subjects, synth_trials, synth_seconds, seed=seed)


#: Name -> data set; a new one is one entry here and its loader.
ECG_DATASETS: dict[str, EcgDataset] = {
    "amigos": EcgDataset(_amigos, ("threshold",), threshold=5.0),
    "dreamer": EcgDataset(_dreamer, ("threshold",), threshold=3.0),
    "wesad": EcgDataset(_wesad, ("trust_pickle",), empty_hint=(
        " (WESAD keeps the baseline, stress, amusement and meditation periods, labels 1-4; "
        "these files hold none)")),
    "synth": EcgDataset(_synth, ("synth_subjects", "synth_trials", "synth_seconds"),
                        needs_data=False),
}


#: Option -> the data sets that read it (train emotion-ecg refuses it with the others).
OPTION_READERS = option_readers({name: d.options for name, d in ECG_DATASETS.items()})


def load_trials(dataset: str, data: str | None, threshold: float | None = None,
                trust_pickle: bool = False, synth_subjects: int = 12,
                synth_trials: int = 2, synth_seconds: float = 75.0, seed: int = 0) -> TrialSet:
    """Trials of ``dataset`` (a name of :data:`ECG_DATASETS`) from ``data``."""
    kind = ECG_DATASETS.get(dataset)
    if kind is None:
        raise ValueError(f"unknown dataset {dataset!r}; expected "
                         f"{', '.join(ECG_DATASETS)}")
    if kind.needs_data and data is None:
        raise ValueError(f"--data is required for dataset {dataset!r}")
    ts = kind.load(data, threshold=kind.threshold if threshold is None else threshold,
                   trust_pickle=trust_pickle, synth_subjects=synth_subjects,
                   synth_trials=synth_trials, synth_seconds=synth_seconds, seed=seed)
    if kind.needs_data and not ts.trials:  # was "no trial is long enough": sent one to --hop
        raise ValueError(f"{data}: no {dataset} trial in it{kind.empty_hint}")
    return ts
