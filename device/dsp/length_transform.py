"""A second, independent QRS detector: the curve-length transform with threshold crossing,
after Zong, Moody & Jiang, "A robust open-source algorithm to detect onset and duration of
QRS complexes", Computers in Cardiology 30:737-740, 2003 (PhysioNet's ``wqrs``).

It exists to be compared with :mod:`.rpeaks` (Pan-Tompkins): the bSQI of
:mod:`.signal_quality_index` counts how often the two agree, which only says something if
they fail differently. They share no stage: this one filters 1-16 Hz (wqrs low-passes at
16 Hz; the 1 Hz high-pass keeps strong baseline wander, which Pan-Tompkins' 5-15 Hz band
ignores, from making the two disagree where detection is fine), measures the curve length
sum |dy| over 130 ms (no squaring, no 5-15 Hz band), and decides by an upward threshold
crossing at a third of the running typical peak (no candidate peaks, no search-back, a T-wave
rule of its own). Li, Mark & Clifford (Physiol. Meas.
29:15-32, 2008) paired ``wqrs`` with Hamilton-Tompkins' ``eplimited`` in the same way.

Decisions, all at sample indices (so any chunking gives the same beats):

* learning: ``Ta`` = the largest curve length in the first ``learn_s``;
* a beat where the curve length crosses ``Ta / 3`` upwards after the ``refractory_s``
  following the previous beat; its R peak is the sample of largest |y - y[onset]| in the
  next ``r_search_s``; ``Ta`` moves a tenth of the way to the beat's curve-length peak
  (bounded by ``3 Ta``, so one spike cannot blind it);
* no beat for ``lapse_s``: ``Ta`` is learned again as the largest curve length of the last
  ``lapse_s`` (and again after every further ``lapse_s``): lower when beats were missed,
  higher when the curve length never fell below ``Ta / 3`` (a flutter, continuous noise);
* a crossing within ``twave_s`` of a beat whose curve-length peak stays below
  ``twave_frac`` of that beat's is a T wave (large after ventricular beats), not a QRS.
"""

from __future__ import annotations

import numpy as np

from vitaledge.device.dsp.filters import CausalFilter, FilterSpec
from vitaledge.device.dsp.signal_buffer import SignalBuffer


class LengthTransformDetector:
    """Feed chunks with :meth:`process` (R-peak indices decided so far, counted from the
    first sample fed); :meth:`flush` ends the stream."""

    def __init__(self, fs: float, learn_s: float = 2.0, window_s: float = 0.13,
                 refractory_s: float = 0.25, r_search_s: float = 0.15, lapse_s: float = 2.0,
                 twave_s: float = 0.6, twave_frac: float = 0.5):
        self.fs = float(fs)
        self._params = {"learn_s": learn_s, "window_s": window_s, "refractory_s": refractory_s,
                        "r_search_s": r_search_s, "lapse_s": lapse_s, "twave_s": twave_s,
                        "twave_frac": twave_frac}
        hi = 16.0 if fs > 40 else 0.4 * fs
        self._lp = CausalFilter(FilterSpec(1.0, hi, 2), self.fs)
        self.w = max(1, int(round(window_s * fs)))
        self.learn = max(1, int(round(learn_s * fs)))
        self.refractory = int(round(refractory_s * fs))
        self.r_search = max(1, int(round(r_search_s * fs)))
        self.lapse = max(1, int(round(lapse_s * fs)))
        self.look = max(self.w, self.r_search)
        self.twave = int(round(twave_s * fs))
        self.twave_frac = float(twave_frac)
        self._y = SignalBuffer()
        self._lt = SignalBuffer()
        self._prev: float | None = None
        self._hist = np.zeros(self.w - 1)  # last w-1 |dy| for the running sum
        self.ta = 0.0
        self._initialised = False
        self._pos = 0       # first index not yet examined
        self._timer = 0     # the last beat, or the last halving of Ta
        self._last_pk = 0.0  # curve-length peak of the last beat
        self.n_samples = 0

    @property
    def learned(self) -> bool:
        """``Ta`` is learned (after the first ``learn_s``, or carried over a hole)."""
        return self._initialised

    def resumed(self) -> LengthTransformDetector:
        """A detector for the signal after a hole: fresh filters, this one's level."""
        new = LengthTransformDetector(self.fs, **self._params)
        if self._initialised:
            new.ta, new._initialised = self.ta, True
        return new

    def process(self, chunk: np.ndarray) -> list[int]:
        x = np.asarray(chunk, dtype=np.float64)
        if x.size == 0:
            return []
        self.n_samples += len(x)
        y = self._lp.process(x)
        dy = np.abs(np.diff(y, prepend=y[0] if self._prev is None else self._prev))
        self._prev = float(y[-1])
        cs = np.concatenate([self._hist, dy])
        c = np.concatenate([[0.0], np.cumsum(cs)])
        lt = c[self.w:] - c[:-self.w] if len(cs) >= self.w else np.zeros(0)
        # the first call has w-1 zeros of history in front: same as zero history
        self._hist = cs[len(cs) - (self.w - 1):] if self.w > 1 else np.zeros(0)
        self._y.append(y)
        self._lt.append(lt)
        return self._scan(self._lt.end - self.look)

    def flush(self) -> list[int]:
        return self._scan(self._lt.end)

    def _scan(self, end: int) -> list[int]:
        out: list[int] = []
        if not self._initialised:
            if end < self.learn and end < self._lt.end:
                return out
            if end <= 0:
                return out
            self.ta = float(self._lt.get(0, min(self.learn, self._lt.end)).max())
            self._initialised = True
        while self._pos < end:
            lim = min(end, self._timer + self.lapse)  # > _pos: see _beat and the halving
            a = max(self._pos - 1, self._lt.start)
            seg = self._lt.get(a, lim)
            above = seg > self.ta / 3.0
            # an upward crossing: a complex still above threshold after the refractory
            # period (a wide ventricular beat) is not counted again
            up = above[1:] & ~above[:-1] if a < self._pos else above
            hits = np.flatnonzero(up) if self.ta > 0 else np.zeros(0, int)
            if hits.size:
                i = self._pos + int(hits[0])
                if self._twave(i):
                    self._pos = i + 1
                    continue
                out.append(self._beat(i))
                continue
            self._pos = lim
            if lim == self._timer + self.lapse:
                self.ta = float(self._lt.get(max(self._lt.start, lim - self.lapse), lim).max())
                self._timer = lim
            elif lim == end:
                break
        keep = min(self._pos, self._timer) - self.r_search - 1
        self._lt.trim(keep)
        self._y.trim(keep)
        return out

    def _peak(self, i: int) -> float:
        return float(self._lt.get(i, min(i + self.look, self._lt.end)).max())

    def _twave(self, i: int) -> bool:
        """A crossing soon after a beat whose curve length stays well below that beat's:
        the T wave (large after a ventricular beat), not a QRS."""
        return (self._last_pk > 0 and i - self._timer < self.twave
                and self._peak(i) < self.twave_frac * self._last_pk)

    def _beat(self, i: int) -> int:
        pk = self._peak(i)
        self._last_pk = pk
        self.ta += (min(pk, 3.0 * self.ta) - self.ta) / 10.0
        y = self._y.get(i, min(i + self.r_search, self._y.end))
        r = i + int(np.argmax(np.abs(y - y[0])))
        self._pos = i + self.refractory
        self._timer = i
        return r


def detect_length_transform(x: np.ndarray, fs: float, **kw) -> np.ndarray:
    """R-peak indices of a whole signal (the batch form of :class:`LengthTransformDetector`)."""
    det = LengthTransformDetector(fs, **kw)
    return np.asarray(det.process(x) + det.flush(), dtype=np.int64)
