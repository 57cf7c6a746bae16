"""ECG + GSR + face -> the three inputs of the multimodal emotion model (seed 001).

Inputs, for one window of ``window_s`` seconds of ECG and GSR at ``fs`` and one face image:

``physio``   (window_s * physio_fs, 2) float32: ECG band-passed (causal Butterworth,
             ``ecg_filter``), GSR low-passed (``gsr_filter``), each z-scored with the
             subject's statistics, then resampled to ``physio_fs``. The LSTM branch reads it.
``features`` (len(features),) float32: HRV (mean HR, SDNN, RMSSD, pNN50, LF/HF, from R
             peaks of the device's detector) and GSR peak features (SCL, SCR rate and
             amplitude) of the raw window, standardized with the training set's
             ``feature_mean``/``feature_std`` saved in the ``signal`` dict.
``face``     (48, 48, 1) float32: :func:`.face.face_input`.

Per-subject z-score: the mean and standard deviation of the filtered ECG and GSR over the
subject's calibration recording (:func:`subject_stats`); on a stream, the first
``calib_s`` seconds (the subject at rest when the device is put on). Filters restart at
each window's first sample, so a window depends on its own samples only and a stream
gives exactly the windows of the whole recording.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from vitaledge.device.dsp.filters import FilterSpec, apply_filter
from vitaledge.device.dsp.hrv import FEATURES, feature_vector
from vitaledge.device.dsp.resample import resample
from vitaledge.device.dsp.spec_fields import (
    construct,
    non_negative,
    positive,
    read_fields,
    require,
    sample_rate,
)
from vitaledge.device.inputs.face import face_input
from vitaledge.device.inputs.signal_spec import SignalSpecBase

KIND = "emotion-multimodal"
STATS_KEYS = ("ecg_mean", "ecg_std", "gsr_mean", "gsr_std")


def default_signal(window_s: float = 30.0, hop_s: float = 5.0, physio_fs: float = 16.0) -> dict:
    """The preprocessing of the multimodal model; feature statistics are filled in by
    training (identity until then)."""
    return {"kind": KIND, "fs": 128.0, "window_s": float(window_s),
            "hop_s": float(hop_s), "physio_fs": float(physio_fs),
            "ecg_filter": FilterSpec(0.5, 40.0, 2).to_dict(),
            "gsr_filter": FilterSpec(None, 1.0, 2).to_dict(), "calib_s": 60.0,
            "subject_norm": "zscore: mean/std of the filtered ECG and GSR over the subject's "
                            "calibration recording (on a stream its first calib_s seconds)",
            "features": list(FEATURES), "feature_mean": [0.0] * len(FEATURES),
            "feature_std": [1.0] * len(FEATURES), "gsr_min_amp": 0.05, "face_size": 48}


#: The rates (Hz) the physio sequence may be resampled to (``--physio-fs``).
PHYSIO_FS_RANGE = (1.0, 1000.0)


@dataclass(frozen=True)
class MultimodalSignal(SignalSpecBase):
    """The ``signal`` dict, typed and checked (see :func:`default_signal`)."""

    kind: str
    fs: float
    window_s: float
    hop_s: float
    physio_fs: float
    ecg_filter: FilterSpec | None
    gsr_filter: FilterSpec | None
    calib_s: float
    subject_norm: str
    features: list[str]
    feature_mean: list[float]
    feature_std: list[float]
    gsr_min_amp: float
    face_size: int

    def __post_init__(self) -> None:
        require(self.kind == KIND, "kind", f"{self.kind!r} is not {KIND!r}")
        sample_rate(self, "fs")
        # the resampled ECG+GSR sequence the LSTM reads: a few Hz is usual for GSR, so it
        # takes what train emotion-multimodal --physio-fs does (1-1000 Hz)
        sample_rate(self, "physio_fs", bounds=PHYSIO_FS_RANGE)
        positive(self, "window_s", "hop_s", "face_size")
        non_negative(self, "calib_s")
        require(list(self.features) == list(FEATURES), "features",
                f"{self.features} are not the ones this device computes {list(FEATURES)}")
        for k in ("feature_mean", "feature_std"):
            require(len(getattr(self, k)) == len(FEATURES), k,
                    f"needs {len(FEATURES)} values")
        require(min(self.feature_std) > 0, "feature_std", "values must be positive")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | MultimodalSignal, where: str = "signal") -> MultimodalSignal:
        """From a run's or manifest's ``signal`` dict; unknown or missing fields are
        errors (:class:`~vitaledge.device.dsp.spec_fields.SpecError` naming the field)."""
        if isinstance(d, MultimodalSignal):
            return d
        read = {"ecg_filter": FilterSpec.from_dict, "gsr_filter": FilterSpec.from_dict}
        return construct(cls, read_fields(cls, d, where, read), where)


def check_signal(signal: dict | MultimodalSignal) -> MultimodalSignal:
    """Refuse a ``signal`` dict with unknown or missing fields or inconsistent features."""
    return MultimodalSignal.from_dict(signal)


def n_steps(signal: dict | MultimodalSignal) -> int:
    """Length of the physio sequence."""
    s = MultimodalSignal.from_dict(signal)
    return int(round(s.window_s * s.physio_fs))


def _pair(ecg: np.ndarray, gsr: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    e, g = np.asarray(ecg, np.float64), np.asarray(gsr, np.float64)
    if e.ndim != 1 or g.shape != e.shape:
        raise ValueError(f"ecg/gsr: expected two 1-D signals of equal length, got shapes "
                         f"{e.shape} and {g.shape}")
    for name, x in (("ecg", e), ("gsr", g)):
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name}: non-finite sample at index "
                             f"{int(np.flatnonzero(~np.isfinite(x))[0])}")
    return e, g


def _filtered(e: np.ndarray, g: np.ndarray, fs: float, s: MultimodalSignal):
    return apply_filter(e, fs, s.ecg_filter), apply_filter(g, fs, s.gsr_filter)


def subject_stats(ecg: np.ndarray, gsr: np.ndarray, fs: float,
                  signal: dict | MultimodalSignal) -> dict:
    """Per-subject normalization statistics from a calibration recording."""
    e, g = _filtered(*_pair(ecg, gsr, fs), fs, MultimodalSignal.from_dict(signal))
    return {"ecg_mean": float(e.mean()), "ecg_std": float(e.std()) or 1.0,
            "gsr_mean": float(g.mean()), "gsr_std": float(g.std()) or 1.0}


def physio_input(ecg: np.ndarray, gsr: np.ndarray, fs: float,
                 signal: dict | MultimodalSignal, stats: dict) -> np.ndarray:
    """The (n_steps, 2) physio sequence of one window."""
    s = MultimodalSignal.from_dict(signal)
    e, g = _filtered(*_pair(ecg, gsr, fs), fs, s)
    e = (e - stats["ecg_mean"]) / stats["ecg_std"]
    g = (g - stats["gsr_mean"]) / stats["gsr_std"]
    seq = resample(np.stack([e, g]), fs, s.physio_fs).T
    n = n_steps(s)
    out = np.zeros((n, 2), np.float32)
    out[: min(n, len(seq))] = seq[:n]
    return out


def raw_features(ecg: np.ndarray, gsr: np.ndarray, fs: float,
                 signal: dict | MultimodalSignal) -> np.ndarray:
    """Unstandardized feature values of one window (training computes their statistics)."""
    e, g = _pair(ecg, gsr, fs)
    return feature_vector(e, g, fs, gsr_min_amp=MultimodalSignal.from_dict(signal).gsr_min_amp)


def features_input(raw: np.ndarray, signal: dict | MultimodalSignal) -> np.ndarray:
    """Standardize raw feature values with the training statistics in ``signal``."""
    s = MultimodalSignal.from_dict(signal)
    mean = np.asarray(s.feature_mean, np.float64)
    std = np.asarray(s.feature_std, np.float64)
    return ((np.asarray(raw, np.float64) - mean) / std).astype(np.float32)


def model_inputs(ecg: np.ndarray, gsr: np.ndarray, fs: float, face_img: np.ndarray | None,
                 signal: dict | MultimodalSignal, stats: dict) -> dict[str, np.ndarray]:
    """All three inputs of one window (``face`` only when an image is given)."""
    s = MultimodalSignal.from_dict(signal)
    missing = set(STATS_KEYS) - set(stats)
    if missing:
        raise ValueError(f"subject stats: missing {sorted(missing)}")
    if abs(fs - s.fs) > 1e-9:
        e, g = _pair(ecg, gsr, fs)
        ecg, gsr, fs = resample(e, fs, s.fs), resample(g, fs, s.fs), s.fs
    out = {"physio": physio_input(ecg, gsr, fs, s, stats),
           "features": features_input(raw_features(ecg, gsr, fs, s), s)}
    if face_img is not None:
        out["face"] = face_input(face_img, int(s.face_size))
    return out


class MultimodalWindower:
    """Streaming form of :func:`model_inputs` for ECG + GSR at ``signal["fs"]``.

    ``push(ecg_chunk, gsr_chunk)`` returns one ``{"physio", "features"}`` dict per window
    completed, every ``hop_s`` (the face input comes from the camera, see
    :func:`.face.face_input`). Without ``stats`` the first ``calib_s`` seconds of the stream
    are the subject's calibration recording and windows start after them; with ``stats``
    windows start at the stream's first sample. Window k covers stream samples
    [start + k * hop, start + k * hop + window) and equals :func:`model_inputs` on them."""

    def __init__(self, signal: dict | MultimodalSignal, stats: dict | None = None):
        self.signal = s = MultimodalSignal.from_dict(signal)
        self.fs = float(s.fs)
        self.stats = stats
        self._n_calib = 0 if stats is not None else int(round(s.calib_s * self.fs))
        self._win = int(round(s.window_s * self.fs))
        self._hop = max(1, int(round(s.hop_s * self.fs)))
        self._ecg = np.zeros(0)
        self._gsr = np.zeros(0)
        self._start = 0  # stream index of self._ecg[0]
        self._next = self._n_calib

    def push(self, ecg_chunk: np.ndarray, gsr_chunk: np.ndarray) -> list[dict[str, np.ndarray]]:
        e, g = _pair(np.atleast_1d(ecg_chunk), np.atleast_1d(gsr_chunk), self.fs)
        self._ecg = np.concatenate([self._ecg, e])
        self._gsr = np.concatenate([self._gsr, g])
        end = self._start + len(self._ecg)
        if self.stats is None:
            if end < self._n_calib:
                return []
            self.stats = subject_stats(self._ecg[: self._n_calib], self._gsr[: self._n_calib],
                                       self.fs, self.signal)
        out = []
        while self._next + self._win <= end:
            a = self._next - self._start
            out.append(model_inputs(self._ecg[a: a + self._win], self._gsr[a: a + self._win],
                                    self.fs, None, self.signal, self.stats))
            self._next += self._hop
        drop = self._next - self._start
        if drop > 0:
            self._ecg, self._gsr = self._ecg[drop:], self._gsr[drop:]
            self._start = self._next
        return out
