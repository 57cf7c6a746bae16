import numpy as np
import pytest

from vitaledge.device.dsp.filters import CausalFilter, FilterSpec, apply_filter
from vitaledge.device.dsp.windows import WindowSpec, extract_beats


def spike_train(fs: float, rr_s: float, n_beats: int, width_s: float = 0.012):
    """Gaussian 'R waves' every ``rr_s`` seconds, starting 1 s in."""
    t = np.arange(int((1.0 + rr_s * (n_beats + 1)) * fs)) / fs
    r_times = 1.0 + rr_s * np.arange(n_beats)
    x = sum(np.exp(-0.5 * ((t - rt) / width_s) ** 2) for rt in r_times)
    return x, np.round(r_times * fs).astype(np.int64)


def test_kachuee_window_starts_at_r_and_spans_1_2_median_rr():
    x, r = spike_train(360, 0.8, 12)
    X, kept = extract_beats(x, 360, r, WindowSpec.kachuee(filter=None))
    assert X.shape[1] == 187
    # rr = 288 samples at 360 Hz -> 1.2 * 288 * 125 / 360 = 120 output samples, then zeros
    later = X[kept > 0]
    assert np.all(later[:, 120:] == 0)
    assert np.all(later[:, 110:120].max(axis=1) > 0)
    # starts on the R peak: the [0, 1] scaled window has its maximum at index 0
    assert np.all(later[:, 0] > 0.99)
    assert np.allclose(later.max(axis=1), 1.0)


def test_kachuee_long_rr_is_cropped_to_187():
    x, r = spike_train(360, 2.0, 6)
    X, kept = extract_beats(x, 360, r, WindowSpec.kachuee(filter=None))
    # 1.2 * 2 s * 125 Hz = 300 > 187: no zero padding; the next R (at 250) is cut off
    assert np.all(X[kept > 0][:, 150:187].max(axis=1) > 0)


def test_kachuee_median_rr_is_causal_and_uses_default_for_first_beat():
    spec = WindowSpec.kachuee(filter=None, default_rr_s=0.4)
    x, r = spike_train(360, 0.8, 5)
    X, kept = extract_beats(x, 360, r, spec)
    first = X[kept == 0][0]
    # default 0.4 s -> 1.2 * 0.4 * 125 = 60 samples
    assert np.all(first[60:] == 0)
    assert first[0] > 0.99
    second = X[kept == 1][0]  # sees one real interval (0.8 s) -> 120 samples
    assert np.all(second[120:] == 0) and second[100:120].max() > 0


def test_centered_window_puts_r_at_n_before():
    spec = WindowSpec.centered(before_s=0.25, after_s=0.45, fs=125, filter=None)
    assert spec.length == 31 + 56 and spec.n_before == 31
    x, r = spike_train(360, 1.0, 8)
    X, kept = extract_beats(x, 360, r, spec)
    assert len(kept) == 8
    assert np.all(np.argmax(X, axis=1) == 31)


def test_beats_too_close_to_the_edges_are_dropped():
    spec = WindowSpec.centered(before_s=0.25, after_s=0.45, fs=125, filter=None)
    x, r = spike_train(360, 1.0, 8)
    r = np.concatenate([[20], r, [len(x) - 30]])  # 56 ms from the start / 83 ms from the end
    X, kept = extract_beats(x, 360, r, spec)
    assert kept.tolist() == list(range(1, 9))
    kspec = WindowSpec.kachuee(filter=None)
    X, kept = extract_beats(x, 360, r, kspec)
    assert 0 not in kept and len(r) - 1 not in kept


def test_any_source_rate_gives_the_same_window():
    spec = WindowSpec.centered(before_s=0.3, after_s=0.4, fs=125, filter=None)
    out = []
    for fs in (360, 250, 500, 125):
        x, r = spike_train(fs, 0.9, 6, width_s=0.03)
        X, _ = extract_beats(x, fs, r, spec)
        out.append(X[2])
    for w in out[1:]:
        assert np.corrcoef(out[0], w)[0, 1] > 0.999


def test_window_spec_round_trips_and_refuses_unknown_fields():
    for spec in (WindowSpec.kachuee(), WindowSpec.centered(fs=250, filter=None)):
        assert WindowSpec.from_dict(spec.to_dict()) == spec
    d = WindowSpec.kachuee().to_dict()
    d["hop"] = 3
    with pytest.raises(ValueError, match="unknown fields"):
        WindowSpec.from_dict(d)
    with pytest.raises(ValueError, match="convention"):
        WindowSpec(convention="sideways")
    # a rate that does not fit the window is named with what it makes of before_s
    d = WindowSpec.centered().to_dict()
    with pytest.raises(ValueError, match=r"before_s.*0.25 s at 5000 Hz is 1250 "
                                         r"samples before the R peak, not within the "
                                         r"window's 87"):
        WindowSpec.from_dict({**d, "fs": 5000.0})
    # one no record has (a manifest's window.fs of 1e9 hung the benches)
    with pytest.raises(ValueError, match=r"^window.fs: 1000000000.0 Hz is outside 10-10000 Hz"):
        WindowSpec.from_dict({**d, "fs": 1e9})


@pytest.mark.parametrize("chunk", [1, 7, 360, 10_000])
def test_streaming_filter_equals_batch_filter(chunk):
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(size=20_000)) * 0.01 + 1.5
    whole = apply_filter(x, 360, FilterSpec())
    f = CausalFilter(FilterSpec(), 360)
    parts = np.concatenate([f.process(x[i:i + chunk]) for i in range(0, len(x), chunk)])
    # equal to rounding: the filter works in blocks, and block edges follow the chunking
    np.testing.assert_allclose(parts, whole, rtol=0, atol=1e-12 * np.max(np.abs(whole)))


def test_bandpass_removes_baseline_and_keeps_qrs_band():
    fs = 360
    t = np.arange(20 * fs) / fs
    wander = 2.0 * np.sin(2 * np.pi * 0.1 * t)
    qrs_band = 0.5 * np.sin(2 * np.pi * 10 * t)
    y = apply_filter(wander + qrs_band, fs, FilterSpec())
    tail = y[10 * fs:]
    assert np.std(tail) == pytest.approx(np.std(qrs_band), rel=0.1)
    assert abs(np.mean(tail)) < 0.02
