"""Power spectral density by Welch's method (averaged periodograms of overlapping,
detrended, Hann-windowed segments; P. D. Welch, IEEE Trans. Audio Electroacoust. 15, 1967),
for the LF/HF ratio of heart-rate variability. Plain numpy: the daemon's import path stays
scipy-free (``dsp/filters.py``)."""

from __future__ import annotations

import numpy as np


def welch(x: np.ndarray, fs: float, nperseg: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies in Hz, one-sided density in units²/Hz) of ``x``: segments of
    ``nperseg`` samples (at most the signal's length) overlapping by half, each with its
    least-squares line removed and a periodic Hann window applied, their periodograms
    averaged."""
    x = np.asarray(x, np.float64)
    n = min(int(nperseg), len(x))
    if n < 1:
        raise ValueError("welch: an empty signal has no spectrum")
    step = n - n // 2
    starts = range(0, len(x) - n + 1, step)
    segs = np.stack([x[s:s + n] for s in starts])
    t = np.arange(n, dtype=np.float64)
    if n > 1:  # each segment's least-squares line
        tc = t - t.mean()
        slope = (segs - segs.mean(axis=1, keepdims=True)) @ tc / (tc @ tc)
        segs = segs - segs.mean(axis=1, keepdims=True) - slope[:, None] * tc
    else:
        segs = segs - segs.mean(axis=1, keepdims=True)
    w = 0.5 - 0.5 * np.cos(2 * np.pi * t / n) if n > 1 else np.ones(1)  # periodic Hann
    spec = np.abs(np.fft.rfft(segs * w, axis=1)) ** 2 / (fs * (w @ w))
    spec[:, 1:(n + 1) // 2] *= 2  # one-sided: every bin but 0 (and n/2 when n is even)
    return np.fft.rfftfreq(n, 1.0 / fs), spec.mean(axis=0)
