"""What ``vitaledge evaluate`` does with each task's runs: the options they read besides
``--data``, and the function that scores a run with them. A new task is one entry of
:data:`EVALUATORS` (its data readers: :data:`.emotion_evaluate.EMOTION_DATA`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .emotion_evaluate import EMOTION_DATA, Ask, evaluate_emotion
from .evaluate import BEAT_EVALUATE_OPTIONS, evaluate_model


@dataclass(frozen=True)
class Request:
    """What ``evaluate`` was given besides the model (lists already split)."""

    data: tuple[str, ...] = ()
    records: list[str] | None = None
    csv: str | None = None
    split: str = "test"
    actors: list[str] | None = None
    calm: str | None = None
    corpus: str = "auto"
    cache_dir: str | None = None
    no_cache: bool = False


class OptionError(ValueError):
    """A value the task cannot use; ``option`` is the option that gave it."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class Evaluator:
    """A task's ``evaluate``: the options (besides ``--data``) its runs read, and
    ``score(model, request) -> (metrics, report text)``."""

    options: tuple[str, ...]
    score: Callable[[Path, Request], tuple[dict, str]]


def score_beat(model: Path, req: Request) -> tuple[dict, str]:
    """A beat run on its held-out beats, the beats of ``--data DIR`` (``--records`` of
    them) or a Kaggle-layout ``--csv``."""
    if len(req.data) > 1 or (req.data and not Path(req.data[0]).is_dir()):
        raise OptionError("--data", "beat models take one WFDB directory")
    if req.records and not req.data:  # it was ignored: the run's own beats were scored
        raise OptionError("--records", "picks records of --data DIR; give --data too")
    return evaluate_model(model, records=req.data[0] if req.data else None,
                          record_list=req.records, csv=req.csv, split=req.split)


def score_emotion(model: Path, req: Request) -> tuple[dict, str]:
    """An emotion run on its held-out inputs or on ``--data`` recordings
    (:func:`.emotion_evaluate.evaluate_emotion`)."""
    from .speech_cache import default_cache_dir

    cache = None if req.no_cache else str(req.cache_dir or default_cache_dir())
    return evaluate_emotion(model, Ask(list(req.data), req.actors, req.calm, req.corpus,
                                       cache))


#: Each task's ``evaluate``.
EVALUATORS: dict[str, Evaluator] = {
    "beat": Evaluator(BEAT_EVALUATE_OPTIONS, score_beat),
    **{task: Evaluator(d.options, score_emotion) for task, d in EMOTION_DATA.items()},
}
