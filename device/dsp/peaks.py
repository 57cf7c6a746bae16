"""Peaks of a sampled signal by prominence: what the multimodal model's skin-conductance
responses are counted with. The rules are those of the usual definition (as
``scipy.signal.find_peaks`` applies them): a peak is a local maximum (the middle of a flat
top); of peaks closer than ``distance`` samples the higher is kept; a peak's prominence is
its height above the higher of the lowest points on either side before the signal rises
above it. Plain numpy: the daemon's import path stays scipy-free (``dsp/filters.py``)."""

from __future__ import annotations

import math

import numpy as np


def local_maxima(x: np.ndarray) -> np.ndarray:
    """Indices of the local maxima of ``x``: a sample above its left neighbour and above
    the first different sample to its right; a flat top gives its middle (rounded down)."""
    x = np.asarray(x, np.float64)
    out = []
    i, n = 1, len(x)
    while i < n - 1:
        if x[i - 1] < x[i]:
            j = i
            while j < n - 1 and x[j + 1] == x[i]:
                j += 1
            if j < n - 1 and x[j + 1] < x[i]:
                out.append((i + j) // 2)
            i = j
        i += 1
    return np.asarray(out, np.int64)


def keep_apart(x: np.ndarray, peaks: np.ndarray, distance: int) -> np.ndarray:
    """``peaks`` with each one closer than ``distance`` samples to a higher kept peak
    removed, the highest first (equal heights in numpy's default sort order, as SciPy)."""
    if distance <= 1 or len(peaks) < 2:
        return peaks
    keep = np.ones(len(peaks), bool)
    order = np.argsort(x[peaks])[::-1]
    for i in order:
        if not keep[i]:
            continue
        j = i - 1
        while j >= 0 and peaks[i] - peaks[j] < distance:
            keep[j] = False
            j -= 1
        j = i + 1
        while j < len(peaks) and peaks[j] - peaks[i] < distance:
            keep[j] = False
            j += 1
    return peaks[keep]


def prominences(x: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """Each peak's height above the higher of its two bases: the lowest sample on each side
    before one higher than the peak (or the signal's end)."""
    x = np.asarray(x, np.float64)
    out = np.empty(len(peaks))
    for k, p in enumerate(peaks):
        h = x[p]
        left = x[:p + 1][::-1]
        stop = np.flatnonzero(~(left <= h))  # a higher sample or a NaN ends the walk
        left_min = left[:stop[0] if len(stop) else len(left)].min()
        right = x[p:]
        stop = np.flatnonzero(~(right <= h))
        right_min = right[:stop[0] if len(stop) else len(right)].min()
        out[k] = h - max(left_min, right_min)
    return out


def prominent_peaks(x: np.ndarray, min_prominence: float, distance: float = 1
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(indices, prominences) of the peaks of ``x`` at least ``distance`` samples apart
    (:func:`keep_apart`; a fraction is rounded up) with a prominence of at least
    ``min_prominence``."""
    if not distance >= 1:
        raise ValueError(f"distance {distance!r}: expected a number of samples >= 1")
    x = np.asarray(x, np.float64)
    peaks = keep_apart(x, local_maxima(x), math.ceil(distance))
    prom = prominences(x, peaks)
    ok = prom >= min_prominence
    return peaks[ok], prom[ok]
