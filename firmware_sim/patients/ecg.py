"""Synthetic two-lead ECG (MLII, V1) with labeled beats of the five AAMI classes.

It is the default data of the demo and of the fast tests, so the classes differ the way
real ones do (timing, P wave, QRS width, T polarity, pacing spike) and a model trained on
it learns something real, while the signal still looks like ECG: heart-rate variability,
baseline wander, muscle noise and powerline interference. Every beat is a sum of Gaussian
waves, the construction of McSharry et al.'s ECGSYN (2003), placed in time by a sinus
clock that ectopic and paced beats interrupt by their textbook rules:

* ``N`` sinus beat: P wave 165-195 ms before R, QRS ~85 ms, upright T ~270 ms after R.
* ``A`` (S) atrial premature beat: coupling 0.60-0.70 of the sinus RR, inverted or
  biphasic P closer to the QRS, narrow QRS (smaller, with a deeper S wave: mild
  aberrancy) and a smaller, earlier T; it resets the sinus node, whose next beat comes
  1.04-1.14 sinus RR later (non-compensatory).
* ``V`` ventricular premature beat: coupling 0.55-0.68, no P, QRS ~160 ms, large and
  upright in MLII (negative in V1), discordant T; the next sinus discharge is blocked, so
  the pause is fully compensatory.
* ``F`` fusion: sinus P and timing (at most 30 ms early), QRS and T blended from the
  N and V shapes with a V weight of 0.35-0.65.
* ``/`` (Q) paced beat: 1-3 ms pacing spike, then a wide (~160 ms), notched, negative
  QRS and discordant T, at the pacemaker's fixed rate (68-72/min), in paced episodes.

Ranges per patient (heart rate 60-80/min, amplitudes, QRS axis, noise levels) are kept
moderate so that a model trained on a few patients still separates a new one's classes.

"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import signal as sps

from vitaledge.device.io.aami import CLASSES
from vitaledge.device.io.records import wfdb_module

SIG_NAMES: tuple[str, str] = ("MLII", "V1")

#: AAMI class letter -> MIT-BIH beat symbol written for it.
CLASS_SYMBOL: dict[str, str] = {"N": "N", "S": "A", "V": "V", "F": "F", "Q": "/"}

#: Default class probabilities (of all beats); Q beats come in paced runs.
DEFAULT_MIX: dict[str, float] = {"N": 0.55, "S": 0.12, "V": 0.12, "F": 0.08, "Q": 0.13}

#: MIT-BIH storage: 11-bit samples, 200 units per mV around 1024.
ADC_GAIN = 200.0
ADC_BASELINE = 1024
ADC_MAX = 2047

_EDGE_S = 0.5
_PACED_EPISODE_S = 30.0


@dataclass
class SynthRecord:
    """A generated record: signal in mV (columns MLII, V1) and its reference beats."""

    name: str
    fs: float
    signal: np.ndarray
    sig_names: list[str] = field(default_factory=lambda: list(SIG_NAMES))
    beat_samples: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    beat_symbols: list[str] = field(default_factory=list)


def _w(*rows: tuple[float, float, float]) -> np.ndarray:
    """Gaussian waves as rows (amplitude mV, centre s relative to R, width sd s)."""
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


@dataclass
class BeatShape:
    """One class's beat in one lead: P, QRS and T waves."""

    p: np.ndarray
    qrs: np.ndarray
    t: np.ndarray


@dataclass
class Patient:
    """Everything that makes one synthetic patient differ from another."""

    rr0: float
    rr_pace: float
    resp_hz: float
    resp_phase: float
    rsa: float
    hrv_freqs: np.ndarray
    hrv_amps: np.ndarray
    hrv_phases: np.ndarray
    resp_amp_mod: float
    shapes: dict[str, tuple[BeatShape, BeatShape]]
    spike_amp: float
    spike_width: float
    spike_lead: tuple[float, float]
    spike_offset: float
    wander_mv: float
    emg_mv: float
    emg_burst_gain: float
    emg_burst_per_min: float
    powerline_mv: float

    def sinus_rr(self, t: float) -> float:
        """Sinus cycle length at time ``t``: respiratory arrhythmia plus slow drift."""
        rsa = self.rsa * np.sin(2 * np.pi * self.resp_hz * t + self.resp_phase)
        slow = np.sum(self.hrv_amps * np.sin(2 * np.pi * self.hrv_freqs * t + self.hrv_phases))
        return float(self.rr0 * (1.0 + rsa + slow))


def draw_patient(rng: np.random.Generator) -> Patient:
    """Draw a patient: rates, wave amplitudes and widths, QRS axis, noise levels.

    The ranges are moderate on purpose: a model trained on a few patients must still
    separate the classes of a new one.
    """
    u = rng.uniform
    rr0 = 60.0 / u(60.0, 80.0)
    amp = u(0.85, 1.2)
    axis = np.radians(u(45.0, 75.0))
    r_gain = amp * np.cos(axis - np.radians(60.0))
    s_gain = amp * (1.0 + 1.5 * max(0.0, float(np.sin(np.radians(60.0) - axis))))
    wq = u(0.94, 1.06)
    pr = u(0.165, 0.195)
    qt = u(0.26, 0.29)
    p_amp = u(0.11, 0.18)
    t_amp = amp * u(0.27, 0.33)
    v1 = u(0.8, 1.2)

    n_ii = BeatShape(p=_w((p_amp, -pr, 0.024)),
                  qrs=_w((-0.08 * amp, -0.026 * wq, 0.007 * wq), (1.15 * r_gain, 0.0, 0.0095 * wq),
                         (-0.2 * s_gain, 0.025 * wq, 0.008 * wq)),
                  t=_w((t_amp, qt, 0.05), (0.35 * t_amp, qt - 0.06, 0.045)))
    n_v1 = BeatShape(p=_w((0.6 * p_amp, -pr - 0.012, 0.016), (-0.45 * p_amp, -pr + 0.018, 0.016)),
                  qrs=_w((0.28 * v1, -0.012 * wq, 0.008 * wq),
                         (-0.95 * v1, 0.018 * wq, 0.011 * wq)),
                  t=_w((0.12 * v1, qt, 0.06)))

    pr_s = pr - u(0.03, 0.05)
    if rng.random() < 0.7:
        p_s_ii = _w((-0.8 * p_amp, -pr_s, 0.02))
    else:
        p_s_ii = _w((0.6 * p_amp, -pr_s - 0.018, 0.014), (-0.7 * p_amp, -pr_s + 0.016, 0.014))
    s_qrs, s_t = u(0.7, 0.78), u(0.3, 0.45)
    s_ii = BeatShape(p=p_s_ii, qrs=n_ii.qrs * [[s_qrs, 1, 1], [s_qrs, 1, 1], [2.2 * s_qrs, 1, 1.4]],
                  t=n_ii.t * [s_t, 1, 1])
    s_v1 = BeatShape(p=_w((-0.6 * p_amp, -pr_s, 0.018)), qrs=n_v1.qrs * [s_qrs, 1, 1],
                  t=n_v1.t * [s_t, 1, 1])

    av = u(1.5, 1.8) * amp
    sd_v = u(0.028, 0.032)
    v_ii = BeatShape(p=_w(),
                  qrs=_w((0.3 * av, -0.04, 0.016), (av, 0.0, sd_v), (-0.25 * av, 0.055, 0.016)),
                  t=_w((-amp * u(0.45, 0.6), 0.3, 0.07)))
    v_v1 = BeatShape(p=_w(),
                  qrs=_w((-0.9 * av * v1, 0.005, 1.05 * sd_v), (0.2 * av * v1, 0.06, 0.016)),
                  t=_w((0.4 * v1, 0.3, 0.07)))

    aq = u(0.9, 1.2) * amp
    q_ii = BeatShape(p=_w(),
                  qrs=_w((0.2 * aq, -0.05, 0.012), (-aq, 0.0, 0.025), (-0.5 * aq, 0.045, 0.018)),
                  t=_w((amp * u(0.35, 0.5), 0.32, 0.07)))
    q_v1 = BeatShape(p=_w(), qrs=_w((-1.2 * v1, 0.0, 0.026), (-0.4 * v1, 0.06, 0.02)),
                  t=_w((0.45 * v1, 0.32, 0.07)))

    return Patient(
        rr0=rr0, rr_pace=60.0 / u(68.0, 72.0),
        resp_hz=u(0.2, 0.33), resp_phase=u(0, 2 * np.pi), rsa=u(0.02, 0.04),
        hrv_freqs=np.array([u(0.08, 0.12), u(0.01, 0.04), u(0.002, 0.008)]),
        hrv_amps=np.array([u(0.005, 0.015), u(0.005, 0.02), u(0.01, 0.03)]),
        hrv_phases=u(0, 2 * np.pi, 3), resp_amp_mod=u(0.02, 0.06),
        shapes={"N": (n_ii, n_v1), "S": (s_ii, s_v1), "V": (v_ii, v_v1), "Q": (q_ii, q_v1)},
        spike_amp=u(3.0, 4.2), spike_width=u(0.001, 0.003), spike_lead=(1.0, u(0.4, 0.7)),
        spike_offset=u(0.082, 0.092),
        wander_mv=u(0.04, 0.2), emg_mv=u(0.004, 0.012), emg_burst_gain=u(3.0, 6.0),
        emg_burst_per_min=u(1.0, 3.0), powerline_mv=u(0.005, 0.02),
    )


def _normalize_mix(mix: dict[str, float] | None) -> dict[str, float]:
    """Class probabilities over all of CLASSES, summing to 1."""
    mix = DEFAULT_MIX if mix is None else mix
    unknown = set(mix) - set(CLASSES)
    if unknown:
        raise ValueError(f"mix: unknown classes {sorted(unknown)}; expected some of {CLASSES}")
    p = {c: float(mix.get(c, 0.0)) for c in CLASSES}
    if any(not np.isfinite(v) or v < 0 for v in p.values()) or sum(p.values()) <= 0:
        raise ValueError(f"mix: probabilities must be finite, >= 0 and not all 0, got {mix}")
    total = sum(p.values())
    return {c: v / total for c, v in p.items()}


def _paced_episodes(pat: Patient, p_q: float, t0: float, t1: float,
                    rng: np.random.Generator) -> list[tuple[float, float]]:
    """Time spans of paced runs so that about ``p_q`` of all beats are paced."""
    span = t1 - t0
    if p_q <= 0 or span <= 0:
        return []
    if p_q >= 1.0 - 1e-9:
        return [(t0, np.inf)]
    frac_t = p_q * pat.rr_pace / (p_q * pat.rr_pace + (1.0 - p_q) * pat.rr0)
    paced = max(frac_t * span, min(3.5 * pat.rr_pace, 0.5 * span))
    k = max(1, int(round(paced / _PACED_EPISODE_S)))
    lengths = np.maximum(paced * rng.dirichlet(np.full(k, 4.0)), 3.5 * pat.rr_pace)
    gaps = max(0.0, span - float(lengths.sum())) * rng.dirichlet(np.full(k + 1, 2.0))
    out, t = [], t0
    for gap, length in zip(gaps[:-1], lengths, strict=True):
        t += gap
        out.append((t, t + length))
        t += length
    return out


def rhythm(pat: Patient, mix: dict[str, float], duration: float,
            rng: np.random.Generator) -> list[tuple[float, str, float]]:
    """Beat times, classes and preceding RR, from the sinus clock and ectopic/paced rules."""
    t_start, t_end = _EDGE_S + rng.uniform(0.05, 0.3), duration - _EDGE_S
    episodes = _paced_episodes(pat, mix["Q"], t_start, t_end, rng)
    non_paced = mix["N"] + mix["S"] + mix["V"] + mix["F"]
    ecto = 0.0 if non_paced <= 0 else (mix["S"] + mix["V"] + mix["F"]) / non_paced
    p_after_n = 1.0 if ecto >= 0.5 else ecto / (1.0 - ecto)
    p_after_e = max(0.0, 2.0 - 1.0 / ecto) if ecto > 0.5 else 0.0
    ecto_classes = ["S", "V", "F"]
    ecto_p = np.array([mix[c] for c in ecto_classes])
    ecto_p = ecto_p / ecto_p.sum() if ecto_p.sum() > 0 else ecto_p

    beats: list[tuple[float, str, float]] = []
    t_last: float | None = None
    next_sinus = t_start
    last_ectopic, force_n = False, True
    ep = 0
    while True:
        if ep < len(episodes) and next_sinus >= episodes[ep][0]:
            start, stop = episodes[ep]
            t = start if t_last is None else max(start, t_last + pat.rr_pace)
            paced = False
            while t < stop and t <= t_end:
                beats.append((t, "Q", pat.rr_pace if t_last is None else t - t_last))
                t_last, t, paced = t, t + pat.rr_pace, True
            ep += 1
            if t > t_end:
                break
            if paced and t_last is not None:
                next_sinus = t_last + pat.sinus_rr(t_last) * rng.uniform(1.0, 1.1)
                force_n = True
            continue
        p_ecto = p_after_e if last_ectopic else p_after_n
        if force_n or t_last is None or rng.random() >= p_ecto:
            cls, t = "N", next_sinus
        else:
            cls = ecto_classes[int(rng.choice(3, p=ecto_p))]
            rr_now = pat.sinus_rr(t_last)
            if cls == "S":
                t = t_last + rr_now * rng.uniform(0.6, 0.7)
            elif cls == "V":
                t = t_last + rr_now * rng.uniform(0.55, 0.68)
            else:
                t = max(next_sinus - rng.uniform(0.0, 0.03), t_last + 0.8 * rr_now)
        if t > t_end:
            break
        rr_prev = pat.sinus_rr(t) if t_last is None else t - t_last
        beats.append((t, cls, rr_prev))
        if cls == "N" or cls == "F":
            next_sinus = t + pat.sinus_rr(t) * (1.0 + 0.005 * rng.standard_normal())
        elif cls == "S":
            next_sinus = t + pat.sinus_rr(t) * rng.uniform(1.04, 1.14)
        else:
            rr_now = pat.sinus_rr(t)
            while next_sinus < t + 0.5 * rr_now:
                next_sinus += pat.sinus_rr(next_sinus)
        t_last, last_ectopic, force_n = t, cls != "N", False
    return beats


def beat_waves(pat: Patient, cls: str, t: float, rr_prev: float, lead: int,
                gain: float, fusion: float) -> np.ndarray:
    """Absolute-time Gaussian waves of one beat in one lead."""
    if cls == "F":
        n, v = pat.shapes["N"][lead], pat.shapes["V"][lead]
        shape = BeatShape(p=n.p,
                          qrs=np.vstack([n.qrs * [1 - fusion, 1, 1], v.qrs * [fusion, 1, 1]]),
                          t=np.vstack([n.t * [1 - fusion, 1, 1], v.t * [fusion, 1, 1]]))
    else:
        shape = pat.shapes[cls][lead]
    qt_scale = float(np.clip((rr_prev / pat.rr0) ** 0.4, 0.75, 1.2))
    tw = shape.t * [gain, qt_scale, qt_scale]
    waves = np.vstack([shape.p, shape.qrs * [gain, 1, 1], tw])
    return waves + [0.0, t, 0.0]


def add_gaussians(x: np.ndarray, waves: np.ndarray, fs: float) -> None:
    """Add sampled Gaussian waves to ``x`` in place, each over +-5 sd."""
    n = len(x)
    for a, c, sd in waves:
        lo = max(0, int(np.ceil((c - 5 * sd) * fs)))
        hi = min(n, int(np.floor((c + 5 * sd) * fs)) + 1)
        if lo < hi:
            tt = np.arange(lo, hi) / fs
            x[lo:hi] += a * np.exp(-0.5 * ((tt - c) / sd) ** 2)


def _add_spike(x: np.ndarray, t0: float, width: float, amp: float, fs: float) -> None:
    """Add a rectangular pacing pulse, averaged over each sample period so no rate misses it."""
    k0 = int(np.floor(t0 * fs - 0.5))
    k = np.arange(k0, int(np.ceil((t0 + width) * fs + 0.5)) + 1)
    k = k[(k >= 0) & (k < len(x))]
    lo, hi = (k - 0.5) / fs, (k + 0.5) / fs
    overlap = np.clip(np.minimum(hi, t0 + width) - np.maximum(lo, t0), 0.0, None)
    x[k] += amp * overlap * fs


def sensor_noise(pat: Patient, n: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """Baseline wander, bursty muscle noise, powerline and a little white noise (n, 2)."""
    t = np.arange(n) / fs
    out = np.zeros((n, 2))
    hi = min(120.0, 0.45 * fs)
    sos = sps.butter(4, [20.0, hi], btype="bandpass", fs=fs, output="sos") if hi > 25 else None
    for ch in range(2):
        f = np.concatenate([[pat.resp_hz], rng.uniform(0.03, 0.5, 3)])
        a = pat.wander_mv * np.concatenate([[0.5], rng.uniform(0.2, 0.5, 3)])
        ph = rng.uniform(0, 2 * np.pi, 4)
        out[:, ch] += np.sin(2 * np.pi * f[:, None] * t[None, :] + ph[:, None]).T @ a

        emg = rng.standard_normal(n)
        if sos is not None:
            emg = sps.sosfilt(sos, emg)
        emg *= pat.emg_mv / max(float(emg.std()), 1e-12)
        env = np.ones(n)
        n_bursts = rng.poisson(pat.emg_burst_per_min * n / fs / 60.0)
        for _ in range(n_bursts):
            length = int(rng.uniform(0.5, 3.0) * fs)
            start = int(rng.integers(0, max(1, n - length)))
            seg = env[start:start + length]
            seg += (pat.emg_burst_gain - 1.0) * np.hanning(len(seg))
        out[:, ch] += emg * env

        if 60.0 < fs / 2:
            phase = rng.uniform(0, 2 * np.pi)
            out[:, ch] += pat.powerline_mv * np.sin(2 * np.pi * 60.0 * t + phase)
        out[:, ch] += 0.003 * rng.standard_normal(n)
    return out


def synth_record(minutes: float, seed: int, fs: float = 360.0, mix: dict[str, float] | None = None,
                 noise: bool = True, name: str = "s000") -> SynthRecord:
    """Generate one record of one synthetic patient drawn from ``seed``.

    ``mix`` gives class probabilities (letters of ``CLASSES``, default ``DEFAULT_MIX``).
    ``noise=False`` leaves out wander, muscle noise and powerline but keeps the same
    patient, beats and heart-rate variability, so the clean record is the noisy one's truth.
    Annotations are at the R peak: the largest deflection of the clean MLII QRS.
    """
    if minutes <= 0 or fs <= 0:
        raise ValueError(f"minutes and fs must be positive, got {minutes}, {fs}")
    probs = _normalize_mix(mix)
    rng_patient, rng_rhythm, rng_noise = (np.random.default_rng(s)
                                          for s in np.random.SeedSequence(seed).spawn(3))
    pat = draw_patient(rng_patient)
    duration = minutes * 60.0
    n = int(round(duration * fs))
    beats = rhythm(pat, probs, duration, rng_rhythm)

    clean = np.zeros((n, 2))
    for t, cls, rr_prev in beats:
        gain = ((1.0 + pat.resp_amp_mod * np.sin(2 * np.pi * pat.resp_hz * t + pat.resp_phase))
                * (1.0 + 0.02 * rng_rhythm.standard_normal()))
        fusion = rng_rhythm.uniform(0.35, 0.65) if cls == "F" else 0.0
        for lead in range(2):
            add_gaussians(clean[:, lead], beat_waves(pat, cls, t, rr_prev, lead, gain, fusion),
                           fs)

    half = max(1, int(round(0.06 * fs)))
    samples = np.zeros(len(beats), np.int64)
    for i, (t, _, _) in enumerate(beats):
        c = int(round(t * fs))
        lo, hi = max(0, c - half), min(n, c + half + 1)
        samples[i] = lo + int(np.argmax(np.abs(clean[lo:hi, 0])))

    for t, cls, _ in beats:
        if cls == "Q":
            for lead in range(2):
                _add_spike(clean[:, lead], t - pat.spike_offset, pat.spike_width,
                           pat.spike_amp * pat.spike_lead[lead], fs)

    signal = clean + sensor_noise(pat, n, fs, rng_noise) if noise else clean
    return SynthRecord(name=name, fs=float(fs), signal=signal, sig_names=list(SIG_NAMES),
                       beat_samples=samples, beat_symbols=[CLASS_SYMBOL[b[1]] for b in beats])


def write_wfdb(rec: SynthRecord, out_dir: str | Path) -> Path:
    """Write ``rec`` as MIT-BIH style WFDB files (format 212, 200/mV, baseline 1024) + .atr.

    Samples outside the 11-bit range are clipped. Returns the record path without extension.
    """
    wfdb = wfdb_module()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    digital = np.clip(np.round(rec.signal * ADC_GAIN + ADC_BASELINE), 0, ADC_MAX).astype(np.int64)
    n_ch = digital.shape[1]
    wfdb.wrsamp(rec.name, fs=rec.fs, units=["mV"] * n_ch, sig_name=list(rec.sig_names),
                d_signal=digital, fmt=["212"] * n_ch, adc_gain=[ADC_GAIN] * n_ch,
                baseline=[ADC_BASELINE] * n_ch, comments=["vitaledge synthetic ECG"],
                write_dir=str(out_dir))
    wfdb.wrann(rec.name, "atr", np.asarray(rec.beat_samples, dtype=np.int64),
               symbol=list(rec.beat_symbols), fs=rec.fs, write_dir=str(out_dir))
    return out_dir / rec.name


def synth_database(out_dir: str | Path, n_records: int = 4, minutes: float = 5.0, seed: int = 0,
                   fs: float = 360.0, overwrite: bool = True) -> list[Path]:
    """Write ``n_records`` records s000, s001, ... each from its own patient; return paths.
    Unless ``overwrite``, a ValueError naming the first of their files already in
    ``out_dir`` is raised before any is written; a ValueError too when ``out_dir`` cannot
    be created."""
    out_dir = Path(out_dir)
    files = [out_dir / f"s{i:03d}{ext}" for i in range(n_records)
             for ext in (".hea", ".dat", ".atr")]
    # checked before any is written: a folder in a file's place stopped the run after the
    # records before it (and this record's header) had been written
    odd = next((f for f in files if f.exists() and not f.is_file()), None)
    if odd is not None:
        raise ValueError(f"{odd}: {'a directory' if odd.is_dir() else 'not a file'} where a "
                         "record file goes; not replaced")
    if not overwrite:
        held = next((f for f in files if f.exists()), None)
        if held is not None:
            raise ValueError(f"{held}: already exists (an earlier run?); give a new --out, "
                             "or --overwrite to replace it")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create output directory {out_dir}: "
                         f"{exc.strerror or exc}") from exc
    paths = []
    for i in range(n_records):
        rec_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        rec = synth_record(minutes, rec_seed, fs=fs, name=f"s{i:03d}")
        paths.append(write_wfdb(rec, out_dir))
    return paths


def synth_beats(spec, n: int = 512, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)``: up to ``n`` beat windows of ``spec`` from a 3-minute simulated patient,
    cut by the device's own beat extraction (what ``bench`` uses when given no data)."""
    from vitaledge.device.io.beats import beats_from_record
    from vitaledge.device.io.records import Record

    s = synth_record(minutes=3.0, seed=seed)
    beats = beats_from_record(Record(s.name, s.fs, s.signal[:, 0], s.sig_names[0],
                                     s.beat_samples, s.beat_symbols), spec)
    return beats.X[:n], beats.y[:n]
