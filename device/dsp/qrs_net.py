"""The network the beat check (:mod:`.beat_check`) reads: for every moment of an ECG, the
probability that an R peak is there.

The network (:class:`QrsNet`): six dilated 1-D convolutions (kernel 7, dilations 1-32,
16 then 32 channels, ReLU; batch normalisation folded into the weights) and a 1x1
convolution with a sigmoid, over the ECG band-passed 0.5-40 Hz (the device's causal
Butterworth) and sampled at 120 Hz (linear interpolation); each 5-s window is scaled to
zero mean and unit variance. Receptive field 3.2 s. It runs in plain numpy: the device
never imports TensorFlow. Trained by ``vitaledge train qrs-check``
(:mod:`vitaledge.train.qrs_check`, which builds its inputs with this module's
:class:`NetInput` and :func:`standardize`), which writes the weights :data:`WEIGHTS`.

Streaming, identical for any chunking (:class:`NetProbability`): the windows lie on a
fixed grid (``HOP`` samples at 120 Hz apart, ``WINDOW`` long); each window's middle
(``MARGIN`` from either edge) is kept, so every output sample comes from exactly one
window, whatever the chunks; the last window at the end of the stream ends at the last
sample.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitaledge.device.dsp.filters import CausalFilter, FilterSpec
from vitaledge.device.dsp.signal_buffer import SignalBuffer

NET_FS = 120.0             # the network's sample rate
WINDOW = 600               # samples per window at NET_FS (5 s)
HOP = 200                  # window grid step
MARGIN = 200               # each window's edges left to its neighbours
BAND = FilterSpec(0.5, 40.0, 2)
BN_EPS = 1e-3              # Keras BatchNormalization's default epsilon
WEIGHTS = Path(__file__).with_name("qrs_net.npz")


class QrsNetError(ValueError):
    """The network's weights cannot be used."""


@dataclass(frozen=True)
class ConvLayer:
    w: np.ndarray        # (kernel, in, out)
    b: np.ndarray        # (out,)
    dilation: int
    relu: bool

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """'same'-padded dilated convolution of ``x`` (n, in), as Keras' Conv1D."""
        k = self.w.shape[0]
        pad = self.dilation * (k - 1)
        left = pad // 2
        xp = np.pad(x, ((left, pad - left), (0, 0)))
        n = len(x)
        y = np.broadcast_to(self.b, (n, len(self.b))).copy()
        for j in range(k):
            s = j * self.dilation
            y += xp[s: s + n] @ self.w[j]
        return np.maximum(y, 0.0) if self.relu else y


class QrsNet:
    """The network as plain numpy (the device never imports TensorFlow)."""

    def __init__(self, layers: list[ConvLayer], leads: tuple[str, ...] = ("MLII",)):
        if not layers or layers[0].w.shape[1] != 1 or layers[-1].w.shape[2] != 1:
            raise QrsNetError("the network must read one channel and give one")
        for a, b in zip(layers, layers[1:], strict=False):
            if a.w.shape[2] != b.w.shape[1]:
                raise QrsNetError(f"layer widths do not chain: {a.w.shape} -> {b.w.shape}")
        if not leads:
            raise QrsNetError("the network must name the leads it was trained on")
        self.layers = layers
        #: the ECG leads it was trained on (the check adds beats only on these)
        self.leads = tuple(str(lead) for lead in leads)

    @classmethod
    def load(cls, path: str | Path = WEIGHTS) -> QrsNet:
        """The weights :func:`save` wrote; a one-line :class:`QrsNetError` otherwise."""
        try:
            with np.load(path, allow_pickle=False) as z:
                n = int(z["n_layers"])
                layers = [ConvLayer(z[f"w{i}"].astype(np.float64), z[f"b{i}"].astype(np.float64),
                                    int(z[f"d{i}"]), i < n - 1) for i in range(n)]
                # weights written before they named their leads were trained on MLII
                names = z["leads"] if "leads" in z.files else np.array(["MLII"])
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile,
                zlib.error) as exc:  # a missing, truncated or damaged file
            raise QrsNetError(f"{path}: not the beat check's weights ({exc})") from exc
        if names.ndim != 1 or names.dtype.kind != "U" or not len(names):
            raise QrsNetError(f"{path}: 'leads' must list the lead names the network was "
                              f"trained on (got {names.dtype} of shape {names.shape})")
        for ly in layers:
            if ly.w.ndim != 3 or ly.b.shape != (ly.w.shape[2],) or ly.dilation < 1:
                raise QrsNetError(f"{path}: a layer of shape {ly.w.shape} / {ly.b.shape}")
            if not (np.isfinite(ly.w).all() and np.isfinite(ly.b).all()):
                raise QrsNetError(f"{path}: non-finite weights")
        return cls(layers, tuple(str(v) for v in names))

    def save(self, path: str | Path, meta: str = "") -> None:
        arrays = {"n_layers": np.array(len(self.layers)), "meta": np.array(meta),
                  "leads": np.array(self.leads)}
        for i, ly in enumerate(self.layers):
            arrays |= {f"w{i}": ly.w.astype(np.float32), f"b{i}": ly.b.astype(np.float32),
                       f"d{i}": np.array(ly.dilation)}
        np.savez_compressed(path, **arrays)

    def __call__(self, window: np.ndarray) -> np.ndarray:
        """R-peak probability of each sample of one window (n,) at NET_FS."""
        x = standardize(np.asarray(window, np.float64))[:, None]
        for ly in self.layers:
            x = ly(x)
        return 1.0 / (1.0 + np.exp(-x[:, 0]))


def standardize(windows: np.ndarray) -> np.ndarray:
    """Each window (the last axis) at zero mean and unit variance, as the network reads it
    on the device and in training."""
    centred = windows - windows.mean(axis=-1, keepdims=True)
    return centred / (windows.std(axis=-1, keepdims=True) + 1e-6)


def fold_batchnorm(w: np.ndarray, b: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                   mean: np.ndarray, var: np.ndarray, eps: float = BN_EPS
                   ) -> tuple[np.ndarray, np.ndarray]:
    """A convolution followed by batch normalisation, as one convolution."""
    scale = gamma / np.sqrt(var + eps)
    return w * scale, (b - mean) * scale + beta


class NetInput:
    """The network's input from a stream at ``fs``: band-passed, then sampled at NET_FS by
    linear interpolation (output sample k at input position k fs / NET_FS)."""

    def __init__(self, fs: float):
        self.fs = float(fs)
        self._filter = CausalFilter(BAND, self.fs)
        self._buf = SignalBuffer()
        self.k = 0  # next output sample

    def process(self, x: np.ndarray) -> np.ndarray:
        self._buf.append(self._filter.process(x))
        end = self._buf.end
        # output k needs input floor(pos) + 1 < end
        k_end = math.ceil((end - 1) * NET_FS / self.fs)
        while k_end > self.k and math.floor(self.position(k_end - 1)) + 1 >= end:
            k_end -= 1
        k_end = max(k_end, self.k)
        ks = np.arange(self.k, k_end)
        pos = self.position(ks)
        i = np.floor(pos).astype(np.int64)
        f = pos - i
        if len(ks):
            a = self._buf.get(int(i[0]), int(i[-1]) + 2)
            j = i - i[0]
            out = (1 - f) * a[j] + f * a[j + 1]
            self._buf.trim(int(i[-1]))
        else:
            out = np.zeros(0)
        self.k = k_end
        return out

    def position(self, k):
        """Input position of output sample(s) ``k``."""
        return k * self.fs / NET_FS


class NetProbability:
    """The network's R-peak probability of a stream at ``fs``, on its window grid:
    :meth:`process` returns the probabilities (at NET_FS) that became final, :meth:`flush`
    the rest; concatenated, the same for any chunking."""

    def __init__(self, fs: float, net: QrsNet):
        self.net = net
        self._input = NetInput(fs)
        self._z = SignalBuffer()  # the network's input, at NET_FS
        self._next = 0            # the next window's index on the grid
        self.end = 0              # probabilities given so far

    def process(self, x: np.ndarray) -> np.ndarray:
        self._z.append(self._input.process(np.asarray(x, np.float64)))
        out = []
        while self._z.end >= self._next * HOP + WINDOW:
            a = self._next * HOP
            p = self.net(self._z.get(a, a + WINDOW))
            out.append(p[(0 if self._next == 0 else MARGIN): WINDOW - MARGIN])
            self._next += 1
            self._z.trim(a)  # the last window's start: flush's window begins at or after it
        return self._given(out)

    def flush(self) -> np.ndarray:
        n = self._z.end
        if n <= self.end:
            return np.zeros(0)
        a = max(0, n - WINDOW)
        return self._given([self.net(self._z.get(a, n))[self.end - a:]])

    def _given(self, parts: list[np.ndarray]) -> np.ndarray:
        p = np.concatenate(parts) if parts else np.zeros(0)
        self.end += len(p)
        return p


def net_probabilities(x: np.ndarray, fs: float, net: QrsNet | None = None) -> np.ndarray:
    """The probability at NET_FS of a whole signal (the batch form of NetProbability)."""
    np_ = NetProbability(fs, net or shared_net())
    return np.concatenate([np_.process(x), np_.flush()])


_NET: QrsNet | None = None


def shared_net() -> QrsNet:
    """The shipped weights, loaded once per process."""
    global _NET
    if _NET is None:
        _NET = QrsNet.load()
    return _NET
