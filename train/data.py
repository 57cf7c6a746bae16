"""From a training config to train / validation / test beat sets, reproducibly.

Conversion and evaluation call :func:`prepare` again with a run's saved config and get the
same beats in the same parts; ``splits.npz`` in the run directory lets them check that the
data on disk still is what the model was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitaledge.device.io.aami import CLASSES
from vitaledge.device.io.beats import BeatSet, beats_from_dir
from vitaledge.device.io.heldout import read_npz
from vitaledge.device.io.kaggle_csv import KAGGLE_WINDOW, load_kaggle_csv
from vitaledge.device.io.records import list_records

from .balance import balance
from .config import BeatTrainConfig
from .noise_aug import NoiseAug, noisy_beats, require_patient_split
from .splits import (
    BY_PATIENT,
    SPLIT_KINDS,
    make_split,
    patient_holdout,
    stratified_holdout,
)


@dataclass
class Prepared:
    train: BeatSet  # before balancing
    val: BeatSet
    test: BeatSet
    X_fit: np.ndarray | dict  # balanced training inputs: windows (n, length, 1), or by name
    y_fit: np.ndarray
    class_weight: dict[int, float] | None
    description: dict


def records_to_read(cfg: BeatTrainConfig) -> list[str] | None:
    """The records of ``cfg.records`` to read (None: all): the named ones, or for the de
    Chazal preset only its DS1 and DS2 records present, so that the paced records it leaves
    out (102, 104, 107, 217) are not read, nor warned about, for nothing."""
    if cfg.record_list is not None:
        return cfg.record_list
    kind = SPLIT_KINDS.get(cfg.split)  # an unknown one is refused by make_split, by name
    only = kind.only_records if kind is not None else None
    if cfg.test_records == ["dechazal"]:  # --split record's preset: the same records
        only = SPLIT_KINDS["dechazal"].only_records
    if only is not None:
        # quiet: beats_from_dir lists the folder again and says what it leaves out
        names = [p.name for p in list_records(cfg.records, warn=False) if p.name in only]
        return names or None  # none: read all, and the split says what is missing
    return None


def load_all(cfg: BeatTrainConfig) -> tuple[BeatSet, BeatSet | None]:
    """(beats to split, separate test beats or None) as the config names them."""
    if cfg.records:
        return beats_from_dir(cfg.records, cfg.window, records_to_read(cfg), cfg.lead,
                              cfg.anchor, cfg.rr_spec(), cfg.template_spec()), None
    if cfg.rr is not None or cfg.template is not None or cfg.anchor != "annotated":
        raise ValueError("RR features and detected anchors need WFDB records (--data): the "
                         "Kaggle CSV rows carry no beat times")
    if cfg.csv_train:
        if cfg.window.to_dict() != KAGGLE_WINDOW.to_dict():
            raise ValueError("Kaggle CSV beats are kachuee windows without filtering; "
                             "use --window kachuee --no-filter with --csv-train")
        train = load_kaggle_csv(cfg.csv_train)
        test = load_kaggle_csv(cfg.csv_test) if cfg.csv_test else None
        return train, test
    raise ValueError("no data: give a WFDB directory (--records) or Kaggle CSV (--csv-train)")


def split_parts(cfg: BeatTrainConfig, beats: BeatSet | None = None
                ) -> tuple[BeatSet, BeatSet, BeatSet]:
    """(train, val, test) beat sets, before balancing; ``beats`` saves loading them again
    (patient-wise folds load once and split many times)."""
    test = None
    if beats is None:
        beats, test = load_all(cfg)
    if test is None:
        split = make_split(beats, cfg.split, cfg.seed, cfg.test_fraction, cfg.test_records)
        train, test = beats.subset(split.train), beats.subset(split.test)
    else:
        train = beats
    if cfg.split in BY_PATIENT and len(set(train.record)) > 1:
        rest, val = patient_holdout(train, np.arange(len(train)), cfg.val_fraction,
                                    cfg.seed + 1)
    else:
        rest, val = stratified_holdout(train.y, cfg.val_fraction, cfg.seed + 1)
    return train.subset(rest), train.subset(val), test


def prepare(cfg: BeatTrainConfig, beats: BeatSet | None = None) -> Prepared:
    train, val, test = split_parts(cfg, beats)
    noisy = None
    if cfg.noise_aug is not None:
        if not cfg.records:
            raise ValueError("noise augmentation needs WFDB records (--data)")
        require_patient_split(cfg.split)
        noisy = noisy_beats(NoiseAug.from_dict(cfg.noise_aug), cfg.records,
                            sorted(set(train.record)), cfg.seed, cfg.window, cfg.lead,
                            cfg.anchor, cfg.rr_spec(), cfg.template_spec())
    fit = train if noisy is None else BeatSet.concat([train, noisy])
    X, y, cw, rr, tmpl = balance(fit.X, fit.y, cfg.balance, len(CLASSES), cfg.seed,
                                 fit.rr, fit.template)
    desc = {
        "source": train.description.get("source"),
        "records": sorted(set(train.record) | set(val.record) | set(test.record)),
        "split": cfg.split,
        "counts": {"train": train.class_counts(), "val": val.class_counts(),
                   "test": test.class_counts(), "fit_after_balance":
                   {c: int(n) for c, n in zip(CLASSES, np.bincount(y, minlength=len(CLASSES)),
                                              strict=True)}},
        "window": cfg.window.to_dict(),
    }
    if "leads" in train.description:
        desc["leads"] = train.description["leads"]
    if cfg.anchor != "annotated":
        desc["anchor"] = cfg.anchor
    if cfg.rr is not None:
        desc["rr"] = cfg.rr
    if cfg.template is not None:
        desc["template"] = cfg.template
    if noisy is not None:
        desc["noise_aug"] = {**cfg.noise_aug, "beats": noisy.class_counts()}
    inputs = BeatSet(X, y, np.zeros(len(y), object), np.zeros(len(y), np.int64), {}, rr,
                     tmpl).inputs()
    return Prepared(train, val, test, inputs, y, cw, desc)


def save_split_ids(path: Path, p: Prepared) -> None:
    """Record which beats went where (record name + R-peak sample)."""
    arrays = {}
    for part in ("train", "val", "test"):
        b: BeatSet = getattr(p, part)
        arrays[f"{part}_record"] = b.record.astype(str)
        arrays[f"{part}_sample"] = b.sample
    np.savez_compressed(path, **arrays)


def check_split_ids(path: Path, train: BeatSet, val: BeatSet, test: BeatSet) -> None:
    """Raise if the beats rebuilt from the config differ from those the run used, or if the
    run's record of them (written by every beat run) is missing: without it a changed data
    folder was scored in silence."""
    if not path.exists():
        raise ValueError(f"{path}: missing, so the beats rebuilt from the run's config cannot "
                         "be checked against the ones it was trained and tested on (copy the "
                         "run whole, or train it again)")
    ids = read_npz(path)  # a ValueError naming the file and the damage
    for part, b in (("train", train), ("val", val), ("test", test)):
        if f"{part}_record" not in ids or f"{part}_sample" not in ids:
            raise ValueError(f"{path}: no {part}_record/{part}_sample arrays (not a run's "
                             "splits.npz)")
        same = (np.array_equal(ids[f"{part}_record"], b.record.astype(str))
                and np.array_equal(ids[f"{part}_sample"], b.sample))
        if not same:
            raise ValueError(f"{path}: the {part} beats rebuilt from config.json differ "
                             "from the ones this run was trained on (data changed?)")
