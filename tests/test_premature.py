"""The decision rules of beat models: the premature-beat rule (N/S by timing, fitted on
training patients) and the dominant-beat rule (V like the patient's template and on time
is N; early, unlike it and followed by a compensatory pause is V), carried by the signal
spec, refused when malformed."""

import re

import numpy as np
import pytest

from vitaledge.device.dsp.premature import PrematureRule, log_terms
from vitaledge.device.dsp.rr import FEATURES
from vitaledge.device.dsp.spec_fields import SpecError
from vitaledge.device.io.aami import CLASSES
from vitaledge.device.io.beats import BeatSet

LABELS = list(CLASSES)
N, S, V = LABELS.index("N"), LABELS.index("S"), LABELS.index("V")


def rr_rows(pre, post, local=0.8, long=0.8, irregular=0.0):
    """RR feature rows (the order of rr.FEATURES) for given pre/post intervals."""
    pre, post = np.asarray(pre, float), np.asarray(post, float)
    n = len(pre)
    loc, lng = np.full(n, local), np.full(n, long)
    irr = np.broadcast_to(np.asarray(irregular, float), (n,))
    return np.stack([pre, post, loc, lng, pre / lng, post / lng, loc / lng, irr],
                    1).astype(np.float32)


def test_terms_are_the_logs_of_the_rr_ratios():
    rr = rr_rows([0.4, 0.8], [1.2, 0.8])
    t = log_terms(rr, ["pre_rel", "pre_local", "post_pre"])
    np.testing.assert_allclose(np.exp(t), [[0.5, 0.5, 3.0], [1.0, 1.0, 1.0]], rtol=1e-6)
    assert len(FEATURES) == rr.shape[1]


def test_rule_decides_n_and_s_by_timing_and_leaves_v_alone():
    rule = PrematureRule(["pre_rel"], [-10.0], -1.0, 0.8)
    rr = rr_rows([0.5, 0.8, 0.5, 0.8, 0.5], [1.1, 0.8, 1.1, 0.8, 1.1])
    pred = np.array([N, S, S, N, V])  # network: early N, on-time S, early S, N, early V
    out = rule.apply(pred, rr, LABELS)
    assert out.tolist() == [S, N, S, N, V]
    assert rule.score(rr)[0] > 0.95 and rule.score(rr)[1] < 0.3


def test_an_irregular_rhythm_keeps_early_beats_n():
    rule = PrematureRule(["pre_rel"], [-10.0], -1.0, 0.8, max_irregularity=0.1)
    early = rr_rows([0.5] * 4, [1.1] * 4, irregular=[0.0, 0.1, 0.11, 0.4])
    out = rule.apply(np.array([N, S, N, S]), early, LABELS)
    assert out.tolist() == [S, S, N, N]  # regular up to 0.1; above it, early says nothing
    assert rule.regular(early).tolist() == [True, True, False, False]
    # no gate: the same beats are all S; the rule of seven RR features has no irregularity
    ungated = PrematureRule(["pre_rel"], [-10.0], -1.0, 0.8)
    assert ungated.apply(np.array([N, S, N, S]), early, LABELS).tolist() == [S] * 4
    assert ungated.apply(np.array([N]), early[:1, :7], LABELS).tolist() == [S]


def test_fit_on_training_beats_learns_that_early_means_s():
    from vitaledge.train.premature import fit_premature

    rng = np.random.default_rng(0)
    n_n, n_s = 400, 60
    pre = np.r_[rng.normal(0.8, 0.05, n_n), rng.normal(0.5, 0.05, n_s)]
    post = np.r_[rng.normal(0.8, 0.05, n_n), rng.normal(1.1, 0.05, n_s)]
    y = np.r_[np.full(n_n, N), np.full(n_s, S)]
    beats = BeatSet(np.zeros((len(y), 4), np.float32), y, np.full(len(y), "p", dtype=object),
                    np.arange(len(y)), rr=rr_rows(pre, post))
    rule = fit_premature(beats)
    assert rule.terms == ["pre_rel", "pre_local", "post_pre"] and rule.weights[0] < 0
    pred = rule.apply(np.full(len(y), N), beats.rr, LABELS)
    assert (pred == y).mean() > 0.95
    with pytest.raises(ValueError, match="at least 20 N and 20 S"):
        fit_premature(beats.subset(np.arange(n_n + 5)))  # 5 S beats only


def test_signal_spec_carries_the_rule_and_refuses_bad_ones():
    from vitaledge.device.dsp.rr import RRSpec
    from vitaledge.device.dsp.windows import WindowSpec
    from vitaledge.device.inputs.beat import BeatSignal

    rule = PrematureRule(["pre_rel", "post_pre"], [-9.0, 3.0], -2.0, 0.8)
    sig = BeatSignal(WindowSpec.centered(), rr=RRSpec(), premature=rule)
    d = sig.to_dict()
    assert BeatSignal.from_dict(d) == sig
    with pytest.raises(SpecError, match="signal.premature.terms"):
        BeatSignal.from_dict({**d, "premature": {**d["premature"], "terms": ["qrs_width",
                                                                              "post_pre"]}})
    with pytest.raises(SpecError, match="signal.premature.weights"):
        BeatSignal.from_dict({**d, "premature": {**d["premature"], "weights": [1.0]}})
    with pytest.raises(SpecError, match="signal.premature.threshold"):
        BeatSignal.from_dict({**d, "premature": {**d["premature"], "threshold": 1.5}})
    # a rule written before the regularity gate existed reads as one without it
    old = {k: v for k, v in d["premature"].items() if k != "max_irregularity"}
    assert BeatSignal.from_dict({**d, "premature": old}).premature.max_irregularity is None
    gated = {**d["premature"], "max_irregularity": 0.1}
    assert BeatSignal.from_dict({**d, "premature": gated}).premature.max_irregularity == 0.1
    with pytest.raises(SpecError, match="signal.premature.max_irregularity"):
        BeatSignal.from_dict({**d, "premature": {**gated, "max_irregularity": -1}})
    seven = {**d["rr"], "features": list(FEATURES[:7])}
    with pytest.raises(SpecError, match="needs the \"irregularity\" RR feature"):
        BeatSignal.from_dict({**d, "rr": seven, "premature": gated})
    no_rr = {k: v for k, v in d.items() if k != "rr"}
    with pytest.raises(SpecError, match="needs the RR features"):
        BeatSignal.from_dict(no_rr)
    with pytest.raises(ValueError, match=r"need its \['rr'\] inputs"):
        sig.decide(np.eye(5)[[0]], LABELS, None)


def test_dominant_rule_turns_usual_on_time_beats_from_v_to_n():
    from vitaledge.device.dsp.dominant import DominantRule
    from vitaledge.device.dsp.shape import correlation

    t = np.sin(np.linspace(0, 3 * np.pi, 64))
    other = np.cos(np.linspace(0, 7 * np.pi, 64))
    windows = np.stack([t * 2 + 0.1, t, other, t])       # usual, usual, unlike, usual
    templates = np.stack([t, t, t, t])
    assert correlation(windows, templates)[0] == pytest.approx(1.0)
    assert correlation(np.zeros((1, 64)), templates[:1])[0] == 0.0  # flat: no match
    rr = rr_rows([0.8, 0.8, 0.8, 0.5], [0.8, 0.8, 0.8, 1.1])  # the last one is early
    pred = np.array([V, N, V, V])
    out = DominantRule(0.9, 0.9, None).apply(pred, windows, templates, rr, LABELS)
    assert out.tolist() == [N, N, V, V]  # like the template and on time -> N; else V stays


def test_early_unlike_beats_with_a_compensatory_pause_become_v():
    """A beat unlike the template, early and followed by a full compensatory pause (pre
    plus post RR about two cycles) is V whatever the network said; without the pause (an
    atrial beat resets the sinus node), on time, or like the usual beat, it keeps its class."""
    from vitaledge.device.dsp.dominant import CompensatoryPause, DominantRule

    n = np.linspace(0, 1, 64)
    t = np.exp(-((n - 0.5) / 0.04) ** 2)                      # the usual narrow QRS
    wide = -np.exp(-((n - 0.45) / 0.15) ** 2)                 # a wide, inverted complex
    windows = np.stack([wide, wide, wide, t, wide, wide])
    templates = np.stack([t] * 6)
    # long_rr 0.8: pre/post (s) -> pre_rel + post_rel = 2.0, 1.5, 2.0, 2.0, 2.0, 1.875
    rr = rr_rows([0.5, 0.5, 0.8, 0.5, 0.5, 0.5], [1.1, 0.7, 0.8, 1.1, 1.1, 1.0])
    pred = np.array([N, S, N, S, LABELS.index("F"), N])
    out = DominantRule().apply(pred, windows, templates, rr, LABELS)
    assert out.tolist() == [V, S, N, S, V, N]
    # the thresholds are the rule's: a shorter pause passes a lower min_pause
    lower = DominantRule(compensatory=CompensatoryPause(min_pause=1.8))
    assert lower.apply(pred, windows, templates, rr, LABELS).tolist() == [V, S, N, S, V, V]
    assert DominantRule(compensatory=None).apply(pred, windows, templates, rr,
                                                 LABELS).tolist() == pred.tolist()


def test_compensatory_pause_finds_bigeminy_the_network_missed_stream_equal_to_batch():
    """Ventricular bigeminy the network calls N: compared with the template of the beats
    on time (the sinus beat), each ectopic beat is unlike it, early and followed by a full
    pause, and is called V, in batch and in a stream of any chunking alike; the sinus beats
    stay N."""
    from vitaledge.device.dsp.dominant import DominantRule
    from vitaledge.device.dsp.rr import RRSpec, rr_features
    from vitaledge.device.dsp.template import TemplateSpec, templates
    from vitaledge.device.dsp.windows import WindowSpec
    from vitaledge.device.inputs.beat import BeatSignal

    fs, n = 360.0, np.linspace(0, 1, 64)
    sinus = np.exp(-((n - 0.5) / 0.04) ** 2)
    ectopic = -np.exp(-((n - 0.45) / 0.15) ** 2)
    gaps = [0.8] * 30 + [0.5, 1.1] * 30  # sinus, then bigeminy with a full pause
    peaks = np.round(np.cumsum([1.0] + gaps) * fs).astype(np.int64)
    is_v = np.array([False] * 31 + [True, False] * 30)
    X = np.where(is_v[:, None], ectopic, sinus).astype(np.float32)
    rr = rr_features(peaks, fs, RRSpec())
    inputs = {"beat": X[..., None], "rr": rr,
              "template": templates(X, TemplateSpec(), rr)[..., None]}
    probs = np.eye(5)[np.full(len(X), N)]  # the network saw no V
    sig = BeatSignal(WindowSpec.centered(), rr=RRSpec(), template=TemplateSpec(),
                     dominant=DominantRule())
    got = sig.decide(probs, LABELS, inputs, groups=np.zeros(len(X), int), times=peaks)
    assert (got[is_v] == V).all() and (got[~is_v] == N).all()
    for step in (1, 5, len(X)):
        mem = sig.memory()
        parts = [sig.decide(probs[i:i + step], LABELS,
                            {k: v[i:i + step] for k, v in inputs.items()}, memory=mem)
                 for i in range(0, len(X), step)]
        assert np.concatenate(parts).tolist() == got.tolist()


def test_dominant_rule_frees_early_beats_shaped_exactly_like_the_usual_one():
    """An early beat whose window matches the template above ``min_corr_any`` is not V
    (the premature-beat rule then calls it S by timing); an early beat that only resembles
    it (between ``min_corr`` and ``min_corr_any``) stays V, as does an unlike one."""
    from vitaledge.device.dsp.dominant import DominantRule
    from vitaledge.device.dsp.premature import PrematureRule
    from vitaledge.device.dsp.rr import RRSpec
    from vitaledge.device.dsp.shape import correlation
    from vitaledge.device.dsp.template import TemplateSpec
    from vitaledge.device.dsp.windows import WindowSpec
    from vitaledge.device.inputs.beat import BeatSignal

    n = np.linspace(0, 1, 64)
    t = np.exp(-((n - 0.5) / 0.05) ** 2)                       # the usual QRS
    wide = np.exp(-((n - 0.5) / 0.1) ** 2)                     # resembles it: r ~ 0.89
    same = t + 0.02 * np.sin(40 * n)                           # r > 0.99
    windows = np.stack([same, wide, -t])
    templates = np.stack([t, t, t])
    r = correlation(windows, templates)
    assert r[0] > 0.99 and 0.75 < r[1] < 0.9 and r[2] < 0
    rr = rr_rows([0.5, 0.5, 0.5], [1.1, 1.1, 1.1])             # all three early
    pred = np.array([V, V, V])
    rule = DominantRule()
    assert (rule.min_corr, rule.min_corr_any) == (0.75, 0.9)
    assert rule.apply(pred, windows, templates, rr, LABELS).tolist() == [N, V, V]
    assert DominantRule(min_corr_any=None).apply(pred, windows, templates, rr,
                                                 LABELS).tolist() == [V, V, V]
    # through the signal spec: freed from V, the premature-beat rule calls it S
    sig = BeatSignal(WindowSpec.centered(), rr=RRSpec(), template=TemplateSpec(),
                     premature=PrematureRule(["pre_rel"], [-5.0], 0.0, 0.8),
                     dominant=DominantRule(on_time=None))  # compares with the template input
    probs = np.eye(5)[pred]
    got = sig.decide(probs, LABELS, {"beat": windows[..., None], "rr": rr,
                                     "template": templates[..., None]})
    assert got.tolist() == [S, V, V]
    with pytest.raises(SpecError, match="min_corr_any"):
        DominantRule(0.9, 0.9, 0.8)
    # on time, a beat that resembles the usual one (r ~ 0.89 > min_corr) is N
    on_time = rr_rows([0.8] * 3, [0.8] * 3)
    assert rule.apply(pred, windows, templates, on_time, LABELS).tolist() == [N, N, V]


def test_signal_spec_with_dominant_rule_needs_the_template():
    from vitaledge.device.dsp.dominant import DominantRule
    from vitaledge.device.dsp.rr import RRSpec
    from vitaledge.device.dsp.template import TemplateSpec
    from vitaledge.device.dsp.windows import WindowSpec
    from vitaledge.device.inputs.beat import BeatSignal

    sig = BeatSignal(WindowSpec.centered(), rr=RRSpec(), template=TemplateSpec(),
                     dominant=DominantRule())
    d = sig.to_dict()
    assert d["dominant"] == {"min_corr": 0.75, "min_pre_rel": 0.9, "min_corr_any": 0.9,
                             "on_time": [0.9, 1.3],
                             "compensatory": {"max_corr": 0.7, "max_pre_rel": 0.9,
                                              "min_pause": 1.9}}
    assert BeatSignal.from_dict(d) == sig
    # a manifest written before min_corr_any, on_time and compensatory decides as then
    old = BeatSignal.from_dict({**d, "dominant": {"min_corr": 0.9, "min_pre_rel": 0.9}})
    assert old.dominant.min_corr_any is None and old.dominant.on_time is None
    assert old.dominant.compensatory is None
    off = BeatSignal.from_dict({**d, "dominant": {**d["dominant"], "compensatory": None}})
    assert off.dominant.compensatory is None and off.dominant.on_time == (0.9, 1.3)
    pause = d["dominant"]["compensatory"]
    for bad, field in (({**pause, "max_corr": 0.95}, "compensatory.max_corr"),
                       ({**pause, "max_pre_rel": 1.2}, "compensatory.max_pre_rel"),
                       ({**pause, "min_pause": 0.9}, "compensatory.min_pause"),
                       ({**pause, "min_pause": "1.9"}, "compensatory.min_pause"),
                       ({**pause, "width": 3}, "compensatory"),
                       ([0.7, 0.9, 1.9], "compensatory")):
        with pytest.raises(SpecError, match=rf"^signal\.dominant\.{re.escape(field)}: "):
            BeatSignal.from_dict({**d, "dominant": {**d["dominant"], "compensatory": bad}})
    assert old.memory() is None  # no vote, and the rule reads the template input
    for bad in ([0.9], [1.1, 1.3], "0.9,1.3", [0.9, True]):
        with pytest.raises(SpecError, match="signal.dominant.on_time"):
            BeatSignal.from_dict({**d, "dominant": {**d["dominant"], "on_time": bad}})
    with pytest.raises(SpecError, match="needs the RR features and the template"):
        BeatSignal.from_dict({k: v for k, v in d.items() if k != "template"})
    with pytest.raises(SpecError, match="signal.dominant.min_corr"):
        BeatSignal.from_dict({**d, "dominant": {"min_corr": 2.0, "min_pre_rel": 0.9}})
    with pytest.raises(ValueError, match="inputs"):
        sig.decide(np.eye(5)[[2]], LABELS, {"rr": rr_rows([0.8], [0.8])})


def test_dominant_rule_compares_with_the_beats_on_time_stream_equal_to_batch():
    """In bigeminy the ectopic beats are half of the recent beats: a template over every
    beat (the network's template input) drifts towards them and the rule calls them N;
    the rule's own template of the beats on time stays the sinus beat and they stay V.
    Stream (a memory carried over calls) and batch (per patient in time order) agree."""
    from vitaledge.device.dsp.dominant import DominantRule
    from vitaledge.device.dsp.rr import RRSpec, rr_features
    from vitaledge.device.dsp.template import TemplateSpec, templates
    from vitaledge.device.dsp.windows import WindowSpec
    from vitaledge.device.inputs.beat import BeatSignal, DecisionMemory

    fs, n = 360.0, np.linspace(0, 1, 64)
    sinus = np.exp(-((n - 0.5) / 0.04) ** 2)
    ectopic = 0.4 * sinus + 0.6 * np.exp(-((n - 0.55) / 0.12) ** 2)  # r 0.80 with sinus
    gaps = [0.8] * 20 + [0.5, 1.1] * 30  # sinus, then bigeminy: early beat, pause
    peaks = np.round(np.cumsum([1.0] + gaps) * fs).astype(np.int64)
    is_v = np.array([False] * 21 + [True, False] * 30)
    X = np.where(is_v[:, None], ectopic, sinus).astype(np.float32)
    rr = rr_features(peaks, fs, RRSpec())
    every = templates(X, TemplateSpec(), rr)
    inputs = {"beat": X[..., None], "rr": rr, "template": every[..., None]}
    probs = np.eye(5)[np.where(is_v, V, N)]
    on_time = BeatSignal(WindowSpec.centered(), rr=RRSpec(), template=TemplateSpec(),
                         dominant=DominantRule())
    plain = BeatSignal(WindowSpec.centered(), rr=RRSpec(), template=TemplateSpec(),
                       dominant=DominantRule(on_time=None))
    groups = np.zeros(len(X), int)
    got = on_time.decide(probs, LABELS, inputs, groups=groups, times=peaks)
    assert (got[is_v] == V).all() and (got[~is_v] == N).all()
    before = plain.decide(probs, LABELS, inputs)
    assert (before[is_v] == N).sum() >= 10  # the drifting template freed the late ectopics
    # the stream: any split of the beats into calls, one memory carried over
    for step in (1, 7, len(X)):
        mem = on_time.memory()
        assert isinstance(mem, DecisionMemory) and mem.vote is None
        parts = [on_time.decide(probs[i:i + step], LABELS,
                                {k: v[i:i + step] for k, v in inputs.items()}, memory=mem)
                 for i in range(0, len(X), step)]
        assert np.concatenate(parts).tolist() == got.tolist()
    # two patients interleaved in the rows: each decided over its own beats in time order
    both = on_time.decide(np.concatenate([probs, probs]), LABELS,
                          {k: np.concatenate([v, v]) for k, v in inputs.items()},
                          groups=np.repeat([0, 1], len(X)), times=np.concatenate([peaks, peaks]))
    assert both.tolist() == got.tolist() * 2
    with pytest.raises(ValueError, match="time order"):
        on_time.decide(probs, LABELS, inputs)
