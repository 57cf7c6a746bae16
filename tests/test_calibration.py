"""The calibration inputs a run keeps for int8 conversion (``train/calibration.py``)."""

import numpy as np


def test_calibration_pick_takes_the_classes_in_turn():
    """Every emotion task keeps its calibration inputs by one rule: the classes in turn, so a
    rare class is taken whole before a common one fills the rest; seeded."""
    from vitaledge.train.calibration import calibration_pick

    y = np.array([0] * 40 + [1] * 3 + [2] * 200)
    idx = calibration_pick(y, 30, seed=5)
    assert len(idx) == 30 and len(set(idx.tolist())) == 30
    assert np.all(np.diff(idx) > 0)
    assert np.bincount(y[idx], minlength=3).tolist() == [14, 3, 13]
    assert np.array_equal(idx, calibration_pick(y, 30, seed=5))
    assert not np.array_equal(idx, calibration_pick(y, 30, seed=6))
    assert len(calibration_pick(y, 1000, seed=0)) == len(y)  # fewer items than asked: all
