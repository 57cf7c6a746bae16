"""Train/test splits of beat sets that never leak a beat (or, by record, a record).

``beat``    stratified random split of beats (the Kaggle set's intra-patient protocol);
``record``  by record list (``--test-records 106,232``), or the named de Chazal preset
            ``dechazal`` (DS1 train / DS2 test, the inter-patient protocol);
``dechazal`` the same preset by name: train on the DS1 records present, test on the DS2
            records present (paced records excluded);
``patients`` patient-wise K-fold (:func:`patient_folds`): no patient on both sides, folds
            balanced so that every fold holds patients with S and V beats;
``none``    everything is training data (a validation part is still carved from it);
``loro``    leave-one-record-out: one fold per record.

Splits by record carve their validation part by patient too (:func:`patient_holdout`), so
early stopping and model choice never see a test patient's neighbour beats.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from vitaledge.device.io.aami import CLASSES
from vitaledge.device.io.beats import BeatSet

#: MIT-BIH records of one person (the database's directory: 201 and 202 are one subject).
SAME_PATIENT = {"202": "201"}

# de Chazal et al., IEEE TBME 51(7) 2004: paced records 102, 104, 107, 217 excluded.
DS1 = ("101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124",
       "201", "203", "205", "207", "208", "209", "215", "220", "223", "230")
DS2 = ("100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210", "212",
       "213", "214", "219", "221", "222", "228", "231", "232", "233", "234")


class SplitError(ValueError):
    """A split cannot be made from the data given; the message says why."""


@dataclass
class Split:
    """Indices into a BeatSet."""

    train: np.ndarray
    test: np.ndarray
    name: str = ""

    def check_disjoint(self, beats: BeatSet, by_record: bool = False) -> None:
        """Raise if a beat (or, with ``by_record``, a record) is on both sides."""
        if np.intersect1d(self.train, self.test).size:
            raise SplitError("split leaks beats between train and test")
        if by_record:
            shared = set(beats.record[self.train]) & set(beats.record[self.test])
            if shared:
                raise SplitError(f"split leaks records between train and test: {sorted(shared)}")


def stratified_holdout(y: np.ndarray, fraction: float, seed: int,
                       idx: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Split ``idx`` (default all) into (rest, holdout) with ``fraction`` of each class held
    out; a class with a single member stays in ``rest``."""
    idx = np.arange(len(y)) if idx is None else np.asarray(idx)
    rng = np.random.default_rng(seed)
    rest, hold = [], []
    for c in np.unique(y[idx]):
        members = idx[y[idx] == c]
        members = members[rng.permutation(len(members))]
        n_hold = int(round(len(members) * fraction)) if len(members) > 1 else 0
        n_hold = min(max(n_hold, 1 if len(members) > 1 else 0), len(members) - 1)
        hold.append(members[:n_hold])
        rest.append(members[n_hold:])
    return np.sort(np.concatenate(rest)), np.sort(np.concatenate(hold))


def split_by_beat(beats: BeatSet, seed: int, test_fraction: float,
                  test_records: list[str] | None) -> Split:
    """A stratified random ``test_fraction`` of the beats is the test part."""
    tr, te = stratified_holdout(beats.y, test_fraction, seed)
    split = Split(tr, te, "beat")
    split.check_disjoint(beats)
    return split


def split_by_record(beats: BeatSet, seed: int, test_fraction: float,
                    test_records: list[str] | None) -> Split:
    """The ``test_records`` are the test part (``["dechazal"]``: the DS2 records present,
    trained on the DS1 records present)."""
    present = sorted(set(beats.record))
    if not test_records:
        raise SplitError("record split needs test records (e.g. --test-records 106,232 "
                         "or --test-records dechazal)")
    if test_records == ["dechazal"]:
        train_recs = [r for r in present if r in DS1]
        test_recs = [r for r in present if r in DS2]
        if not train_recs or not test_recs:
            raise SplitError(f"dechazal preset needs DS1 and DS2 records of MIT-BIH; "
                             f"present: {present} (other records: train with --split patients; "
                             "evaluate them all with --split all)")
    else:
        missing = [r for r in test_records if r not in present]
        if missing:
            raise SplitError(f"test records not in the data: {missing} (present: {present})")
        test_recs = list(test_records)
        train_recs = [r for r in present if r not in test_recs]
        if not train_recs:
            raise SplitError("record split leaves no training records")
    split = Split(np.flatnonzero(np.isin(beats.record, train_recs)),
                  np.flatnonzero(np.isin(beats.record, test_recs)), "record")
    split.check_disjoint(beats, by_record=True)
    return split


def split_dechazal(beats: BeatSet, seed: int, test_fraction: float,
                   test_records: list[str] | None) -> Split:
    """de Chazal's inter-patient protocol: DS1 records train, DS2 records test."""
    return split_by_record(beats, seed, test_fraction, ["dechazal"])


def split_none(beats: BeatSet, seed: int, test_fraction: float,
               test_records: list[str] | None) -> Split:
    """Every beat trains; no test part."""
    return Split(np.arange(len(beats)), np.zeros(0, np.int64), "none")


#: The trainer of a split with one train/test split: one model.
ONE_MODEL = "vitaledge.train.fit:train_beat"


@dataclass(frozen=True)
class SplitKind:
    """One ``train beat --split``. ``make(beats, seed, test_fraction, test_records)`` makes
    its one train/test split (None: its trainer makes a model per fold); ``by_patient``:
    no patient on both sides, and the validation part is carved by patient too; ``reads``:
    the ``train beat`` options it takes (``folds``, ``test_fraction``, ``test_records``);
    ``trainer``: ``module:function`` that trains a run of it from its config (imported
    when a run starts, so the CLI's help loads no TensorFlow); ``help``: a few words for
    ``--split``'s help; ``whole_records``: each patient's beats stay together and in time
    order on their side (what the similar-beat vote needs; a split by beat scatters them);
    ``only_records``: the records it reads, when it names them (the rest of the folder is
    not read)."""

    make: Callable[[BeatSet, int, float, list[str] | None], Split] | None
    by_patient: bool
    help: str
    reads: tuple[str, ...] = ()
    trainer: str = ONE_MODEL
    whole_records: bool = True
    only_records: tuple[str, ...] | None = None


#: The splits ``train beat --split`` takes (see the module doc); a new one is one entry.
SPLIT_KINDS: dict[str, SplitKind] = {
    "beat": SplitKind(split_by_beat, False, "same patients on both sides",
                      reads=("test_fraction",), whole_records=False),
    "record": SplitKind(split_by_record, True, "--test-records", reads=("test_records",)),
    "dechazal": SplitKind(split_dechazal, True, "DS1 -> DS2", only_records=DS1 + DS2),
    "patients": SplitKind(None, True, "patient-wise K-fold", reads=("folds",),
                          trainer="vitaledge.train.folds:run_patient_folds"),
    "none": SplitKind(split_none, False, "everything trains"),
    "loro": SplitKind(None, True, "a model per record", trainer="vitaledge.train.loro:run_loro"),
}
SPLITS = tuple(SPLIT_KINDS)
#: Splits that keep every patient on one side; their validation part is carved by patient.
BY_PATIENT = tuple(k for k, v in SPLIT_KINDS.items() if v.by_patient)


def trainer(kind: str) -> Callable:
    """The function that trains a run of split ``kind`` (``trainer(cfg, run_dir)``)."""
    import importlib

    module, _, name = SPLIT_KINDS[kind].trainer.partition(":")
    return getattr(importlib.import_module(module), name)


def make_split(beats: BeatSet, kind: str, seed: int = 0, test_fraction: float = 0.2,
               test_records: list[str] | None = None) -> Split:
    """One train/test split of ``beats`` by its :data:`SPLIT_KINDS` entry."""
    if kind not in SPLIT_KINDS:
        raise SplitError(f"unknown split {kind!r}; expected one of {SPLITS}")
    make = SPLIT_KINDS[kind].make
    if make is None:
        raise SplitError(f"split {kind!r} has no one train/test split: it trains a model per "
                         f"fold ({SPLIT_KINDS[kind].trainer})")
    return make(beats, seed, test_fraction, test_records)


def loro_splits(beats: BeatSet) -> Iterator[tuple[str, Split]]:
    """Leave-one-record-out folds: (held-out record, split)."""
    records = sorted(set(beats.record))
    if len(records) < 2:
        raise SplitError("leave-one-record-out needs at least two records")
    for rec in records:
        split = Split(np.flatnonzero(beats.record != rec), np.flatnonzero(beats.record == rec),
                      f"loro:{rec}")
        split.check_disjoint(beats, by_record=True)
        yield rec, split


def patient_of(record: str) -> str:
    """The patient a record belongs to (records of one person share a patient id)."""
    return SAME_PATIENT.get(str(record), str(record))


def _patient_counts(beats: BeatSet, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Beats per class of each patient among ``idx``: the records' reference annotations
    when the set carries them (so the folds do not depend on the anchor or the window),
    else the labels in the set."""
    counts: dict[str, np.ndarray] = {}
    ref = beats.description.get("reference_counts") or {}
    recs = beats.record[idx]
    pats = np.array([patient_of(r) for r in recs], dtype=object)
    for p in sorted(set(pats)):
        mine = sorted(set(recs[pats == p]))
        if all(r in ref for r in mine):
            counts[p] = np.sum([np.asarray(ref[r]) for r in mine], axis=0)
        else:
            counts[p] = np.bincount(beats.y[idx][pats == p], minlength=len(CLASSES))
    return counts


def _deal(counts: dict[str, np.ndarray], k: int, seed: int) -> list[list[str]]:
    """Patients dealt into ``k`` groups: the rarest classes first, each patient to the group
    that has least of the class it contributes most to, so every group gets some of each
    class while patients last."""
    rng = np.random.default_rng(seed)
    totals = sum(counts.values())
    order = np.argsort(totals)  # rarest class first
    groups: list[list[str]] = [[] for _ in range(k)]
    have = np.zeros((k, len(totals)))
    left = sorted(counts, key=lambda p: rng.random())
    for c in order:
        if totals[c] == 0:
            continue
        takers = sorted((p for p in left if counts[p][c] > 0), key=lambda p: -counts[p][c])
        for p in takers:
            g = int(np.lexsort((have.sum(axis=1), have[:, c]))[0])
            groups[g].append(p)
            have[g] += counts[p]
            left.remove(p)
    for p in left:
        g = int(np.argmin(have.sum(axis=1)))
        groups[g].append(p)
        have[g] += counts[p]
    return groups


def patient_folds(beats: BeatSet, k: int, seed: int = 0) -> list[Split]:
    """``k`` patient-wise folds: each patient's beats in exactly one test part, patients
    dealt so that the rare classes (F, S, V) spread over the folds."""
    counts = _patient_counts(beats, np.arange(len(beats)))
    if not 2 <= k <= len(counts):
        raise SplitError(f"patient-wise folds need 2 <= K <= the {len(counts)} patients "
                         f"present, got K={k}")
    pats = np.array([patient_of(r) for r in beats.record], dtype=object)
    folds = []
    for i, group in enumerate(_deal(counts, k, seed)):
        test = np.flatnonzero(np.isin(pats, group))
        split = Split(np.flatnonzero(~np.isin(pats, group)), test, f"patients:{i + 1}/{k}")
        split.check_disjoint(beats, by_record=True)
        folds.append(split)
    return folds


def patient_holdout(beats: BeatSet, idx: np.ndarray, fraction: float,
                    seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``idx`` into (rest, validation) by patient: about ``fraction`` of the patients
    (at least one, never all), dealt like the folds so validation holds rare classes."""
    idx = np.asarray(idx)
    counts = _patient_counts(beats, idx)
    if len(counts) < 2:
        raise SplitError("a validation part carved by patient needs at least two training "
                         f"patients; have {sorted(counts)}")
    k = min(max(2, int(round(1 / max(fraction, 1e-9)))), len(counts))
    val_patients = _deal(counts, k, seed)[0]
    pats = np.array([patient_of(r) for r in beats.record[idx]], dtype=object)
    is_val = np.isin(pats, val_patients)
    return idx[~is_val], idx[is_val]
