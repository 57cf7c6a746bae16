"""Face image -> model input: grayscale, resize to 48x48, histogram equalization (numpy).

The seed (001) standardises face crops by "resizing, gray-scale transformation, and
histogram equalization"; this is that chain, without OpenCV so it runs on the device:

* grayscale: ITU-R BT.601 luma, 0.299 R + 0.587 G + 0.114 B (what OpenCV's
  ``COLOR_RGB2GRAY`` uses); a 2-D image is already gray;
* resize: area averaging when shrinking (each output pixel the mean of the input area it
  covers, so no aliasing) and bilinear interpolation when enlarging;
* equalization: the 256-bin histogram's cumulative distribution mapped to [0, 255]
  (OpenCV's ``equalizeHist`` formula), then scaled to [0, 1] as float32.

Images may be uint8 (0-255) or float in [0, 1].
"""

from __future__ import annotations

import numpy as np

SIZE = 48


def to_gray(img: np.ndarray) -> np.ndarray:
    """Gray levels 0-255 (float64) of an RGB(A) or gray image."""
    a = np.asarray(img)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise ValueError(f"face image: expected HxW, HxWx1, HxWx3 or HxWx4, got shape {a.shape}")
    if a.size == 0:
        raise ValueError("face image: empty")
    x = a.astype(np.float64)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(x)):
            raise ValueError("face image: non-finite pixel values")
        x = x * 255.0 if x.max() <= 1.0 else x
    if x.ndim == 3:
        x = x[..., 0] if x.shape[2] == 1 else x[..., :3] @ np.array([0.299, 0.587, 0.114])
    return np.clip(x, 0.0, 255.0)


def _resize_axis(x: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    n_in = x.shape[axis]
    if n_in == n_out:
        return x
    if n_out < n_in:
        # area averaging: weight of input pixel i in output pixel j is their overlap
        edges = np.linspace(0.0, n_in, n_out + 1)
        lo, hi = edges[:-1, None], edges[1:, None]
        i = np.arange(n_in)[None, :]
        w = np.clip(np.minimum(hi, i + 1) - np.maximum(lo, i), 0.0, None)
        w /= w.sum(axis=1, keepdims=True)
    else:
        pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        i0 = np.floor(pos).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        frac = pos - i0
        w = np.zeros((n_out, n_in))
        w[np.arange(n_out), i0] += 1 - frac
        w[np.arange(n_out), i1] += frac
    return np.moveaxis(np.tensordot(w, np.moveaxis(x, axis, 0), axes=1), 0, axis)


def resize(gray: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Resize a 2-D image to size x size (area when shrinking, bilinear when enlarging)."""
    return _resize_axis(_resize_axis(np.asarray(gray, np.float64), size, 0), size, 1)


def equalize(gray: np.ndarray) -> np.ndarray:
    """Histogram-equalize gray levels 0-255; returns levels 0-255 (float64)."""
    g = np.clip(np.round(gray), 0, 255).astype(np.int64)
    hist = np.bincount(g.ravel(), minlength=256)
    cdf = np.cumsum(hist)
    cdf_min = cdf[np.flatnonzero(hist)[0]]
    denom = cdf[-1] - cdf_min
    if denom == 0:  # a flat image has nothing to equalize
        return g.astype(np.float64)
    lut = np.round((cdf - cdf_min) / denom * 255.0)
    return lut[g]


def face_input(img: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Model input of one face image: float32 (size, size, 1) in [0, 1]."""
    return (equalize(resize(to_gray(img), size)) / 255.0).astype(np.float32)[..., None]
