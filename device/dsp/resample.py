"""Polyphase resampling between sample rates, exact for rational rate ratios.

The result is that of ``scipy.signal.resample_poly(x, up, down)`` with its default
Kaiser-windowed (beta 5) low-pass FIR, computed in plain numpy so the daemon need not
load scipy: the signal is conceptually zero-stuffed by ``up``, filtered by ``up * h`` with
the filter's delay removed, and kept every ``down``-th sample; only the taps that meet
non-zero (original) samples are evaluated, about len(h) / up per output sample.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np

_BLOCK_ELEMS = 1 << 16  # gather-table size per block of outputs (bounds temporaries)


def rate_ratio(fs_in: float, fs_out: float) -> tuple[int, int]:
    """(up, down) with fs_out / fs_in == up / down (denominator limited to 10,000)."""
    if not (np.isfinite(fs_in) and np.isfinite(fs_out) and fs_in > 0 and fs_out > 0):
        raise ValueError(f"sample rates must be positive, got {fs_in} -> {fs_out}")
    up, down = _rate_ratio(float(fs_in), float(fs_out))
    if up == 0:  # beyond the ratios limit_denominator can express: an implausible rate
        raise ValueError(f"sample rate {fs_in:g} Hz -> {fs_out:g} Hz: a ratio beyond "
                         "1:10000, not a rate this can resample (is the rate right?)")
    return up, down


@lru_cache(maxsize=64)
def _rate_ratio(fs_in: float, fs_out: float) -> tuple[int, int]:
    # limit_denominator costs ~0.1 ms; the pipeline asks once per beat
    fr = Fraction(fs_out / fs_in).limit_denominator(10_000)
    return fr.numerator, fr.denominator


def filter_half_len_in(fs_in: float, fs_out: float) -> int:
    """Input samples on each side that influence one output sample of :func:`resample`."""
    up, down = rate_ratio(fs_in, fs_out)
    if up == down == 1:
        return 0
    # the anti-aliasing FIR has half length 10 * max(up, down) at the upsampled rate;
    # divided by ``up`` that is its reach in input samples
    return int(np.ceil(10 * max(up, down) / up)) + 1


@lru_cache(maxsize=32)
def antialias_taps(up: int, down: int) -> np.ndarray:
    """Anti-aliasing low-pass for (up, down): 20 max(up, down) + 1 taps of a sinc cut at
    1 / max(up, down) of Nyquist, Kaiser window (beta 5), unit DC gain. This is
    ``scipy.signal.firwin(n, 1 / max_rate, window=("kaiser", 5.0))``, resample_poly's
    default."""
    max_rate = max(up, down)
    n = 20 * max_rate + 1
    cutoff = 1.0 / max_rate
    m = np.arange(n) - (n - 1) / 2
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(n, 5.0)
    h /= h.sum()
    h.setflags(write=False)
    return h


@lru_cache(maxsize=8)
def _table(up: int, down: int) -> tuple[np.ndarray, np.ndarray, int, int, int]:
    """Gather table for a block of B = P * up outputs starting at output 0.

    Output i is sum_k w[i, k] * x[idx[i, k] - (T - 1)] (indices into x left-padded with
    T - 1 zeros); the block starting at output q * B uses idx + q * P * down, since the
    tap pattern repeats every ``up`` outputs. Returns (idx, w, T, B, half)."""
    h = antialias_taps(up, down) * up
    half = (len(h) - 1) // 2
    T = -(-len(h) // up)
    P = max(1, _BLOCK_ELEMS // (up * T))
    B = P * up
    t = np.arange(B) * down + half  # output i sits at index t of the upsampled stream
    base, phase = t // up, t % up
    k = np.arange(T)
    taps = phase[:, None] + k * up
    w = np.where(taps < len(h), h[np.minimum(taps, len(h) - 1)], 0.0)
    idx = base[:, None] - k + (T - 1)
    for a in (idx, w):
        a.setflags(write=False)
    return idx, w, T, B, half


def resample(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Resample ``x`` (last axis) from ``fs_in`` to ``fs_out`` with a polyphase FIR.

    Output length ceil(n * up / down); output sample i is aligned with input time
    i * down / up (the filter's delay is compensated), as in scipy's resample_poly."""
    up, down = rate_ratio(fs_in, fs_out)
    x = np.asarray(x, dtype=np.float64)
    if up == down == 1:
        return x.copy()
    n = x.shape[-1]
    n_out = -(-n * up // down)
    idx, w, T, B, half = _table(up, down)
    if n_out == 0:
        return np.zeros(x.shape[:-1] + (0,))
    last = ((n_out - 1) * down + half) // up  # largest input index any output reaches
    xpad = np.zeros(x.shape[:-1] + (T - 1 + max(n, last + 1),))
    xpad[..., T - 1:T - 1 + n] = x
    y = np.empty(x.shape[:-1] + (n_out,))
    shift = B // up * down
    for q, a in enumerate(range(0, n_out, B)):
        rows = min(B, n_out - a)
        g = xpad[..., idx[:rows] + q * shift]
        y[..., a:a + rows] = np.einsum("...rk,rk->...r", g, w[:rows])
    return y
