"""ECG signal-quality index (SQI) on the stream: is this stretch readable, and how far can
its beats be trusted? Each ``block_s`` block of the stream (on absolute sample indices) is
judged ``good``, ``doubtful`` or ``unreadable`` from features of the ``window_s`` of signal
ending at the block's end, so a judgement only looks back (causal) and arrives
``block_s + delay_s`` at most after a sample.

Which indices, and why (the literature's choice for single-lead ambulatory ECG):

* **bSQI** (Li, Mark & Clifford, "Robust heart rate estimation from multiple asynchronous
  noisy sources using signal quality indices and a Kalman filter", Physiol. Meas.
  29:15-32, 2008): the agreement of two independent QRS detectors within 150 ms over the
  window, matched / (n1 + n2 - matched). Two detectors that fail differently agree on
  clean ECG and disagree on noise that looks like QRS complexes to either; of the SQIs Li
  et al. and later Behar et al. (Physiol. Meas. 34:1251, 2013) compared it is the one that
  tracks detection errors most directly. Here: :mod:`.rpeaks` (Pan-Tompkins, the detector
  whose beats are gated) against :mod:`.length_transform` (after Zong et al.'s wqrs, the
  pairing Li et al. used).
* **kSQI**: kurtosis of the 1-40 Hz signal; clean ECG is spiky (> 5), muscle noise and
  other broadband noise are near Gaussian (3). It confirms a low bSQI is noise, not an
  arrhythmia on which the two detectors merely disagree.
* **sSQI** (beat-shape consistency, a third criterion): the fraction of the primary
  detector's beats in the window whose QRS (+/- ``shape_s`` of the 1-40 Hz signal around the
  R peak) correlates at least ``shape_corr`` (0.9) with another beat of the same window.
  Real beats repeat their shape (each of several morphologies, as in bigeminy, has its
  twins), beats invented in noise match nothing: the template-matching idea of
  Hamilton & Tompkins' and Clifford's beat-to-beat SQIs (Clifford et al., "Signal quality
  indices and data fusion for determining clinical acceptability of ECGs", Physiol. Meas.
  33:1419, 2012, ``tSQI``/average template correlation). It keeps readable what the two
  detectors disagree on although the primary's beats are plainly consistent (MIT-BIH
  108: large P/T waves and noise fool the second detector, bSQI about 0.17, kSQI 3.75,
  yet sSQI about 0.9: 12 % of the record was judged unreadable), and it flags the blocks
  where the primary detector invents beats although bSQI is still high. Its local form,
  ``twin``: the lowest best correlation among the judged block's own beats.
* **pSQI**: power in 5-15 Hz over 5-40 Hz, and **basSQI**: 1 - power below 1 Hz over
  power below 40 Hz (baseline wander). Both are reported with each block but do not
  decide: on the noise-stress records basSQI < 0.5 flagged 83 % of the ``bw`` 12 dB
  stretches of 118, where detection was perfect, and 1 % of clean 118; adding it bought
  0.1 point of Se/+P outside the flagged time for 19 points more flagged time. pSQI under
  0.3-0.5 as a reason for ``doubtful`` (on the 22 DS1 records' ``ma`` 6 dB copies) bought
  0.03-0.14 point of +P outside the flagged time for 7-30 points more of it: the blocks
  with a false beat have only a little lower pSQI than those without (docs/experiments.md).

* **QRS amplitude** (a floor, not an index of its own): the median peak-to-peak of the
  1-40 Hz signal within +/- ``shape_s`` of the primary detector's beats in the window. The
  stream is in mV (WFDB physical units, the framed protocol's ``gain``); a QRS is tenths of
  a millivolt or more. On the 28 MIT-BIH records here the smallest 8-s window's median is
  0.38 mV on MLII (207) and 0.038 mV on V1 (101, whose V1 QRS is nearly isoelectric,
  median 0.098 mV). Below ``min_qrs_mv`` (0.02 mV) the "beats" are the detectors' adaptive
  thresholds following a signal with no ECG in it: a slow drift (a one-column CSV ramp
  rounded to 1 nV gave 222 "beats" at 119 bpm, every block judged good, since the
  rounding's steps are spiky, repeat their shape and both detectors find them) or a
  signal in volts, not millivolts. Such a window is ``unreadable``, reason
  ``low_amplitude``.

Decision, tuned on the 24 noise-stress records built from MIT-BIH 118 and 119 (``ma``,
``bw`` x 24 ... -6 dB) and the clean DS1 records only, never on the DS2 records:
``unreadable`` when the QRS amplitude is below ``min_qrs_mv`` (a floor added after
the tuning below, which it does not change: no window of those records comes near it), or
when bSQI < ``b_unreadable`` (0.5) and kSQI < ``k_unreadable`` (5: the detectors disagree
and the signal has lost the ECG's spikiness) and sSQI < ``s_unreadable`` (0.5: the
primary's beats do not repeat their shape either), or when the primary detector's
rate is outside ``min_bpm``-``max_bpm``; else ``good`` when every beat of the block itself
has a twin in the window (``twin`` >= ``twin_good``, 0.8: a window spoilt by noise in its
other 6 s does not flag a block whose own beats are sound) and the detectors agree (bSQI >=
``b_unreadable``) or the window's beats repeat (sSQI >= ``s_unreadable``): in pure muscle
noise a block's two or three invented beats can each find a look-alike among the window's
while neither holds (the NST ``ma`` record alone had 24 s of its first 12 minutes judged
good that way, 36 s with the R-peak detector's muscle-noise blend; none now); else
``doubtful`` when bSQI < ``b_doubtful`` (0.8) and sSQI < ``s_good`` (0.8), or when sSQI <
``s_doubtful`` (0.6) whatever bSQI; else ``good``.

Two rules for the first seconds of a stream (and after a hole), where the windows are
short: kSQI leaves out the first ``settle_s`` (0.5 s), the 1-40 Hz filter's start
transient (the filter starts afresh after every hole); and while a detector is learning
its levels (its first ``learn_s``, 2 s, of a stream, or after a hole too long for it to
keep them) bSQI does not keep a block out of ``unreadable``, since the beats are then the
largest peaks of the same two seconds and the detectors agree on noise as on ECG.
Without them, 10 of 200 one-minute streams of Gaussian noise (seeds 0-199, standard
deviation 0.3 mV) let beats out of their first 2-6 s: bSQI at 0.5-0.6 on two to four
beats, or kSQI above 5 from the transient. With them none of 600 did (0.05, 0.3 and 3
mV), and no block's state changed on the 28 clean records or the 22 DS1 ``ma`` 6 dB copies
(only the first four blocks' kSQI values).

Measured on the 118/119 noise-stress records (detection only, gross over ``ma`` and
``bw``; docs/results.md), +P outside the flagged time with the share of the noisy time
flagged: 12 dB 99.80 % with 1.6 %, 6 dB 99.65 % with 13.7 %, 0 dB 99.07 % with 36.8 %. With
bSQI and kSQI alone, before the shape criteria and the detector's changes since: 12 dB
99.46 % with 17.9 %, 6 dB 98.96 % with 35.2 %, 0 dB 98.67 % with 48.7 % (each stage between
is in docs/experiments.md, "Noise stress: earlier gates and detectors"). On the clean
records no block of 108 is unreadable any more (12 % before), and on the 25 unpaced ones,
from minute 5, the gated Se is the detector's, 99.77 %; ``vitaledge bench noise-stress``
reports it per SNR. Swept again on the nst copies of all 22 DS1 records (``ma``, ``bw`` at
6 and 12 dB; 1,296 settings of the seven thresholds, clean DS1 flagged time kept under
0.5 %), no setting gained more than 0.06 point of +P outside the flagged time at the same
flagged share (docs/experiments.md), so the thresholds above stayed.
A block of which less than ``min_s`` of signal has been seen (after a hole) is
``doubtful``.

:class:`QualityIndex` owns the primary :class:`~.rpeaks.RPeakDetector` (the caller gets its
peaks as before) so both detectors see exactly the same samples; it feeds them in pieces
cut at the judgement points, so peaks, judgements and their order are the same for any
chunking. numpy only: this is on the daemon's import path.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from vitaledge.device.dsp.filters import CausalFilter, FilterSpec
from vitaledge.device.dsp.length_transform import LengthTransformDetector
from vitaledge.device.dsp.matching import match_beats
from vitaledge.device.dsp.rhythm import HEART_RATE_BPM
from vitaledge.device.dsp.rpeaks import RPeakDetector
from vitaledge.device.dsp.shape import unit_rows
from vitaledge.device.dsp.signal_buffer import SignalBuffer

GOOD, DOUBTFUL, UNREADABLE = "good", "doubtful", "unreadable"
STATES = (GOOD, DOUBTFUL, UNREADABLE)


@dataclass(frozen=True)
class QualitySpec:
    """Blocks, windows and thresholds of the SQI (see the module docstring)."""

    block_s: float = 2.0
    window_s: float = 8.0
    delay_s: float = 1.0
    tolerance_s: float = 0.15
    min_s: float = 2.0
    b_unreadable: float = 0.5
    k_unreadable: float = 5.0
    b_doubtful: float = 0.8
    min_bpm: float = HEART_RATE_BPM[0]
    max_bpm: float = HEART_RATE_BPM[1]
    shape_s: float = 0.06
    shape_corr: float = 0.9
    s_unreadable: float = 0.5
    s_good: float = 0.8
    s_doubtful: float = 0.6
    twin_good: float = 0.8
    min_qrs_mv: float = 0.02
    settle_s: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BlockQuality:
    """The judgement of samples [start, stop) (absolute), with its features."""

    start: int
    stop: int
    state: str
    reason: str
    bsqi: float
    ksqi: float
    psqi: float
    bassqi: float
    beats: int
    ssqi: float = 0.0
    twin: float = 0.0  # lowest best correlation of this block's own beats (0: none)
    qrs_mv: float | None = None  # median QRS peak-to-peak of the window's beats (mV)

    def to_dict(self) -> dict:
        return asdict(self)


def kurtosis(x: np.ndarray) -> float:
    """Pearson kurtosis (3 for Gaussian noise); 0 for a constant signal."""
    x = np.asarray(x, np.float64)
    d = x - x.mean()
    v = float((d * d).mean())
    return float((d ** 4).mean() / (v * v)) if v > 0 else 0.0


def band_powers(x: np.ndarray, fs: float) -> tuple[float, float]:
    """(pSQI, basSQI) of ``x``: P(5-15 Hz)/P(5-40 Hz) and 1 - P(0-1 Hz)/P(0-40 Hz)."""
    x = np.asarray(x, np.float64)
    if len(x) < 4:
        return 0.0, 0.0
    p = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1.0 / fs)

    def power(lo: float, hi: float) -> float:
        return float(p[(f >= lo) & (f <= hi)].sum())

    qrs, wide = power(5, 15), power(5, 40)
    base, total = power(0, 1), power(0, 40)
    return (qrs / wide if wide > 0 else 0.0), (1 - base / total if total > 0 else 0.0)


def best_twins(x: np.ndarray, peaks: np.ndarray, half: int) -> tuple[np.ndarray, np.ndarray]:
    """(peaks kept, best correlation of each kept peak's QRS ``x[p - half:p + half + 1]`` with
    that of another kept peak); peaks too near either end of ``x`` are left out, and with
    fewer than two left both are empty."""
    x = np.asarray(x, np.float64)
    ps = np.asarray([int(p) for p in peaks if p - half >= 0 and p + half < len(x)], np.int64)
    if len(ps) < 2:
        return np.zeros(0, np.int64), np.zeros(0)
    s = unit_rows(np.stack([x[p - half:p + half + 1] for p in ps]))
    c = s @ s.T
    np.fill_diagonal(c, -1.0)
    return ps, c.max(axis=1)


def shape_consistency(x: np.ndarray, peaks: np.ndarray, half: int,
                      corr: float = 0.9) -> float:
    """sSQI: the fraction of ``peaks`` (indices into ``x``) whose QRS correlates at least
    ``corr`` with that of another of the peaks (see :func:`best_twins`; 0 without two)."""
    _, best = best_twins(x, peaks, half)
    return float((best >= corr).mean()) if len(best) else 0.0


def qrs_amplitude(x: np.ndarray, peaks: np.ndarray, half: int) -> float | None:
    """Median peak-to-peak of ``x[p - half:p + half + 1]`` over ``peaks`` (indices into
    ``x``, each with its whole span inside); None without one."""
    spans = [x[p - half:p + half + 1] for p in peaks if p - half >= 0 and p + half < len(x)]
    return float(np.median([np.ptp(s) for s in spans])) if spans else None


def judge(bsqi: float, ksqi: float, bpm: float, seen_s: float,
          spec: QualitySpec, ssqi: float = 1.0, twin: float = 0.0,
          qrs_mv: float | None = None, learning: bool = False) -> tuple[str, str]:
    """(state, reason) of one window's features (``twin``, ``qrs_mv``: see
    :class:`BlockQuality`; ``qrs_mv`` None: no beat to measure). ``learning``: the block
    lies in the detectors' learning period, where both take the largest peaks of the same
    seconds, so their agreement says nothing and bSQI does not keep it readable."""
    if seen_s < spec.min_s:
        return DOUBTFUL, "short"
    if qrs_mv is not None and qrs_mv < spec.min_qrs_mv:
        return UNREADABLE, "low_amplitude"
    if not spec.min_bpm <= bpm <= spec.max_bpm:
        return UNREADABLE, "rate"
    if ((bsqi < spec.b_unreadable or learning) and ksqi < spec.k_unreadable
            and ssqi < spec.s_unreadable):
        return UNREADABLE, "noise"
    if twin >= spec.twin_good and (bsqi >= spec.b_unreadable or ssqi >= spec.s_unreadable):
        return GOOD, ""
    if bsqi < spec.b_doubtful and ssqi < spec.s_good:
        return DOUBTFUL, "detectors_disagree"
    if ssqi < spec.s_doubtful:
        return DOUBTFUL, "inconsistent_beats"
    return GOOD, ""


class QualityIndex:
    """Streaming SQI of one ECG lead: :meth:`process` returns ``(peaks, blocks)``: the
    primary detector's R peaks (indices counted from the detector's first sample, as
    :class:`~.rpeaks.RPeakDetector` gives them) and the blocks judged, in order.
    ``offset`` is the absolute index of the first sample (after a hole, where the stream
    goes on)."""

    def __init__(self, fs: float, spec: QualitySpec | None = None,
                 detector: RPeakDetector | None = None, offset: int = 0,
                 second: LengthTransformDetector | None = None):
        self.fs = float(fs)
        self.spec = spec or QualitySpec()
        self.block = max(1, int(round(self.spec.block_s * self.fs)))
        self.window = max(self.block, int(round(self.spec.window_s * self.fs)))
        self.delay = int(round(self.spec.delay_s * self.fs))
        self.tol = int(round(self.spec.tolerance_s * self.fs))
        self.shape_half = max(1, int(round(self.spec.shape_s * self.fs)))
        self.settle = int(round(self.spec.settle_s * self.fs))
        self.detector = detector or RPeakDetector(self.fs)
        self.second = second or LengthTransformDetector(self.fs)
        # samples from ``offset`` in which a detector is still learning its levels (none
        # after a short hole: :meth:`resumed` detectors keep theirs)
        self.learn = max(0 if d.learned else d.learn for d in (self.detector, self.second))
        self.offset = int(offset)
        self.n = 0  # samples fed since ``offset``
        self._band = CausalFilter(FilterSpec(1.0, 40.0 if fs > 85 else 0.45 * fs, 2), self.fs)
        self._raw = SignalBuffer()
        self._flt = SignalBuffer()
        self._p1: list[int] = []  # absolute peaks of either detector, not yet too old
        self._p2: list[int] = []
        self._start = self.offset  # start of the next block to judge
        self._end = (self.offset // self.block + 1) * self.block  # its end (on the grid)

    def resumed(self, offset: int, detector: RPeakDetector) -> QualityIndex:
        """The index for the signal after a hole at absolute ``offset`` (the caller's
        detector for it; the second detector keeps its level like the primary)."""
        return QualityIndex(self.fs, self.spec, detector, offset, self.second.resumed())

    def process(self, x: np.ndarray) -> tuple[list[int], list[BlockQuality]]:
        x = np.asarray(x, dtype=np.float64)
        peaks: list[int] = []
        blocks: list[BlockQuality] = []
        while len(x):
            take = min(len(x), self.due() - (self.offset + self.n))
            if take <= 0:
                blocks.append(self._judge(self._end))
                continue
            piece, x = x[:take], x[take:]
            peaks += self._feed(piece)
            if self.offset + self.n >= self.due():
                blocks.append(self._judge(self._end))
        return peaks, blocks

    def flush(self) -> tuple[list[int], list[BlockQuality]]:
        """End of the stream (or of a run before a hole): every block judged, the last
        one on what there is of it."""
        peaks = self.detector.flush()
        self._p1 += [self.offset + p for p in peaks]
        self._p2 += [self.offset + p for p in self.second.flush()]
        blocks = []
        end = self.offset + self.n
        while self._start < end:
            blocks.append(self._judge(min(self._end, end)))
        return peaks, blocks

    def due(self) -> int:
        """The absolute sample count at which the next block is judged."""
        return self._end + self.delay

    def _feed(self, x: np.ndarray) -> list[int]:
        self.n += len(x)
        self._raw.append(x)
        self._flt.append(self._band.process(x))
        peaks = self.detector.process(x)
        self._p1 += [self.offset + p for p in peaks]
        self._p2 += [self.offset + p for p in self.second.process(x)]
        return peaks

    def _judge(self, end: int) -> BlockQuality:
        a = max(self.offset, end - self.window)
        ra, rb = a - self.offset, end - self.offset
        raw = self._raw.get(ra, rb)
        flt = self._flt.get(ra, rb)
        settled = flt[max(0, self.settle - ra):]  # without the band filter's start transient
        p1 = np.asarray([p for p in self._p1 if a <= p < end], np.int64)
        p2 = np.asarray([p for p in self._p2 if a <= p < end], np.int64)
        matched = len(match_beats(p1, p2, self.tol)[0]) if len(p1) and len(p2) else 0
        union = len(p1) + len(p2) - matched
        bsqi = matched / union if union else 0.0
        ksqi = kurtosis(settled if len(settled) >= 2 else flt)
        psqi, bassqi = band_powers(raw, self.fs)
        seen_s = (end - a) / self.fs
        bpm = 60.0 * len(p1) / seen_s if seen_s > 0 else 0.0
        kept, best = best_twins(flt, p1 - a, self.shape_half)
        ssqi = float((best >= self.spec.shape_corr).mean()) if len(best) else 0.0
        own = best[kept >= self._start - a]
        twin = float(own.min()) if len(own) else 0.0
        qrs = qrs_amplitude(flt, p1 - a, self.shape_half)
        state, reason = judge(bsqi, ksqi, bpm, seen_s, self.spec, ssqi, twin, qrs,
                              learning=self._start - self.offset < self.learn)
        out = BlockQuality(self._start, end, state, reason, round(bsqi, 4), round(ksqi, 3),
                           round(psqi, 4), round(bassqi, 4), int(len(p1)), round(ssqi, 4),
                           round(twin, 4), None if qrs is None else round(qrs, 4))
        self._start = end
        self._end = end + self.block
        # keep what the next window needs (a partial last block ends before ``_end``)
        keep = end - self.window
        self._p1 = [p for p in self._p1 if p >= keep]
        self._p2 = [p for p in self._p2 if p >= keep]
        self._raw.trim(keep - self.offset)
        self._flt.trim(keep - self.offset)
        return out


def record_quality(x: np.ndarray, fs: float, spec: QualitySpec | None = None,
                   chunk: int | None = None) -> tuple[np.ndarray, list[BlockQuality]]:
    """(primary R peaks, blocks) of a whole signal, optionally fed in chunks."""
    qi = QualityIndex(fs, spec)
    peaks: list[int] = []
    blocks: list[BlockQuality] = []
    step = chunk or max(1, len(x))
    for i in range(0, len(x), step):
        p, b = qi.process(x[i:i + step])
        peaks += p
        blocks += b
    p, b = qi.flush()
    return np.asarray(peaks + p, np.int64), blocks + b


def flagged_fraction(blocks: list[BlockQuality], states: tuple[str, ...] = (DOUBTFUL,
                                                                            UNREADABLE)) -> float:
    """Fraction of the judged samples whose block is in ``states``."""
    total = sum(b.stop - b.start for b in blocks)
    bad = sum(b.stop - b.start for b in blocks if b.state in states)
    return bad / total if total else 0.0
