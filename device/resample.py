"""Polyphase resampling between sample rates, exact for rational rate ratios."""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy import signal as sps


def rate_ratio(fs_in: float, fs_out: float) -> tuple[int, int]:
    """(up, down) with fs_out / fs_in == up / down (denominator limited to 10,000)."""
    if fs_in <= 0 or fs_out <= 0:
        raise ValueError(f"sample rates must be positive, got {fs_in} -> {fs_out}")
    fr = Fraction(fs_out / fs_in).limit_denominator(10_000)
    return fr.numerator, fr.denominator


def filter_half_len_in(fs_in: float, fs_out: float) -> int:
    """Input samples on each side that influence one output sample of :func:`resample`."""
    up, down = rate_ratio(fs_in, fs_out)
    if up == down == 1:
        return 0
    # scipy's default anti-aliasing FIR has half length 10 * max(up, down) at the
    # upsampled rate; divided by ``up`` that is its reach in input samples.
    return int(np.ceil(10 * max(up, down) / up)) + 1


@lru_cache(maxsize=32)
def _fir(up: int, down: int) -> np.ndarray:
    """scipy's default anti-aliasing filter for (up, down), designed once and reused."""
    max_rate = max(up, down)
    return sps.firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))


def resample(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Resample ``x`` (last axis) from ``fs_in`` to ``fs_out`` with a polyphase FIR."""
    up, down = rate_ratio(fs_in, fs_out)
    if up == down == 1:
        return np.array(x, dtype=np.float64, copy=True)
    return sps.resample_poly(np.asarray(x, dtype=np.float64), up, down, axis=-1,
                             window=_fir(up, down))
