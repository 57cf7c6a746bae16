import numpy as np
import pytest

from vitaledge.device.io.beats import BeatSet
from vitaledge.train.balance import BalanceError, balance, class_weights, parse
from vitaledge.train.splits import SplitError, loro_splits, make_split, stratified_holdout


def fake_beats(n_per_record=(300, 200, 150, 120), seed=0) -> BeatSet:
    rng = np.random.default_rng(seed)
    recs, samples, ys = [], [], []
    for i, n in enumerate(n_per_record):
        recs += [f"{100 + i}"] * n
        samples += list(np.sort(rng.choice(600_000, n, replace=False)))
        ys += list(rng.choice(5, n, p=[0.7, 0.1, 0.1, 0.05, 0.05]))
    n = len(ys)
    return BeatSet(rng.normal(size=(n, 187)).astype(np.float32), np.asarray(ys),
                   np.asarray(recs, dtype=object), np.asarray(samples), {})


def keys(b: BeatSet, idx) -> set:
    return {(b.record[i], int(b.sample[i])) for i in idx}


def test_beat_split_is_stratified_and_leaks_no_beat():
    b = fake_beats()
    s = make_split(b, "beat", seed=3, test_fraction=0.2)
    assert not keys(b, s.train) & keys(b, s.test)
    assert len(s.train) + len(s.test) == len(b)
    for c in range(5):
        frac = np.mean(b.y[s.test] == c) / np.mean(b.y == c)
        assert 0.8 < frac < 1.25
    again = make_split(b, "beat", seed=3, test_fraction=0.2)
    assert np.array_equal(again.test, s.test)


def test_record_split_keeps_records_whole():
    b = fake_beats()
    s = make_split(b, "record", test_records=["101", "103"])
    assert set(b.record[s.test]) == {"101", "103"}
    assert set(b.record[s.train]) == {"100", "102"}
    with pytest.raises(SplitError, match="not in the data"):
        make_split(b, "record", test_records=["999"])
    with pytest.raises(SplitError, match="needs test records"):
        make_split(b, "record")


def test_dechazal_preset_uses_ds1_and_ds2():
    b = fake_beats()
    b.record = np.where(b.record == "100", "101", np.where(b.record == "101", "100", b.record))
    b.record = np.where(b.record == "102", "208", np.where(b.record == "103", "232", b.record))
    s = make_split(b, "record", test_records=["dechazal"])
    assert set(b.record[s.train]) == {"101", "208"}  # DS1
    assert set(b.record[s.test]) == {"100", "232"}  # DS2


def test_leave_one_record_out_folds_cover_every_record_once():
    b = fake_beats()
    seen = []
    for rec, s in loro_splits(b):
        assert set(b.record[s.test]) == {rec}
        assert rec not in set(b.record[s.train])
        seen.append(rec)
    assert seen == ["100", "101", "102", "103"]


def test_validation_holdout_is_disjoint_and_keeps_singletons_in_training():
    y = np.array([0] * 50 + [1] * 10 + [2])
    rest, hold = stratified_holdout(y, 0.2, seed=0)
    assert not set(rest) & set(hold)
    assert 60 in rest and np.sum(y[hold] == 0) == 10 and np.sum(y[hold] == 1) == 2


def test_hybrid_balance_gives_exactly_n_per_class():
    b = fake_beats()
    X, y, cw, _, _ = balance(b.X, b.y, "hybrid:100", 5, seed=0)
    assert np.bincount(y).tolist() == [100] * 5 and cw is None
    assert X.shape == (500, 187)
    # every balanced row is a row of the original set (random over/undersampling)
    orig = {row.tobytes() for row in b.X}
    assert all(row.tobytes() in orig for row in X)


def test_smote_and_class_weights():
    b = fake_beats()
    X, y, _, _, _ = balance(b.X, b.y, "smote", 5, seed=0)
    counts = np.bincount(y)
    assert np.all(counts == counts.max())
    w = class_weights(b.y, 5)
    counts = np.bincount(b.y)
    assert w[0] < w[3] and w[3] == pytest.approx(len(b.y) / (5 * counts[3]))


@pytest.mark.parametrize("bad", ["hybrid", "hybrid:x", "smote:3", "oversample"])
def test_bad_balance_options_are_refused(bad):
    with pytest.raises(BalanceError):
        parse(bad)


def test_patient_folds_never_put_a_patient_on_both_sides():
    from vitaledge.train.splits import patient_folds, patient_holdout

    b = fake_beats(n_per_record=(300, 200, 150, 120, 90, 80, 70))
    b.record[b.record == "106"] = "202"  # same person as 201 (MIT-BIH) ...
    b.record[b.record == "105"] = "201"
    folds = patient_folds(b, 3, seed=2)
    seen = []
    for f in folds:
        f.check_disjoint(b, by_record=True)
        assert len(f.train) + len(f.test) == len(b)
        tested = set(b.record[f.test])
        assert ("201" in tested) == ("202" in tested)  # ... so always on the same side
        seen += sorted(tested)
        rest, val = patient_holdout(b, f.train, 0.25, seed=1)
        assert len(val) and len(rest) and not set(b.record[val]) & set(b.record[rest])
        assert set(b.record[val]) <= set(b.record[f.train])
    assert sorted(seen) == sorted(set(b.record))  # every patient tested exactly once
    with pytest.raises(SplitError, match="K="):
        patient_folds(b, 9)


def test_patient_folds_on_ds1_each_see_s_and_v_patients(mitdb_dir):
    import wfdb
    from conftest import mitdb_records

    from vitaledge.device.io.aami import map_annotations
    from vitaledge.train.splits import DS1, patient_folds

    recs, ys, ss = [], [], []
    for p in mitdb_records(mitdb_dir, DS1):
        a = wfdb.rdann(str(p), "atr")
        s, y = map_annotations(np.asarray(a.sample), list(a.symbol))
        recs += [p.name] * len(y)
        ys += list(y)
        ss += list(s)
    b = BeatSet(np.zeros((len(ys), 1), np.float32), np.asarray(ys), np.asarray(recs, dtype=object),
                np.asarray(ss), {})
    for f in patient_folds(b, 4, seed=0):
        counts = np.bincount(b.y[f.test], minlength=5)
        assert counts[1] >= 100 and counts[2] >= 500, (f.name, counts)  # S and V in every fold
        assert 4 <= len(set(b.record[f.test])) <= 7


def test_dechazal_is_a_split_of_its_own():
    b = fake_beats(n_per_record=(50, 50, 50, 50))
    b.record[:] = np.repeat(["101", "106", "100", "232"], 50)
    s = make_split(b, "dechazal")
    assert set(b.record[s.train]) == {"101", "106"} and set(b.record[s.test]) == {"100", "232"}


def test_rr_features_travel_with_their_window_through_balancing():
    b = fake_beats()
    rr = np.stack([b.X[:, 0] * 2, b.X[:, 1] - 1], axis=1).astype(np.float32)  # tied to X
    for spec in ("hybrid:100", "smote"):
        X, y, _, r, _ = balance(b.X, b.y, spec, 5, seed=0, rr=rr)
        assert len(X) == len(y) == len(r)
        np.testing.assert_allclose(r[:, 0], X[:, 0] * 2, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(r[:, 1], X[:, 1] - 1, rtol=1e-5, atol=1e-5)


def test_sqrt_weights_are_capped_and_spare_classes_too_rare_to_learn():
    from vitaledge.train.balance import class_weights, sqrt_weights

    y = np.array([0] * 10_000 + [1] * 400 + [2] * 100 + [3] * 99 + [4] * 8)
    full, w = class_weights(y, 5), sqrt_weights(y, 5)
    assert w[0] == pytest.approx(np.sqrt(full[0])) and w[1] == pytest.approx(np.sqrt(full[1]))
    assert w[2] == pytest.approx(min(10.0, np.sqrt(full[2])))
    assert w[3] == 1.0 and w[4] == 1.0  # 99 and 8 beats: too rare, not up-weighted
    _, _, cw, _, _ = balance(np.zeros((len(y), 3)), y, "sqrt-weight", 5)
    assert cw == w


def test_dechazal_reads_only_its_records(tmp_path):
    """The preset reads DS1 and DS2 records only: a paced record beside them is not read."""
    from vitaledge.train.config import BeatTrainConfig
    from vitaledge.train.data import records_to_read

    for name in ("101", "102", "100", "104", "999"):
        for ext in ("hea", "atr"):
            (tmp_path / f"{name}.{ext}").write_text("")
    cfg = BeatTrainConfig(records=str(tmp_path), split="dechazal")
    assert records_to_read(cfg) == ["100", "101"]
    rec = BeatTrainConfig(records=str(tmp_path), split="record", test_records=["dechazal"])
    assert records_to_read(rec) == ["100", "101"]
    named = BeatTrainConfig(records=str(tmp_path), split="dechazal", record_list=["102"])
    assert records_to_read(named) == ["102"]  # names given are read as given
    assert records_to_read(BeatTrainConfig(records=str(tmp_path), split="patients")) is None


def test_every_split_kind_is_one_entry_the_cli_and_training_read(monkeypatch):
    """The --split choices and help, the options each split reads, which splits carve
    validation by patient and what trains each come from SPLIT_KINDS (at import); a split
    trained per fold has no one split; make_split dispatches on the table at call time (an
    entry added then is made; the CLI's choices are not rebuilt)."""
    from vitaledge.cli import main
    from vitaledge.train import splits
    from vitaledge.train.cli import BEAT_SPLIT_OPTIONS

    opt = next(p for p in main.commands["train"].commands["beat"].params if p.name == "split")
    assert tuple(opt.type.choices) == splits.SPLITS == tuple(splits.SPLIT_KINDS)
    assert "patients (patient-wise K-fold)" in opt.help
    for name, kind in splits.SPLIT_KINDS.items():
        assert (kind.make is None) == (kind.trainer != splits.ONE_MODEL)
        assert callable(splits.trainer(name))  # its module:function exists
        assert all(name in BEAT_SPLIT_OPTIONS[o] for o in kind.reads)
    assert set(BEAT_SPLIT_OPTIONS) == {"folds", "test_fraction", "test_records"}
    assert splits.BY_PATIENT == ("record", "dechazal", "patients", "loro")
    b = fake_beats()
    with pytest.raises(SplitError, match="'loro' has no one train/test split"):
        make_split(b, "loro")
    odd = splits.SplitKind(lambda beats, seed, frac, recs: splits.Split(
        np.flatnonzero(beats.record != "100"), np.flatnonzero(beats.record == "100"), "odd"),
        by_patient=True, help="record 100 held out")
    monkeypatch.setitem(splits.SPLIT_KINDS, "odd", odd)
    s = make_split(b, "odd")
    assert set(b.record[s.test]) == {"100"} and "100" not in set(b.record[s.train])


def test_a_balance_method_is_one_entry(monkeypatch):
    """A method added to METHODS is parsed, applied and shown in --balance's help; each
    entry either weights or resamples, never both."""
    from click.testing import CliRunner

    from vitaledge.cli import main
    from vitaledge.train import balance as bal

    assert all((m.weights is None) or (m.resample is None) for m in bal.METHODS.values())
    halve = bal.Method("every class weighted 0.5", weights=lambda y, k: {c: 0.5 for c in range(k)})
    keep_first = bal.Method("the first n rows", takes_count=True,
                            resample=lambda flat, y, n, k, seed: (flat[:n], y[:n]))
    monkeypatch.setitem(bal.METHODS, "halve", halve)
    monkeypatch.setitem(bal.METHODS, "first", keep_first)
    b = fake_beats()
    assert balance(b.X, b.y, "halve", 5)[2] == {c: 0.5 for c in range(5)}
    X, y, cw, _, _ = balance(b.X, b.y, "first:7", 5)
    assert len(X) == len(y) == 7 and cw is None and np.array_equal(X, b.X[:7].astype(X.dtype))
    with pytest.raises(BalanceError, match="first needs a positive count"):
        parse("first")
    assert "first:N" in bal.choices() and "halve" in bal.choices()
    assert "halve (every class weighted 0.5)" in bal.described()
    # the CLI's help is built from the table when the module is imported
    out = CliRunner().invoke(main, ["train", "beat", "--help"], terminal_width=200).output
    for name in ("none", "class-weight", "sqrt-weight", "smote", "hybrid:N"):
        assert name + " (" in out


def test_an_unknown_split_is_refused_by_name_not_a_key_error(tmp_path):
    """A run's config.json naming a split that does not exist: records_to_read looked it
    up in SPLIT_KINDS first (a KeyError traceback); make_split refuses it by name."""
    from types import SimpleNamespace

    from vitaledge.train.data import records_to_read
    from vitaledge.train.splits import SplitError, make_split

    cfg = SimpleNamespace(record_list=None, split="patient", test_records=None,
                          records=str(tmp_path))
    assert records_to_read(cfg) is None
    with pytest.raises(SplitError, match="unknown split 'patient'"):
        make_split(fake_beats(), "patient")
    # and a run's config.json naming it is refused when it is read, before any work
    from vitaledge.train.config import BeatTrainConfig

    (tmp_path / "config.json").write_text('{"split": "patient"}')
    with pytest.raises(ValueError, match=r"config.json: not a valid training config: split "
                                         r"'patient': expected one of beat, record"):
        BeatTrainConfig.load(tmp_path / "config.json")
