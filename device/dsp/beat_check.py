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
"A learned check of each beat"). Where the detector left a gap, the network's own
confident peaks are added: a peak of probability at least ``ADD_AT`` (0.5) between two kept
detector beats at most ``PAUSE_S`` (2 s, the usual threshold for reporting a sinus pause)
apart, neither within ``ADD_GAP`` (0.3) of the recent RR interval of it (0.2-0.6 s). A
pause is never filled: in noise the network, which sees 3 s of rhythm at once, can find
the beat it expects there (docs/experiments.md, "Adding the network's beats where the
detector left a gap"). Where the detector's beats are stays the detector's; an added beat
is placed at the probability's peak.

The network (:class:`QrsNet`): six dilated 1-D convolutions (kernel 7, dilations 1-32,
16 then 32 channels, ReLU; batch normalisation folded into the weights) and a 1x1
convolution with a sigmoid, over the ECG band-passed 0.5-40 Hz (the device's causal
Butterworth) and sampled at 120 Hz (linear interpolation); each 5-s window is scaled to
zero mean and unit variance. Receptive field 3.2 s. Trained by ``vitaledge train
qrs-check`` (:mod:`vitaledge.train.qrs_check`), which writes the weights this module loads.

Streaming, identical for any chunking: the windows lie on a fixed grid (``HOP`` samples at
120 Hz apart, ``WINDOW`` long); each window's middle (``MARGIN`` from either edge) is kept,
so every output sample comes from exactly one window, whatever the chunks; the last
window at the end of the stream ends at the last sample. A beat is given once the
probability after it is known and the detector has had ``LATE_S`` (4 s) to report the
beats near it: 4 s after the beat plus up to one chunk (a peak in a gap is decided when
the next kept beat is known, or ``PAUSE_S`` after the last).

In ventricular flutter or fibrillation the network finds no QRS, and the detections there
(which EC57 does not score) are dropped: on MIT-BIH 207, 259 of the 315 detections inside
its reference-marked episodes. A stream in VF then emits few beats; the daemon's no-beats
watch reports each stretch of 6 s without one.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from bisect import bisect_left
from collections import deque
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
ADD_AT = 0.5               # a network peak at least this probable may be added ...
ADD_GAP = 0.3              # ... where no kept beat lies within this share of the RR interval
ADD_MIN_S = 0.2            # (at least this, ...
ADD_MAX_S = 0.6            # ... at most this)
PEAK_S = 0.2               # a network peak is the largest probability within +/- this
RR_BEATS = 8               # the RR interval is the median of the last this many kept beats'
RR_DEFAULT_S = 0.8         # ... or this before three are kept
PAUSE_S = 2.0              # ... and only between kept beats at most this far apart
LATE_S = 4.0               # the detector's beats are waited for this long (latest seen 3.1 s)
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
    it, as sample indices counted from the first sample) and get back the beats, in order:
    the detector's the network does not veto, and the network's own confident peaks where
    the detector left a gap (``add_at`` 0: none added); :meth:`flush` at the end of the
    stream. Below ``MIN_FS`` every beat is kept and none added.

    A beat is released once nothing can change it: the network's probability is known
    around it, the detector has had ``LATE_S`` to report the beats near it, and every peak
    that might be added before it is decided. A detector beat
    reported later than ``LATE_S`` (none was on the DS1 noise-stress copies; the latest
    came 3.1 s after its R peak) is still given when it is not behind a beat already given
    and is not an added beat's duplicate; otherwise it is counted in :attr:`late`."""

    def __init__(self, fs: float, net: QrsNet | None = None, threshold: float = THRESHOLD,
                 add_at: float = ADD_AT):
        self.fs = float(fs)
        self.on = self.fs >= MIN_FS and threshold > 0
        self.net = (net or shared_net()) if self.on else None
        self.threshold = float(threshold)
        self.add_at = float(add_at)
        self.reach = int(round(REACH_S * NET_FS))
        self.peak = int(round(PEAK_S * NET_FS))
        self.late_n = int(round(LATE_S * self.fs))
        self.add_max = int(round(ADD_MAX_S * self.fs))
        self.add_min = int(round(ADD_MIN_S * self.fs))
        self.pause_n = int(round(PAUSE_S * self.fs))
        self._prob = NetProbability(self.fs, self.net) if self.on else None
        self._p = SignalBuffer()       # final probabilities, at NET_FS
        self._pending: list[int] = []  # detector beats (input indices) not yet checked
        self._kept: list[int] = []     # checked and kept, not yet given (in order)
        self._history: list[int] = []  # kept, from the RR_BEATS + 1 before the frontier on
        self._next_k = 0               # the next probability sample to look at for a peak
        self._peaks: list[int] = []    # the network's peaks (input indices), undecided
        self._added: list[int] = []    # peaks decided to be added, not yet given
        self._given: deque[tuple[int, bool]] = deque()  # recently given (index, added)
        self.n = 0                     # samples fed
        self.frontier = 0              # beats before it are given
        self.dropped = 0               # detector beats vetoed
        self.added = 0                 # network peaks added
        self.late = 0                  # detector beats too late to be given (or given: added)

    def decided(self, n_in: int) -> int:
        """Of ``n_in`` samples fed, how many have their beats decided (all when off)."""
        return n_in if not self.on else min(n_in, self.frontier)

    def process(self, x: np.ndarray, beats: list[int]) -> list[int]:
        if not self.on:
            return list(beats)
        self.n += len(x)
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
        p_end = self._p.end
        late = self._check(final)
        self._find_peaks(final)
        if final:
            known = math.inf
        else:  # the detector's beats and the probabilities are known before this
            known = min(math.floor((p_end - max(self.reach, self.peak) - 1) * self.fs / NET_FS),
                        self.n - self.late_n)
        horizon = min(known, self._decide_peaks(known))  # and every peak before it decided
        out = self._merge(horizon, late)
        if final:  # every beat given: the stream is decided to its end
            self.frontier = self.n
        elif horizon > self.frontier:
            self.frontier = int(horizon)
            j = bisect_left(self._history, self.frontier - self.pause_n)
            del self._history[:max(0, j - RR_BEATS - 1)]
        # the detector reports a beat up to seconds after it (search-back, relearning)
        self._p.trim(p_end - int(LOOK_BACK_S * NET_FS))
        return out

    def _check(self, final: bool) -> list[int]:
        """Veto the pending detector beats whose probability is known; the kept ones go to
        ``_kept`` (those behind the frontier are returned: reported late)."""
        late, keep = [], []
        for b in sorted(self._pending):
            c = b * NET_FS / self.fs
            lo, hi = math.floor(c) - self.reach, math.ceil(c) + self.reach + 1
            if not final and hi > self._p.end:
                keep.append(b)
                continue
            a = min(max(lo, self._p.start), self._p.end)
            seg = self._p.get(a, max(a, min(hi, self._p.end)))
            if len(seg) and seg.max() < self.threshold:  # no probability held: kept
                self.dropped += 1
                continue
            (late if b < self.frontier else self._kept).append(b)
            self._history.insert(bisect_left(self._history, b), b)
        self._pending = keep
        return late

    def _find_peaks(self, final: bool) -> None:
        """The network's peaks: probability at least ``add_at`` and the first maximum within
        ``PEAK_S`` either side (decided once the probability after it is known)."""
        if self.add_at <= 0:
            return
        last = self._p.end if final else self._p.end - self.peak
        if last <= self._next_k:
            return
        a = max(self._p.start, self._next_k - self.peak)
        seg = self._p.get(a, min(self._p.end, last + self.peak))
        for k in np.flatnonzero(seg[self._next_k - a: last - a] >= self.add_at) + self._next_k:
            i = k - a
            before, after = seg[max(0, i - self.peak): i], seg[i + 1: i + self.peak + 1]
            if (not len(before) or seg[i] > before.max()) and (
                    not len(after) or seg[i] >= after.max()):
                self._peaks.append(self._place(k, seg, i))
        self._next_k = last

    def _place(self, k: int, seg: np.ndarray, i: int) -> int:
        """The input index of the probability peak at ``k`` (a parabola through the three
        samples around it places it between the network's samples)."""
        d = 0.0
        if 0 < i < len(seg) - 1:
            den = seg[i - 1] - 2 * seg[i] + seg[i + 1]
            d = 0.5 * (seg[i - 1] - seg[i + 1]) / den if den < 0 else 0.0
        return int(round((k + d) * self.fs / NET_FS))

    def _decide_peaks(self, known: float) -> float:
        """Decide the peaks, in order, while the kept beats around them are known (before
        ``known``); the first peak left undecided (inf: none). A peak is added when it lies
        between two kept detector beats at most ``PAUSE_S`` apart, neither within
        ``ADD_GAP`` of the recent RR interval of it (at least ``ADD_MIN_S``, at most
        ``ADD_MAX_S``). So a pause is never filled: in noise the network, which sees 3 s of
        rhythm at once, can find the beat it expects there."""
        h = self._history
        while self._peaks and self._peaks[0] < known:
            t = self._peaks[0]
            j = bisect_left(h, t)
            prev = h[j - 1] if j > 0 else None
            nxt = h[j] if j < len(h) and h[j] < known else None
            if nxt is None and (prev if prev is not None else t) + self.pause_n >= known:
                return t  # the beat after it may still come
            self._peaks.pop(0)
            if nxt is None or prev is None or nxt - prev > self.pause_n:
                continue
            before = h[max(0, j - RR_BEATS - 1): j]
            rr = (float(np.median(np.diff(before))) if len(before) >= 3
                  else RR_DEFAULT_S * self.fs)
            gap = min(max(self.add_min, ADD_GAP * rr), self.add_max)
            if t - prev >= gap and nxt - t >= gap:
                self._added.append(t)
                self.added += 1
        return math.inf

    def _merge(self, horizon: float, late: list[int]) -> list[int]:
        """The kept and added beats before ``horizon``, in order, with late ones where they
        can still go."""
        last = self._given[-1][0] if self._given else -1
        out: list[tuple[int, bool]] = []
        for b in late:
            if any(added and abs(g - b) < self.add_min for g, added in self._given):
                self.late += 1  # the beat the network added: given already
                continue
            if b >= last:
                out.append((b, False))
                last = b
            else:
                self.late += 1
        ready = sorted([(b, False) for b in self._kept if b < horizon]
                       + [(b, True) for b in self._added if b < horizon])
        self._kept = [b for b in self._kept if b >= horizon]
        self._added = [b for b in self._added if b >= horizon]
        out += [(b, added) for b, added in ready if b >= last]
        self.late += sum(b < last for b, _ in ready)
        self._given.extend(out)
        while self._given and self._given[0][0] < self.frontier - 2 * self.add_max:
            self._given.popleft()
        return [b for b, _ in out]


_NET: QrsNet | None = None


def shared_net() -> QrsNet:
    """The shipped weights, loaded once per process."""
    global _NET
    if _NET is None:
        _NET = QrsNet.load()
    return _NET


def check_beats(x: np.ndarray, fs: float, beats: np.ndarray, net: QrsNet | None = None,
                threshold: float = THRESHOLD, add_at: float = ADD_AT) -> np.ndarray:
    """The beats of a whole signal the check gives: the detector's it keeps and the
    network's it adds (the batch form of :class:`BeatCheck`)."""
    bc = BeatCheck(fs, net, threshold, add_at)
    return np.asarray(bc.process(x, list(beats)) + bc.flush([]), np.int64)


def detect_beats(x: np.ndarray, fs: float) -> np.ndarray:
    """The beats the daemon emits from a whole signal before gating: the R-peak detector's
    (:func:`~.rpeaks.detect_rpeaks`), then the check."""
    x = np.asarray(x, dtype=np.float64)
    return check_beats(x, fs, detect_rpeaks(x, fs))
