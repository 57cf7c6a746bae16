"""Heart-rate variability from RR intervals and skin-conductance (GSR) peak features.

The multimodal emotion model takes these as its "features" input, computed on the device
from the same window the "physio" sequence comes from. Definitions follow the Task Force
of the ESC/NASPE (Circulation 93, 1996): mean HR, SDNN, RMSSD, pNN50 (successive
differences > 50 ms), and LF/HF = power 0.04-0.15 Hz over 0.15-0.4 Hz of the RR series
resampled evenly at 4 Hz (Welch). The Task Force asks for >= 2 min for LF; on shorter
windows LF/HF is a rough short-term estimate, still informative about sympathovagal shifts.

GSR peaks are skin-conductance responses (SCRs): local maxima of the low-passed signal
with a prominence of at least ``min_amp`` (in the signal's units, e.g. microsiemens);
their rate per minute and mean amplitude, plus the mean level (SCL).

Plain numpy, as the rest of the daemon's signal path: the Welch spectrum
(:mod:`.spectrum`), the device's causal Butterworth (:mod:`.filters`) and peaks by
prominence (:mod:`.peaks`); scipy.signal alone costs the daemon about 75 MB resident.
"""

from __future__ import annotations

import numpy as np

from vitaledge.device.dsp.filters import FilterSpec, apply_filter
from vitaledge.device.dsp.peaks import prominent_peaks
from vitaledge.device.dsp.rhythm import in_range, time_domain
from vitaledge.device.dsp.rpeaks import detect_rpeaks
from vitaledge.device.dsp.spectrum import welch

HRV_FEATURES = ("mean_hr", "sdnn", "rmssd", "pnn50", "lf_hf")
GSR_FEATURES = ("scl_mean", "scr_rate", "scr_amp")
FEATURES = HRV_FEATURES + GSR_FEATURES


def rr_features(rr_s: np.ndarray) -> dict[str, float]:
    """Mean HR (/min), SDNN and RMSSD (ms), pNN50 (%) (:func:`time_domain`) and LF/HF of RR
    intervals (s), those outside :data:`~.rhythm.RR_RANGE_S` dropped first. With fewer than
    3 intervals left every feature is 0 (nothing to measure); LF/HF is 0 when HF power is 0."""
    rr = in_range(rr_s)
    if len(rr) < 3:
        return dict.fromkeys(HRV_FEATURES, 0.0)
    return time_domain(rr) | {"lf_hf": lf_hf(rr)}


def lf_hf(rr_s: np.ndarray, fs_interp: float = 4.0) -> float:
    """LF/HF power ratio of RR intervals (s), from the evenly resampled tachogram."""
    rr = np.asarray(rr_s, dtype=np.float64)
    t = np.cumsum(rr)
    if len(rr) < 4 or t[-1] - t[0] < 4.0:
        return 0.0
    grid = np.arange(t[0], t[-1], 1.0 / fs_interp)
    tach = np.interp(grid, t, rr)
    tach = tach - tach.mean()
    f, pxx = welch(tach, fs_interp, nperseg=256)
    lf = float(np.trapezoid(pxx[(f >= 0.04) & (f < 0.15)], f[(f >= 0.04) & (f < 0.15)])) \
        if np.count_nonzero((f >= 0.04) & (f < 0.15)) > 1 else 0.0
    hf_band = (f >= 0.15) & (f < 0.4)
    hf = float(np.trapezoid(pxx[hf_band], f[hf_band])) if np.count_nonzero(hf_band) > 1 else 0.0
    return lf / hf if hf > 0 else 0.0


def ecg_hrv(ecg: np.ndarray, fs: float) -> dict[str, float]:
    """HRV features of an ECG window, R peaks from the device's streaming detector."""
    peaks = detect_rpeaks(np.asarray(ecg, dtype=np.float64), fs)
    return rr_features(np.diff(peaks) / fs)


def gsr_features(gsr: np.ndarray, fs: float, min_amp: float = 0.05,
                 lowpass_hz: float = 1.0) -> dict[str, float]:
    """Mean level, SCR rate (/min) and mean SCR amplitude of a GSR window.

    The signal is low-passed (causal Butterworth, order 2) so tonic drift and noise do not
    count as responses; a response is a peak at least 1 s after the previous one with a
    prominence of at least ``min_amp``."""
    x = np.asarray(gsr, dtype=np.float64)
    if x.ndim != 1 or len(x) < 2:
        raise ValueError(f"gsr: expected a 1-D window of >= 2 samples, got shape {x.shape}")
    y = apply_filter(x, fs, FilterSpec(low_hz=None, high_hz=min(lowpass_hz, 0.45 * fs)))
    peaks, amps = prominent_peaks(y, min_amp, distance=max(1, int(fs)))
    minutes = len(x) / fs / 60.0
    return {"scl_mean": float(x.mean()), "scr_rate": float(len(peaks) / minutes),
            "scr_amp": float(amps.mean()) if len(amps) else 0.0}


def feature_vector(ecg: np.ndarray, gsr: np.ndarray, fs: float,
                   gsr_min_amp: float = 0.05) -> np.ndarray:
    """The values of ``FEATURES`` (in that order) for one ECG + GSR window, float64."""
    f = ecg_hrv(ecg, fs) | gsr_features(gsr, fs, min_amp=gsr_min_amp)
    return np.array([f[k] for k in FEATURES], dtype=np.float64)
