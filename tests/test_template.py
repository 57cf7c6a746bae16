"""The patient's running template (vitaledge.device.dsp.template): with ``on_time`` (the
dominant-beat rule's template) the median of the recent beats that came on time, so a
bigeminy's ectopic beats never become the usual beat; the stream and the batch agree; the
spec field is strict and older manifests read as before."""

from __future__ import annotations

import numpy as np
import pytest

from vitaledge.device.dsp.rr import rr_features
from vitaledge.device.dsp.spec_fields import SpecError
from vitaledge.device.dsp.template import BeatTemplate, TemplateSpec, templates
from vitaledge.device.dsp.windows import WindowSpec
from vitaledge.device.inputs.beat import BeatSignal

FS = 360.0
L = 40
T = np.linspace(0, 1, L)
NARROW = np.exp(-((T - 0.5) / 0.04) ** 2).astype(np.float32)  # the sinus QRS
WIDE = -np.exp(-((T - 0.5) / 0.15) ** 2).astype(np.float32)  # an inverted, wide ectopic
ON_TIME = TemplateSpec(on_time=(0.9, 1.3))  # as the dominant-beat rule makes its own


def _bigeminy(n_sinus: int = 30, n_pairs: int = 40):
    """Sinus beats every 0.8 s, then every sinus beat followed by a ventricular beat 0.5 s
    after it and a 1.1 s compensatory pause: (windows, RR features, is-ventricular)."""
    gaps = [0.8] * n_sinus + [0.5, 1.1] * n_pairs
    peaks = np.round(np.cumsum([1.0] + gaps) * FS).astype(np.int64)
    v = np.array([False] * (n_sinus + 1) + [True, False] * n_pairs)
    X = np.where(v[:, None], WIDE, NARROW).astype(np.float32)
    return X, rr_features(peaks, FS), v


def test_ectopic_beats_in_bigeminy_never_enter_the_template():
    X, rr, v = _bigeminy()
    on_time = templates(X, ON_TIME, rr)
    # every beat's template is the sinus beat: the early beats (0.5 s against a local mean
    # near 0.8 s) and the beat after each pause (1.1 s) stay out of it
    np.testing.assert_allclose(on_time[1:], np.broadcast_to(NARROW, on_time[1:].shape),
                               atol=1e-6)
    # the median of every recent beat (manifests before on_time) learns the ventricular
    # beat once it is half of the last 20: a template no longer shaped like the sinus beat
    every = templates(X, TemplateSpec())
    late = every[-1]
    assert np.corrcoef(late, NARROW)[0, 1] < 0.9
    assert not np.allclose(late, NARROW, atol=1e-3)
    assert v.sum() == 40


def test_stream_pushes_equal_the_batch_and_pace_is_required():
    X, rr, _ = _bigeminy(10, 10)
    spec = TemplateSpec(beats=8, on_time=(0.85, 1.2))
    pace = spec.pace(rr)
    t = BeatTemplate(spec)
    stream = np.stack([t.push(w, float(p)) for w, p in zip(X, pace, strict=True)])
    np.testing.assert_array_equal(stream, templates(X, spec, rr))
    with pytest.raises(ValueError, match="on_time"):
        BeatTemplate(spec).push(X[0])
    with pytest.raises(ValueError, match="RR features"):
        templates(X, spec)
    with pytest.raises(ValueError, match="RR feature rows"):
        templates(X, spec, rr[:-1])
    # without on_time every beat enters and no pace is needed
    every = TemplateSpec(on_time=None)
    assert every.pace(rr) is None
    np.testing.assert_array_equal(templates(X, every), templates(X, every, rr))


def test_a_beat_with_no_on_time_beat_before_it_is_its_own_template():
    t = BeatTemplate(ON_TIME)
    early, late, sinus = 2 * WIDE, WIDE, NARROW
    np.testing.assert_array_equal(t.push(early, 0.6), early)  # nothing before it
    np.testing.assert_array_equal(t.push(late, 1.5), late)  # the early one did not enter
    np.testing.assert_array_equal(t.push(sinus, 1.0), sinus)  # nor the one after a pause
    np.testing.assert_allclose(t.push(early, 0.6), sinus)  # the on-time one did
    t.reset()
    np.testing.assert_array_equal(t.push(late, 1.0), late)


def test_spec_round_trips_and_reads_older_manifests_as_every_beat():
    assert TemplateSpec().on_time is None  # the network's template input: every beat
    assert TemplateSpec.from_dict(ON_TIME.to_dict()) == ON_TIME
    assert ON_TIME.to_dict() == {"beats": 20, "on_time": [0.9, 1.3]}
    old = TemplateSpec.from_dict({"beats": 20})
    assert old.on_time is None and old.to_dict() == {"beats": 20, "on_time": None}
    for bad in ([1.2, 1.3], [0.9], [0.5, 0.9], [float("nan"), 1.2], "0.9,1.3"):
        with pytest.raises(ValueError, match="on_time"):
            TemplateSpec(on_time=bad)
    with pytest.raises(ValueError, match="unknown keys"):
        TemplateSpec.from_dict({"beats": 20, "ontime": [0.9, 1.3]})


def test_a_signal_with_an_on_time_template_needs_rr_features():
    window = WindowSpec.centered().to_dict()
    with pytest.raises(SpecError, match="template"):
        BeatSignal.from_dict({"kind": "beat", "window": window, "lead": "MLII",
                              "template": {"beats": 20, "on_time": [0.9, 1.3]}})
    sig = BeatSignal.from_dict({"kind": "beat", "window": window, "lead": "MLII",
                                "template": {"beats": 20}})
    assert sig.template.on_time is None
