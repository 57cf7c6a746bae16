"""The similar-beat vote (vitaledge.device.dsp.similar_beats): a beat's outputs averaged
with those of the patient's earlier beats of the same shape; causal, so a stream in any
pieces decides what the batch decides; one memory per patient; a strict spec field."""

from __future__ import annotations

import numpy as np
import pytest

from vitaledge.device.dsp.shape import unit_rows
from vitaledge.device.dsp.similar_beats import SimilarBeatVote
from vitaledge.device.dsp.spec_fields import SpecError

L = 40
T = np.linspace(0, 1, L)
SHAPE_A = np.exp(-((T - 0.5) / 0.05) ** 2)           # narrow spike
SHAPE_B = np.sin(2 * np.pi * T)                       # one slow wave: uncorrelated with A


def _beats(kinds: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shapes = {"a": SHAPE_A, "b": SHAPE_B}
    return np.stack([shapes[k] * rng.uniform(0.5, 2) + rng.normal(0, 0.01, L) for k in kinds])


def test_a_beat_votes_with_earlier_beats_of_its_shape_only():
    X = _beats("aabab")
    probs = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.1, 0.9], [0.4, 0.6]])
    got = SimilarBeatVote(beats=300, min_corr=0.95).apply(probs, X)
    # the first beat has no earlier one; the second votes with the first
    np.testing.assert_allclose(got[0], probs[0])
    np.testing.assert_allclose(got[1], (probs[0] + probs[1]) / 2)
    # a "b" beat: no earlier "b", the "a" beats do not vote (correlation far below 0.95)
    np.testing.assert_allclose(got[2], probs[2])
    # the fourth ("a") with the first two, the fifth ("b") with the third: their own
    # outputs, not their voted ones
    np.testing.assert_allclose(got[3], (probs[0] + probs[1] + probs[3]) / 3)
    np.testing.assert_allclose(got[4], (probs[2] + probs[4]) / 2)
    # the vote can turn a lone outlier round: beat 4's argmax was class 1, now class 0
    assert probs[3].argmax() == 1 and got[3].argmax() == 0


def test_only_the_last_beats_vote_and_amplitude_does_not_matter():
    X = _beats("a" * 6)
    X[1:] *= 10  # correlation ignores the scale
    probs = np.eye(6, 2)[[0, 1, 1, 1, 1, 1]].astype(float)
    got = SimilarBeatVote(beats=2, min_corr=0.95).apply(probs, X)
    # beat 3 sees beats 1 and 2 (the ring holds 2), not beat 0
    np.testing.assert_allclose(got[3], probs[1:4].mean(axis=0))
    np.testing.assert_allclose(got[1], probs[:2].mean(axis=0))


def test_memory_continues_across_calls_as_a_stream_does():
    X = _beats("abaabbbaab" * 5, seed=3)
    probs = np.random.default_rng(1).dirichlet(np.ones(5), len(X))
    vote = SimilarBeatVote(beats=7, min_corr=0.9)
    whole = vote.apply(probs, X)
    for step in (1, 3, 11):
        mem = vote.memory()
        parts = [vote.apply(probs[i:i + step], X[i:i + step], memory=mem)
                 for i in range(0, len(X), step)]
        np.testing.assert_allclose(np.concatenate(parts), whole)


def test_each_patient_from_a_fresh_memory_in_time_order():
    vote = SimilarBeatVote()
    Xa, Xb = _beats("aaab", 1), _beats("aabb", 2)
    pa = np.random.default_rng(2).dirichlet(np.ones(3), 4)
    pb = np.random.default_rng(3).dirichlet(np.ones(3), 4)
    want = np.concatenate([vote.apply(pa, Xa), vote.apply(pb, Xb)])
    X, P = np.concatenate([Xa, Xb]), np.concatenate([pa, pb])
    groups = np.array(["r1"] * 4 + ["r2"] * 4)
    times = np.array([10, 20, 30, 40, 5, 15, 25, 35])
    np.testing.assert_allclose(vote.apply(P, X, groups=groups, times=times), want)
    # rows shuffled: each patient's beats are still voted in time order
    perm = np.random.default_rng(0).permutation(8)
    got = vote.apply(P[perm], X[perm], groups=groups[perm], times=times[perm])
    np.testing.assert_allclose(got, want[perm])
    with pytest.raises(ValueError, match="memory or groups"):
        vote.apply(P, X, memory=vote.memory(), groups=groups)
    with pytest.raises(ValueError, match="3 outputs for 8 windows"):
        vote.apply(P[:3], X)


def test_unit_rows_give_pearson_correlation():
    X = _beats("abab", 4)
    u = unit_rows(X)
    np.testing.assert_allclose(u @ u.T, np.corrcoef(X), atol=1e-5)
    assert not unit_rows(np.ones((1, L))).any()  # a flat window correlates with nothing


def test_spec_round_trips_and_bad_fields_are_refused():
    from vitaledge.device.dsp.windows import WindowSpec
    from vitaledge.device.inputs.beat import BeatSignal

    sig = BeatSignal(window=WindowSpec.centered(), similar=SimilarBeatVote(120, 0.9))
    d = sig.to_dict()
    assert d["similar"] == {"beats": 120, "min_corr": 0.9}
    assert BeatSignal.from_dict(d) == sig
    old = {k: v for k, v in d.items() if k != "similar"}  # a manifest from before the vote
    assert BeatSignal.from_dict(old).similar is None
    for bad, word in (({"beats": 0, "min_corr": 0.9}, "signal.similar.beats"),
                      ({"beats": 2.5, "min_corr": 0.9}, "signal.similar.beats"),
                      ({"beats": 10, "min_corr": 1.0}, "signal.similar.min_corr"),
                      ({"beats": 10}, "missing"),
                      ({"beats": 10, "min_corr": 0.9, "k": 3}, "unknown")):
        with pytest.raises(SpecError, match=word):
            BeatSignal.from_dict({**d, "similar": bad})
    # the vote reads the beat windows: deciding without them is an error, not a guess
    with pytest.raises(ValueError, match=r"\['beat'\]"):
        sig.decide(np.full((2, 5), 0.2), list("NSVFQ"), {})


def test_a_decision_without_patients_or_a_stream_is_refused():
    """A model with the vote decides per patient in time order: given neither each beat's
    record (a heldout.npz written before the vote) nor a stream's memory, decide says so
    instead of pooling every patient's beats into one."""
    from vitaledge.device.dsp.windows import WindowSpec
    from vitaledge.device.inputs.beat import BeatSignal

    sig = BeatSignal(window=WindowSpec.centered(), similar=SimilarBeatVote())
    X = _beats("aab")
    probs = np.array([[0.6, 0.4], [0.6, 0.4], [0.1, 0.9]])
    with pytest.raises(ValueError, match="record and sample, or a stream's memory"):
        sig.decide(probs, ["N", "V"], {"beat": X})
    assert sig.decide(probs, ["N", "V"], {"beat": X}, groups=np.zeros(3)).tolist() == [0, 0, 1]
    mem = sig.memory()  # a stream's: the vote's memory (no dominant-beat rule here)
    assert mem.usual is None and mem.vote.count == 0
    assert sig.decide(probs, ["N", "V"], {"beat": X}, memory=mem).tolist() == [0, 0, 1]
    assert mem.vote.count == 3


def test_the_vote_is_refused_where_beats_are_not_whole_records(synth_dir, tmp_path):
    """A split by beat scatters a record's held-out beats, and Kaggle CSV rows have no
    patients: asking for the vote there is a usage error, before any training."""
    from click.testing import CliRunner

    from vitaledge.cli import main

    res = CliRunner().invoke(main, ["train", "beat", "--arch", "tiny-rrt", "--data",
                                    str(synth_dir), "--split", "beat", "--vote", "similar",
                                    "--out", str(tmp_path / "run")])
    assert res.exit_code == 2, res.output
    assert "similar-beat vote decides over each patient's beats" in res.output
    assert not (tmp_path / "run").exists()
