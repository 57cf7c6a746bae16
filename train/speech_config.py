"""A speech-emotion training run's settings (``config.json``) and the choices each takes:
the splits, optimizers, schedules, class weights, checkpoints and named recipes. Light to
import (no TensorFlow), so the CLI builds its options from these tables."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vitaledge.device.inputs.mel import SpeechSignal

from .config import check_ensemble, known_keys
from .speech_data import EMOTIONS, LABELS_WITH_CALM

TASK = "emotion-speech"


@dataclass(frozen=True)
class SpeechSplit:
    """One way a speech run holds out clips (``--split``): its help, the options only it
    reads, whether it is the leave-speakers-out K-fold (run fold by fold by
    :func:`.speech_folds.run_speaker_folds`), whether its validation part is whole speakers
    (recorded as ``val_actors``), whether it has no test speakers (scored on the validation
    speakers), and the sentence that describes a run's split (``describe(cfg, who)``, with
    ``who`` the speakers of each part, named with their gender where known)."""

    help: str
    describe: Callable[..., str]
    reads: tuple[str, ...] = ()
    folds: bool = False
    by_speaker: bool = False
    test_is_val: bool = False


#: ``--split`` name -> its entry; a new split is one entry here (and how it makes its parts,
#: :func:`.speech.make_parts`: by speaker, or :func:`.speech_data.split_clips`).
SPEECH_SPLITS: dict[str, SpeechSplit] = {
    "actor": SpeechSplit(
        "given test speakers",
        lambda cfg, who: (f"speaker-independent: test speakers {who['test']}; "
                          f"fit/validation from {who['fit']} (validation "
                          f"{cfg.val_fraction:.0%} of their clips, stratified)"),
        reads=("test_actors",)),
    "actors": SpeechSplit(
        "leave-speakers-out K-fold",
        lambda cfg, who: (f"leave-speakers-out fold {cfg.fold}/{cfg.folds}: test speakers "
                          f"{who['test']}; validation speakers {who['val']}; fit speakers "
                          f"{who['fit']}"),
        reads=("folds", "fold"), folds=True, by_speaker=True),
    "none": SpeechSplit(
        "every speaker trains (final model)",
        lambda cfg, who: (f"every speaker trains (no test speakers): fit speakers "
                          f"{who['fit']}; validation speakers {who['val']}, scored as the "
                          "held-out set"),
        by_speaker=True, test_is_val=True),
    "random": SpeechSplit(
        "stratified by clip",
        lambda cfg, who: (f"random stratified: test {cfg.test_fraction:.0%}, validation "
                          f"{cfg.val_fraction:.0%} of the rest; speakers mixed"),
        reads=("test_fraction",)),
}
SPLITS = tuple(SPEECH_SPLITS)
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine", "plateau")
CLASS_WEIGHTS = ("none", "balanced")
#: The weights a run keeps: those of the epoch with the best validation accuracy (the
#: seed's), those after the last epoch, or those of the best validation accuracy among the
#: second half of the epochs (a schedule run to its end, its early noisy peaks passed over),
#: or the mean of the weights after each epoch of the second half, BatchNorm statistics
#: recomputed (:mod:`.weight_average`: no epoch is chosen on the validation speakers).
CHECKPOINTS = ("best", "last", "late-best", "average")

#: Named recipes: the values of the levers each sets (explicit options override them).
#: ``robust`` has no gain jitter (its per-utterance standardization removes the level) and
#: no SpecAugment masks: over the whole cosine schedule, masks cost 4.6, 0.0, 4.6 and 10.5
#: accuracy points on the four 16-speaker folds (docs/results.md, "Speech, 16 speakers");
#: the levers stay for other corpora. ``robust`` plays training clips at speed 0.9, 1 or 1.1
#: (speed perturbation): +1.3 to +4.2 accuracy points on every one of those folds. It keeps
#: the best epoch of the second half of its cosine schedule: on two validation speakers an
#: early epoch can win by noise (the final model's validation accuracy swung between 0.15
#: and 0.66, and its "best" was epoch 9 of 40, at 0.52 training accuracy), while on the four
#: folds every best epoch was in the second half (32-38) and beat the last epoch by 1.1
#: points on average (docs/results.md). And it trains three networks from three seeds and
#: keeps their average (:mod:`.ensemble`): one network's accuracy on new speakers moves by
#: up to 10 points with its random start (47.1 to 57.5 % on one fold), and over the four
#: folds the three-network model scored 60.2 % against 56.1 % for its members on average.
RECIPES: dict[str, dict] = {
    "seed": {"arch": "tdcnnlstm_speech", "optimizer": "sgd", "learning_rate": 0.01,
             "schedule": "constant", "feature_norm": "none", "time_masks": 0,
             "time_mask_width": 0, "freq_masks": 0, "freq_mask_width": 0, "gain_db": 0.0,
             "class_weights": "none", "speed_perturb": 0.0, "checkpoint": "best",
             "ensemble": 1},
    "robust": {"arch": "cnn_speech", "optimizer": "adam", "learning_rate": 1e-3,
               "schedule": "cosine", "feature_norm": "utterance", "time_masks": 0,
               "time_mask_width": 0, "freq_masks": 0, "freq_mask_width": 0, "gain_db": 0.0,
               "class_weights": "balanced", "speed_perturb": 0.1,
               "checkpoint": "late-best", "ensemble": 3},
}


def recipe_values(recipe: str, **overrides) -> dict:
    """The recipe's lever values with the given non-None ``overrides`` applied."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; expected one of {sorted(RECIPES)}")
    return {**RECIPES[recipe], **{k: v for k, v in overrides.items() if v is not None}}


@dataclass
class SpeechTrainConfig:
    """One speech-emotion training run, saved as ``config.json`` (unknown keys refused)."""

    data: list[str] = field(default_factory=list)  # corpus directories (merged)
    corpus: str = "auto"
    calm: str = "neutral"
    synth_per_class: int = 0       # > 0: synthetic clips instead of ``data``
    synth_speakers: int = 4
    split: str = "actor"           # actor | actors (K-fold) | none | random
    test_actors: list[str] | None = None
    val_actors: list[str] | None = None   # filled in when validation is carved by speaker
    folds: int = 4                 # split "actors": leave-speakers-out folds
    fold: int = 0                  # this run's fold (1..folds) under a K-fold run, else 0
    test_fraction: float = 0.2
    val_fraction: float = 0.15
    augment: int = 1               # noisy copies per training clip
    snr_db: list[float] = field(default_factory=lambda: [15.0, 30.0])
    epochs: int = 100
    patience: int = 15
    batch_size: int = 32
    recipe: str = "seed"
    optimizer: str = "sgd"         # sgd | adam
    learning_rate: float = 0.01
    momentum: float = 0.0          # sgd only
    schedule: str = "constant"     # constant | cosine | plateau
    time_masks: int = 0            # SpecAugment: time masks per image
    time_mask_width: int = 0       #   of up to this many frames
    freq_masks: int = 0            # SpecAugment: mel-band masks per input
    freq_mask_width: int = 0       #   of up to this many bands
    gain_db: float = 0.0           # level jitter: uniform +-gain_db added to the input
    mixup: float = 0.0             # mixup Beta(alpha, alpha) within each batch (0 = off)
    freq_warp: float = 0.0         # mel-axis stretch by a factor in 1 +- freq_warp (0 = off)
    speed_perturb: float = 0.0     # training waveforms at speed 1 - s, 1 or 1 + s (0 = off)
    class_weights: str = "none"    # none | balanced
    checkpoint: str = "best"       # best | last | late-best | average (CHECKPOINTS)
    ensemble: int = 1              # networks trained from seeds seed, seed+1, ...; averaged
    cache: str | None = None       # log-mel cache directory (None: no cache)
    width: float = 1.0             # filter-count multiplier (1.0 = the seed's network)
    lstm_units: int = 256
    pools: list[int] = field(default_factory=lambda: [4, 4, 4, 2])
    time_budget_min: float | None = None
    seed: int = 0
    arch: str = "tdcnnlstm_speech"
    task: str = TASK
    labels: list[str] = field(default_factory=lambda: list(EMOTIONS))
    signal: SpeechSignal = field(default_factory=SpeechSignal)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["signal"] = self.signal.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SpeechTrainConfig:
        d = known_keys(cls, d)
        for key, value in (("recipe", "seed"), ("optimizer", "sgd"), ("schedule", "constant"),
                           ("class_weights", "none"), ("checkpoint", "best")):
            d.setdefault(key, value)  # configs written before these options existed
        if "signal" in d:
            d["signal"] = SpeechSignal.from_dict(d["signal"])
        return cls(**d)

    @classmethod
    def load(cls, path: Path) -> SpeechTrainConfig:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: not a valid speech training config: {exc}") from exc

    def check(self) -> None:
        """Option values in range (before any work starts)."""
        for name, value, allowed in (("split", self.split, SPLITS),
                                     ("optimizer", self.optimizer, OPTIMIZERS),
                                     ("schedule", self.schedule, SCHEDULES),
                                     ("class_weights", self.class_weights, CLASS_WEIGHTS),
                                     ("checkpoint", self.checkpoint, CHECKPOINTS),
                                     ("recipe", self.recipe, tuple(RECIPES))):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if min(self.time_masks, self.time_mask_width, self.freq_masks,
               self.freq_mask_width) < 0 or self.gain_db < 0:
            raise ValueError("mask counts/widths and gain_db must be >= 0")
        alpha = float(self.mixup) if isinstance(self.mixup, int | float) else math.nan
        if not (math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"mixup is a Beta(alpha, alpha) alpha: finite and >= 0 (0 = "
                             f"off), got {self.mixup!r}")
        if not (isinstance(self.freq_warp, (int, float)) and 0 <= self.freq_warp < 0.5):
            raise ValueError(f"freq_warp is a relative stretch in [0, 0.5), got "
                             f"{self.freq_warp!r}")
        sp = self.speed_perturb
        if isinstance(sp, bool) or not (isinstance(sp, (int, float)) and 0 <= sp < 0.5):
            raise ValueError(f"speed_perturb is a relative speed change in [0, 0.5), got "
                             f"{sp!r}")
        if self.gain_db > 0 and self.signal.feature_norm != "none":
            # a level change is an offset on the log-mel dB scale, which the per-band
            # standardization removes; added after it, it is a shift of several standard
            # deviations that the device never sees
            raise ValueError(f"gain_db jitters the level in dB; with feature norm "
                             f"{self.signal.feature_norm!r} the level is normalized away "
                             "(use --gain-db 0, or --feature-norm none)")
        if list(self.labels) != list(LABELS_WITH_CALM[:len(self.labels)]):
            raise ValueError(f"labels must be {list(LABELS_WITH_CALM)} or its first seven "
                             f"(calm 'class'), got {self.labels}")
        check_ensemble(self.ensemble)
        if SPEECH_SPLITS[self.split].folds and self.folds < 2:
            raise ValueError(f"split {self.split!r} needs --folds >= 2, got {self.folds}")
