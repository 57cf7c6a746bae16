"""Train/test splits of beat sets that never leak a beat (or, by record, a record).

``beat``    stratified random split of beats (the Kaggle set's intra-patient protocol);
``record``  by record list (``--test-records 106,232``), or the named de Chazal preset
            ``dechazal`` (DS1 train / DS2 test, the inter-patient protocol);
``none``    everything is training data (a validation part is still carved from it);
``loro``    leave-one-record-out: one fold per record.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from vitaledge.device.io.beats import BeatSet

SPLITS = ("beat", "record", "none", "loro")

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


def make_split(beats: BeatSet, kind: str, seed: int = 0, test_fraction: float = 0.2,
               test_records: list[str] | None = None) -> Split:
    """One train/test split of ``beats`` (see module doc for the kinds)."""
    if kind == "beat":
        tr, te = stratified_holdout(beats.y, test_fraction, seed)
        split = Split(tr, te, "beat")
        split.check_disjoint(beats)
        return split
    if kind == "record":
        present = sorted(set(beats.record))
        if not test_records:
            raise SplitError("record split needs test records (e.g. --test-records 106,232 "
                             "or --test-records dechazal)")
        if test_records == ["dechazal"]:
            train_recs = [r for r in present if r in DS1]
            test_recs = [r for r in present if r in DS2]
            if not train_recs or not test_recs:
                raise SplitError(f"dechazal preset needs DS1 and DS2 records; present: {present}")
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
    if kind == "none":
        return Split(np.arange(len(beats)), np.zeros(0, np.int64), "none")
    raise SplitError(f"unknown split {kind!r}; expected one of {SPLITS}")


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
