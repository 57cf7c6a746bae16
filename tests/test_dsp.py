"""The numpy signal path (filters, resample, R-peak helpers) equals the scipy reference.

scipy is only the yardstick here: the daemon's modules must not import it (memory budget).
"""

import subprocess
import sys

import numpy as np
import pytest
from scipy import signal as sps
from scipy.ndimage import maximum_filter1d

from vitaledge.device.dsp.filters import (
    CausalFilter,
    FilterSpec,
    StreamingFir,
    apply_filter,
    design,
)
from vitaledge.device.dsp.resample import antialias_taps, filter_half_len_in, rate_ratio, resample
from vitaledge.device.dsp.rpeaks import sliding_max

# the filters the repository uses (beat pipeline at each database rate, the R-peak
# band-pass, a GSR-type low-pass, a high-pass) and a few more orders
SPECS = [(FilterSpec(0.5, 40.0, 2), fs) for fs in (125.0, 128.0, 250.0, 360.0)] + [
    (FilterSpec(5.0, 15.0, 2), 360.0),
    (FilterSpec(None, 1.0, 2), 128.0),
    (FilterSpec(0.5, None, 2), 360.0),
    (FilterSpec(0.5, 40.0, 1), 360.0),
    (FilterSpec(0.5, 40.0, 3), 128.0),
    (FilterSpec(0.5, 40.0, 4), 250.0),
    (FilterSpec(None, 40.0, 3), 360.0),
    (FilterSpec(1.0, None, 4), 128.0),
]


def scipy_sos(spec: FilterSpec, fs: float) -> np.ndarray:
    if spec.low_hz is not None and spec.high_hz is not None:
        return sps.butter(spec.order, [spec.low_hz, spec.high_hz], "bandpass", fs=fs,
                          output="sos")
    if spec.low_hz is not None:
        return sps.butter(spec.order, spec.low_hz, "highpass", fs=fs, output="sos")
    return sps.butter(spec.order, spec.high_hz, "lowpass", fs=fs, output="sos")


def scipy_filter(spec: FilterSpec, fs: float, x: np.ndarray) -> np.ndarray:
    sos = scipy_sos(spec, fs)
    return sps.sosfilt(sos, x, zi=sps.sosfilt_zi(sos) * x[0])[0]


def ecg_like(n: int, seed: int = 0) -> np.ndarray:
    """Noise on a wandering baseline with a DC offset (the hard case for high-passes)."""
    rng = np.random.default_rng(seed)
    return 3.0 + 0.01 * np.cumsum(rng.standard_normal(n)) + rng.standard_normal(n)


def rel_err(y: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(y - ref)) / np.max(np.abs(ref)))


def chunked(f: CausalFilter, x: np.ndarray, sizes) -> np.ndarray:
    out, a, i = [], 0, 0
    while a < len(x):
        n = sizes[i % len(sizes)]
        out.append(f.process(x[a:a + n]))
        a, i = a + n, i + 1
    return np.concatenate(out)


@pytest.mark.parametrize("spec,fs", SPECS)
def test_design_has_scipys_transfer_function(spec, fs):
    ours, ref = design(spec, fs), scipy_sos(spec, fs)
    assert ours.shape == ref.shape and np.all(ours[:, 3] == 1.0)
    w = np.linspace(0, np.pi, 2001)
    _, h_ours = sps.sosfreqz(ours, worN=w)
    _, h_ref = sps.sosfreqz(ref, worN=w)
    assert np.max(np.abs(h_ours - h_ref)) < 1e-10


@pytest.mark.parametrize("spec,fs", SPECS)
def test_filter_equals_scipy_sosfilt_on_a_30_minute_signal(spec, fs):
    x = ecg_like(int(30 * 60 * fs))
    ref = scipy_filter(spec, fs, x)
    assert rel_err(apply_filter(x, fs, spec), ref) < 1e-9
    ten_s = int(10 * fs)
    assert rel_err(chunked(CausalFilter(spec, fs), x, [ten_s]), ref) < 1e-9


@pytest.mark.parametrize("spec,fs", [SPECS[3], SPECS[4], SPECS[5], SPECS[6]])
@pytest.mark.parametrize("sizes", [[1], [7], [360], [10_000], [1, 700, 64, 65, 513, 9000, 3]])
def test_chunked_filter_equals_whole_signal(spec, fs, sizes):
    x = ecg_like(30_000, seed=1)
    whole = apply_filter(x, fs, spec)
    assert rel_err(chunked(CausalFilter(spec, fs), x, sizes), whole) < 1e-12


def test_filter_starts_in_steady_state_and_reset_restarts():
    x = np.full(5000, 7.5)
    low = CausalFilter(FilterSpec(None, 1.0, 2), 128)
    assert np.allclose(low.process(x), 7.5, rtol=0, atol=1e-9)
    band = CausalFilter(FilterSpec(), 360)
    assert np.max(np.abs(band.process(x))) < 1e-9
    y = ecg_like(4000, seed=2)
    first = band.process(y)  # continues from the constant's state
    band.reset()
    assert np.array_equal(band.process(y), apply_filter(y, 360, FilterSpec()))
    assert not np.allclose(first, apply_filter(y, 360, FilterSpec()))


def test_no_filter_and_empty_chunks_pass_through():
    x = ecg_like(100)
    assert np.array_equal(apply_filter(x, 360, None), x)
    f = CausalFilter(FilterSpec(), 360)
    assert f.process(np.zeros(0)).shape == (0,)
    assert rel_err(chunked(f, x, [0, 10]), apply_filter(x, 360, FilterSpec())) < 1e-12


@pytest.mark.parametrize("spec", [FilterSpec(0.5, 180.0, 2), FilterSpec(None, None),
                                  FilterSpec(40.0, 0.5, 2), FilterSpec(0.0, 40.0)])
def test_bad_filter_specs_are_refused(spec):
    with pytest.raises(ValueError, match="filter"):
        design(spec, 360)


@pytest.mark.parametrize("order", [0, 9, 200, 2.5, True])
def test_a_filter_order_outside_1_to_8_is_refused_when_the_spec_is_made(order):
    """Order 200 in a manifest passed every check, then took minutes and a gigabyte to
    design at start-up; order 0 was refused only then."""
    with pytest.raises(ValueError, match="order: expected an integer from 1 to 8"):
        FilterSpec(0.5, 40.0, order)


@pytest.mark.parametrize("b", [np.array([2, 1, 0, -1, -2]) * 360 / 8.0, np.ones(54) / 54,
                               np.ones(1)])
def test_fir_is_bit_exact_for_any_chunking_and_equals_lfilter(b):
    rng = np.random.default_rng(4)
    x = 100 * rng.standard_normal(20_000)
    whole = StreamingFir(b).process(x)
    ref = sps.lfilter(b, [1.0], x)
    assert rel_err(whole, ref) < 1e-14
    for sizes in ([1], [7], [360], [3, 1, 200, 53, 54, 55, 4096]):
        f = StreamingFir(b)
        out, a, i = [], 0, 0
        while a < len(x):
            out.append(f.process(x[a:a + sizes[i % len(sizes)]]))
            a, i = a + sizes[i % len(sizes)], i + 1
        assert np.array_equal(np.concatenate(out), whole)


@pytest.mark.parametrize("size", [1, 3, 5, 71, 145, 289])
def test_sliding_max_equals_scipy_maximum_filter1d(size):
    rng = np.random.default_rng(size)
    for n in (0, 1, 2, size // 2, size - 1, size, size + 1, 1000, 3 * size + 7):
        x = rng.standard_normal(n)
        x[n // 3: n // 3 + 5] = x[n // 3] if n > 3 else x[n // 3: n // 3 + 5]  # a plateau
        ref = maximum_filter1d(x, size=size, mode="constant", cval=-np.inf)
        assert np.array_equal(sliding_max(x, size), ref)


RATES = [(360, 125), (360, 128), (128, 125), (250, 125), (125, 360), (256, 128),
         (44_100, 16_000), (48_000, 16_000), (1000, 360)]


def scipy_resample(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    up, down = rate_ratio(fs_in, fs_out)
    m = max(up, down)
    return sps.resample_poly(x, up, down, axis=-1,
                             window=sps.firwin(2 * 10 * m + 1, 1.0 / m, window=("kaiser", 5.0)))


@pytest.mark.parametrize("fs_in,fs_out", RATES)
def test_resample_equals_scipy_resample_poly(fs_in, fs_out):
    up, down = rate_ratio(fs_in, fs_out)
    m = max(up, down)
    ref_h = sps.firwin(20 * m + 1, 1.0 / m, window=("kaiser", 5.0))
    assert np.max(np.abs(antialias_taps(up, down) - ref_h)) < 1e-15
    rng = np.random.default_rng(up + down)
    for n in (1, 2, 7, 50, 599, 1000, 12_345, 100_003):
        x = 2.0 + rng.standard_normal(n)
        y, ref = resample(x, fs_in, fs_out), scipy_resample(x, fs_in, fs_out)
        assert y.shape == ref.shape == (-(-n * up // down),)
        assert rel_err(y, ref) < 1e-12
    x2 = rng.standard_normal((2, 3001))  # multimodal resamples stacked ECG + GSR
    y2 = resample(x2, fs_in, fs_out)
    assert y2.shape[0] == 2 and rel_err(y2, scipy_resample(x2, fs_in, fs_out)) < 1e-12


def test_resample_identity_and_reach():
    x = np.arange(10.0)
    y = resample(x, 360, 360)
    assert np.array_equal(y, x) and y is not x
    assert filter_half_len_in(360, 360) == 0
    # an impulse far from the edges only moves outputs within the stated reach
    fs_in, fs_out = 360, 125
    h = filter_half_len_in(fs_in, fs_out)
    x = np.zeros(2000)
    x[1000] = 1.0
    y = resample(x, fs_in, fs_out)
    nz = np.flatnonzero(y)
    up, down = rate_ratio(fs_in, fs_out)
    assert np.all(np.abs(nz * down / up - 1000) <= h)


def test_daemon_signal_path_does_not_import_scipy():
    code = ("import sys, vitaledge.device.stream.pipeline, vitaledge.device.stream.daemon\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd="/")
    assert out.stdout.strip() == "[]", f"the daemon's import path loads scipy: {out.stdout}"


def test_an_implausible_or_missing_rate_is_named_not_a_division_by_zero():
    """A data file claiming 1 GHz (or NaN) for an ECG: the resampler names the rates; it
    raised ZeroDivisionError (1e9 -> 128 Hz rounds to a ratio of 0) or numpy's words."""
    from vitaledge.device.dsp.resample import rate_ratio, resample

    with pytest.raises(ValueError, match=r"1e\+09 Hz -> 128 Hz: a ratio beyond 1:10000"):
        resample(np.zeros(1000), 1e9, 128.0)
    for bad in (float("nan"), float("inf"), 0.0, -5.0):
        with pytest.raises(ValueError, match="sample rates must be positive"):
            rate_ratio(bad, 128.0)
    assert rate_ratio(360.0, 125.0) == (25, 72)
