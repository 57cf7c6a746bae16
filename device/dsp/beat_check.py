"""A learned check of the R-peak detector's beats: a small convolutional network reads the
ECG and gives, for every moment, the probability that an R peak is there; a detected beat
around which that probability stays under ``threshold`` is dropped as noise.

Why. The detector's rules (:mod:`.rpeaks`) decide one candidate at a time by one measure at
a time (height, interval, shape). In muscle noise every such measure traded about one true
beat for each false one (docs/experiments.md, "R-peak detection in muscle noise"). The
network sees 5 s of signal at once and was trained on DS1 patients with the real ``ma`` and
``bw`` noise records added; on the DS1 patients it was not trained on, vetoing the
detector's beats where it is confident that no QRS is near removed about five false beats
for each true one at 12 dB and fifteen or more at 6 dB and below (docs/experiments.md,
"A learned check of each beat"). It only removes beats; where the beats are, and which are
found, stays the detector's.

The network (:class:`QrsNet`): six dilated 1-D convolutions (kernel 7, dilations 1-32,
16 then 32 channels, ReLU; batch normalisation folded into the weights) and a 1x1
convolution with a sigmoid, over the ECG band-passed 0.5-40 Hz (the device's causal
Butterworth) and sampled at 120 Hz (linear interpolation); each 5-s window is scaled to
zero mean and unit variance. Receptive field 3.2 s. Trained by ``vitaledge train
qrs-check`` (:mod:`vitaledge.train.qrs_check`), which writes the weights this module loads.

Streaming, identical for any chunking: the windows lie on a fixed grid (``HOP`` samples at
120 Hz apart, ``WINDOW`` long); each window's middle (``MARGIN`` from either edge) is kept,
so every output sample comes from exactly one window, whatever the chunks; the last
window at the end of the stream ends at the last sample. A beat is decided once the
probability ``REACH_S`` after it is known: 2.6 s after the beat on average, at most 3.5 s
(up to 5 s in the first 1.7 s of a stream, before the first window is complete).

In ventricular flutter or fibrillation the network finds no QRS, and the detections there
(which EC57 does not score) are dropped: on MIT-BIH 207, 259 of the 315 detections inside
its reference-marked episodes. A stream in VF then emits few beats; the daemon's no-beats
watch reports each stretch of 6 s without one.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitaledge.device.dsp.filters import CausalFilter, FilterSpec
from vitaledge.device.dsp.rpeaks import detect_rpeaks
from vitaledge.device.dsp.signal_buffer import SignalBuffer

NET_FS = 120.0             # the network's sample rate
WINDOW = 600               # samples per window at NET_FS (5 s)
HOP = 200                  # window grid step
MARGIN = 200               # each window's edges left to its neighbours
REACH_S = 0.1              # the probability's maximum is taken within +/- this of a beat
THRESHOLD = 0.01           # a beat whose maximum is below is dropped (docs/experiments.md)
LOOK_BACK_S = 20.0         # probabilities kept for beats the detector reports late
MIN_FS = 100.0             # below, the 40 Hz band edge is too near Nyquist: no check
BAND = FilterSpec(0.5, 40.0, 2)
BN_EPS = 1e-3              # Keras BatchNormalization's default epsilon
WEIGHTS = Path(__file__).with_name("qrs_net.npz")


class BeatCheckError(ValueError):
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

    def __init__(self, layers: list[ConvLayer]):
        if not layers or layers[0].w.shape[1] != 1 or layers[-1].w.shape[2] != 1:
            raise BeatCheckError("the network must read one channel and give one")
        for a, b in zip(layers, layers[1:], strict=False):
            if a.w.shape[2] != b.w.shape[1]:
                raise BeatCheckError(f"layer widths do not chain: {a.w.shape} -> {b.w.shape}")
        self.layers = layers

    @classmethod
    def load(cls, path: str | Path = WEIGHTS) -> QrsNet:
        """The weights :func:`save` wrote; a one-line :class:`BeatCheckError` otherwise."""
        try:
            with np.load(path, allow_pickle=False) as z:
                n = int(z["n_layers"])
                layers = [ConvLayer(z[f"w{i}"].astype(np.float64), z[f"b{i}"].astype(np.float64),
                                    int(z[f"d{i}"]), i < n - 1) for i in range(n)]
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile,
                zlib.error) as exc:  # a missing, truncated or damaged file
            raise BeatCheckError(f"{path}: not the beat check's weights ({exc})") from exc
        for ly in layers:
            if ly.w.ndim != 3 or ly.b.shape != (ly.w.shape[2],) or ly.dilation < 1:
                raise BeatCheckError(f"{path}: a layer of shape {ly.w.shape} / {ly.b.shape}")
            if not (np.isfinite(ly.w).all() and np.isfinite(ly.b).all()):
                raise BeatCheckError(f"{path}: non-finite weights")
        return cls(layers)

    def save(self, path: str | Path, meta: str = "") -> None:
        arrays = {"n_layers": np.array(len(self.layers)), "meta": np.array(meta)}
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


class BeatCheck:
    """Streaming: feed every sample (:meth:`process`, with the beats the detector found in
    it, as sample indices counted from the first sample) and get back the beats kept, in
    order; :meth:`flush` at the end of the stream. Below ``MIN_FS`` every beat is kept."""

    def __init__(self, fs: float, net: QrsNet | None = None, threshold: float = THRESHOLD):
        self.fs = float(fs)
        self.on = self.fs >= MIN_FS and threshold > 0
        self.net = (net or shared_net()) if self.on else None
        self.threshold = float(threshold)
        self.reach = int(round(REACH_S * NET_FS))
        self._prob = NetProbability(self.fs, self.net) if self.on else None
        self._p = SignalBuffer()       # final probabilities, at NET_FS
        self._pending: list[int] = []  # beats (input indices) waiting for their probability
        self.dropped = 0

    def decided(self, n_in: int) -> int:
        """Of ``n_in`` samples fed, how many have their beats decided (all when off)."""
        if not self.on:
            return n_in
        return min(n_in, max(0, math.floor((self._p.end - self.reach - 1) * self.fs / NET_FS)))

    def process(self, x: np.ndarray, beats: list[int]) -> list[int]:
        if not self.on:
            return list(beats)
        self._pending += [int(b) for b in beats]
        self._p.append(self._prob.process(x))
        return self._release(final=False)

    def flush(self, beats: list[int]) -> list[int]:
        if not self.on:
            return list(beats)
        self._pending += [int(b) for b in beats]
        self._p.append(self._prob.flush())
        return self._release(final=True)

    def _release(self, final: bool) -> list[int]:
        out, keep = [], []
        for b in self._pending:
            c = b * NET_FS / self.fs
            lo, hi = math.floor(c) - self.reach, math.ceil(c) + self.reach + 1
            if not final and hi > self._p.end:
                keep.append(b)
                continue
            a = min(max(lo, self._p.start), self._p.end)
            seg = self._p.get(a, max(a, min(hi, self._p.end)))
            if not len(seg) or seg.max() >= self.threshold:  # no probability held: kept
                out.append(b)
            else:
                self.dropped += 1
        self._pending = keep
        # the detector reports a beat up to seconds after it (search-back, relearning)
        self._p.trim(self._p.end - int(LOOK_BACK_S * NET_FS))
        return out


_NET: QrsNet | None = None


def shared_net() -> QrsNet:
    """The shipped weights, loaded once per process."""
    global _NET
    if _NET is None:
        _NET = QrsNet.load()
    return _NET


def check_beats(x: np.ndarray, fs: float, beats: np.ndarray, net: QrsNet | None = None,
                threshold: float = THRESHOLD) -> np.ndarray:
    """The beats of a whole signal the check keeps (the batch form of :class:`BeatCheck`)."""
    bc = BeatCheck(fs, net, threshold)
    return np.asarray(bc.process(x, list(beats)) + bc.flush([]), np.int64)


def detect_beats(x: np.ndarray, fs: float) -> np.ndarray:
    """The beats the daemon emits from a whole signal before gating: the R-peak detector's
    (:func:`~.rpeaks.detect_rpeaks`), then the check."""
    x = np.asarray(x, dtype=np.float64)
    return check_beats(x, fs, detect_rpeaks(x, fs))
