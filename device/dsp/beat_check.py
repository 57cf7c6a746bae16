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
is placed at the probability's peak. Beats are added only on a lead the network was trained
on (:attr:`.QrsNet.leads`, MLII for the shipped weights): on V1 of the DS1 patients it was
not trained on, dropping only made the fewest errors, clean and in noise, and adding made
the most (docs/experiments.md, "On a lead the network was not trained on").

The network and its streaming probability are :mod:`.qrs_net`'s.

Streaming, identical for any chunking and in order: a beat is given once the
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
from bisect import bisect_left
from collections import deque

import numpy as np

from vitaledge.device.dsp.qrs_net import NET_FS, NetProbability, QrsNet, shared_net
from vitaledge.device.dsp.rpeaks import detect_rpeaks
from vitaledge.device.dsp.signal_buffer import SignalBuffer

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
MIN_FS = 100.0             # below, the network's 40 Hz band edge is too near Nyquist: no check


class BeatCheck:
    """Streaming: feed every sample (:meth:`process`, with the beats the detector found in
    it, as sample indices counted from the first sample) and get back the beats, in order:
    the detector's the network does not veto, and the network's own confident peaks where
    the detector left a gap (``add_at`` 0: none added; none either when ``lead`` is not
    one the network was trained on); :meth:`flush` at the end of the stream. Below
    ``MIN_FS`` every beat is kept and none added.

    A beat is released once nothing can change it: the network's probability is known
    around it, the detector has had ``LATE_S`` to report the beats near it, and every peak
    that might be added before it is decided. A detector beat
    reported later than ``LATE_S`` (none was on the DS1 noise-stress copies; the latest
    came 3.1 s after its R peak) is still given when it is not behind a beat already given
    and is not an added beat's duplicate; otherwise it is counted in :attr:`late`."""

    def __init__(self, fs: float, net: QrsNet | None = None, threshold: float = THRESHOLD,
                 add_at: float = ADD_AT, lead: str = "MLII"):
        self.fs = float(fs)
        self.on = self.fs >= MIN_FS and threshold > 0
        self.net = (net or shared_net()) if self.on else None
        self.threshold = float(threshold)
        self.lead = lead
        # the network's peaks are added only on a lead it was trained on
        trained = self.net is not None and lead in self.net.leads
        self.add_at = float(add_at) if trained and add_at > 0 else 0.0
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

    @property
    def adds(self) -> bool:
        """Whether the network's peaks may be added (on, ``add_at`` above 0, and a lead
        the network was trained on)."""
        return self.add_at > 0

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
        # all at or after the frontier, so after every beat given before
        out += sorted([(b, False) for b in self._kept if b < horizon]
                      + [(b, True) for b in self._added if b < horizon])
        self._kept = [b for b in self._kept if b >= horizon]
        self._added = [b for b in self._added if b >= horizon]
        self._given.extend(out)
        while self._given and self._given[0][0] < self.frontier - 2 * self.add_max:
            self._given.popleft()
        return [b for b, _ in out]


def check_beats(x: np.ndarray, fs: float, beats: np.ndarray, net: QrsNet | None = None,
                threshold: float = THRESHOLD, add_at: float = ADD_AT,
                lead: str = "MLII") -> np.ndarray:
    """The beats of a whole signal the check gives: the detector's it keeps and the
    network's it adds (the batch form of :class:`BeatCheck`)."""
    bc = BeatCheck(fs, net, threshold, add_at, lead)
    return np.asarray(bc.process(x, list(beats)) + bc.flush([]), np.int64)


def detect_beats(x: np.ndarray, fs: float, lead: str = "MLII") -> np.ndarray:
    """The beats the daemon emits from a whole signal (of ``lead``) before gating: the
    R-peak detector's (:func:`~.rpeaks.detect_rpeaks`), then the check."""
    x = np.asarray(x, dtype=np.float64)
    return check_beats(x, fs, detect_rpeaks(x, fs), lead=lead)
