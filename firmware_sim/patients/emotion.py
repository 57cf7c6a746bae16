"""Synthetic emotion data: ECG and GSR whose heart rate, HRV and skin-conductance activity
depend on the class, and simple drawn faces whose expression depends on the class.

For fast tests and the demo, where no AMIGOS/WESAD/DREAMER recordings exist. The ECG
reuses :mod:`.ecg`'s beat morphology, sinus clock, HRV and noise; only the heart
rate, the respiratory/slow HRV amplitudes and the T-wave amplitude are set per class:

* valence/arousal quadrants (ECG emotion model): arousal raises the heart rate and lowers
  HRV (sympathetic activation withdraws vagal tone); valence changes the T-wave amplitude
  and the slow HRV. The T-wave cue is a learnable stand-in, not a physiological claim.
* the five multimodal classes differ in heart rate, HRV, SCR rate and SCR amplitude, with
  overlapping ranges, so no single cue separates all classes.

Subjects differ (heart rate offset, ECG morphology, skin-conductance level), so a model
must learn the class cue, not the subject. GSR is in microsiemens: a tonic level with slow
drift plus skin-conductance responses (rise ~1 s, decay ~4 s) at a class-dependent rate.
Faces are RGB uint8: a skin-coloured oval with eyes, brows and a mouth whose curvature,
opening and brow slant encode the expression, jittered in position, size, brightness,
shape and pixel noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitaledge.device.io.sessions import Session
from vitaledge.firmware_sim.patients.ecg import (
    BeatShape,
    add_gaussians,
    beat_waves,
    draw_patient,
    rhythm,
    sensor_noise,
)

#: Valence/arousal quadrants, index = 2 * high_valence + high_arousal.
QUADRANTS: tuple[str, ...] = ("LV-LA", "LV-HA", "HV-LA", "HV-HA")

#: The seed-001 emotions, in the model's output order.
EMOTIONS: tuple[str, ...] = ("happy", "sad", "angry", "neutral", "fear")


@dataclass(frozen=True)
class PhysioProfile:
    """Class-dependent physiology: heart rate (/min), HRV scale, SCR rate (/min) and
    amplitude (uS), T-wave gain."""

    hr: float
    hrv: float
    scr_rate: float
    scr_amp: float
    t_gain: float = 1.0


QUADRANT_PROFILES: dict[str, PhysioProfile] = {
    "LV-LA": PhysioProfile(hr=62, hrv=1.4, scr_rate=1.5, scr_amp=0.15, t_gain=0.4),
    "LV-HA": PhysioProfile(hr=88, hrv=0.5, scr_rate=7.0, scr_amp=0.5, t_gain=0.4),
    "HV-LA": PhysioProfile(hr=62, hrv=1.4, scr_rate=1.5, scr_amp=0.15, t_gain=1.8),
    "HV-HA": PhysioProfile(hr=88, hrv=0.5, scr_rate=7.0, scr_amp=0.5, t_gain=1.8),
}

EMOTION_PROFILES: dict[str, PhysioProfile] = {
    "happy": PhysioProfile(hr=80, hrv=1.3, scr_rate=4.0, scr_amp=0.3),
    "sad": PhysioProfile(hr=63, hrv=0.6, scr_rate=1.0, scr_amp=0.1),
    "angry": PhysioProfile(hr=92, hrv=0.5, scr_rate=8.0, scr_amp=0.6),
    "neutral": PhysioProfile(hr=70, hrv=1.0, scr_rate=1.5, scr_amp=0.15),
    "fear": PhysioProfile(hr=100, hrv=0.4, scr_rate=12.0, scr_amp=0.8),
}


@dataclass(frozen=True)
class Subject:
    """What makes one synthetic subject differ: seeds, heart-rate offset, GSR level."""

    seed: int
    hr_offset: float
    scl: float
    gsr_gain: float


def draw_subject(seed: int) -> Subject:
    rng = np.random.default_rng(seed)
    return Subject(seed=seed, hr_offset=float(rng.uniform(-5, 5)), scl=float(rng.uniform(2, 10)),
                   gsr_gain=float(rng.uniform(0.7, 1.3)))


def emotion_ecg(seconds: float, fs: float, profile: PhysioProfile, subject: Subject,
                seed: int) -> np.ndarray:
    """One lead (MLII) of synthetic ECG in mV whose rate and HRV follow ``profile``."""
    rng_pat = np.random.default_rng(subject.seed)
    pat = draw_patient(rng_pat)  # the subject's morphology, the same in every trial
    rng = np.random.default_rng(seed)
    hr = profile.hr + subject.hr_offset + rng.normal(0, 2.0)
    pat.rr0 = 60.0 / hr
    pat.rsa *= profile.hrv
    pat.hrv_amps = pat.hrv_amps * profile.hrv
    pat.hrv_phases = rng.uniform(0, 2 * np.pi, 3)
    pat.resp_phase = rng.uniform(0, 2 * np.pi)
    n_ii, n_v1 = pat.shapes["N"]
    pat.shapes = dict(pat.shapes)
    pat.shapes["N"] = (BeatShape(p=n_ii.p, qrs=n_ii.qrs, t=n_ii.t * [profile.t_gain, 1, 1]), n_v1)
    n = int(round(seconds * fs))
    mix = {"N": 1.0, "S": 0.0, "V": 0.0, "F": 0.0, "Q": 0.0}
    x = np.zeros(n)
    for t, cls, rr_prev in rhythm(pat, mix, seconds, rng):
        gain = 1.0 + pat.resp_amp_mod * np.sin(2 * np.pi * pat.resp_hz * t + pat.resp_phase)
        add_gaussians(x, beat_waves(pat, cls, t, rr_prev, 0, gain, 0.0), fs)
    return x + sensor_noise(pat, n, fs, rng)[:, 0]


def emotion_gsr(seconds: float, fs: float, profile: PhysioProfile, subject: Subject,
                seed: int) -> np.ndarray:
    """Skin conductance (uS): tonic level, slow drift, SCRs at the profile's rate."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * fs))
    t = np.arange(n) / fs
    x = subject.scl + 0.3 * np.sin(2 * np.pi * rng.uniform(0.005, 0.02) * t + rng.uniform(0, 6))
    n_scr = rng.poisson(profile.scr_rate * seconds / 60.0)
    for onset in rng.uniform(-2.0, seconds, n_scr):
        amp = subject.gsr_gain * profile.scr_amp * rng.lognormal(0.0, 0.3)
        tt = np.clip(t - onset, 0.0, None)
        x += amp * (np.exp(-tt / 4.0) - np.exp(-tt / 0.75)) / 0.6
    return x + 0.01 * rng.standard_normal(n)


def _ellipse(yy, xx, cy, cx, ry, rx) -> np.ndarray:
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _stroke(yy, xx, px: np.ndarray, py: np.ndarray, half_w: float, half_h: float) -> np.ndarray:
    """Pixels within a small box of any point of the polyline (px, py)."""
    near = (np.abs(xx[None] - px[:, None, None]) < half_w) & \
        (np.abs(yy[None] - py[:, None, None]) < half_h)
    return near.any(axis=0)


def synth_face(emotion: str, seed: int, size: int = 64) -> np.ndarray:
    """An RGB uint8 face (size x size x 3) with the expression of ``emotion``."""
    if emotion not in EMOTIONS:
        raise ValueError(f"emotion {emotion!r}: expected one of {EMOTIONS}")
    rng = np.random.default_rng(seed)
    u = rng.uniform
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    cy, cx, s = 0.5 + u(-0.05, 0.05), 0.5 + u(-0.05, 0.05), u(0.85, 1.1)
    img = np.full((size, size, 3), u(0.1, 0.6), dtype=np.float64)
    skin = np.array([u(0.6, 0.95), u(0.45, 0.75), u(0.35, 0.6)])
    img[_ellipse(yy, xx, cy, cx, 0.42 * s, 0.33 * s)] = skin
    dark = np.array([0.1, 0.08, 0.08])

    # expression parameters: mouth curvature and opening, brow slant and height, eye size
    curve, open_, slant, brow_up, eye = {
        "happy": (0.9, 0.0, 0.0, 0.0, 1.0),
        "sad": (-0.7, 0.0, -0.5, 0.0, 0.9),
        "angry": (-0.1, 0.0, 0.8, -0.02, 0.8),
        "neutral": (0.0, 0.0, 0.0, 0.0, 1.0),
        "fear": (-0.2, 0.06, -0.3, 0.05, 1.5),
    }[emotion]
    curve += u(-0.25, 0.25)
    slant += u(-0.2, 0.2)
    for side in (-1, 1):
        ex, ey = cx + side * 0.13 * s, cy - 0.08 * s
        img[_ellipse(yy, xx, ey, ex, 0.035 * s * eye, 0.05 * s)] = dark
        # brow: a thick line above the eye, its inner end raised (sad/fear) or lowered (angry)
        bx = np.linspace(-0.07, 0.07, 40) * s
        inner = -side * bx / (0.07 * s)  # +1 at the inner end
        by = ey - (0.08 + brow_up) * s + slant * 0.03 * s * inner
        img[_stroke(yy, xx, ex + bx, by, 0.012, 0.012)] = dark
    mx = np.linspace(-0.12, 0.12, 60) * s
    my = cy + 0.2 * s - curve * 2.5 * (mx ** 2 - 0.0048 * s * s)
    img[_stroke(yy, xx, cx + mx, my, 0.012, 0.014)] = dark
    if open_ > 0:
        img[_ellipse(yy, xx, cy + 0.2 * s, cx, open_ * s, 0.06 * s)] = dark
    img = img * u(0.7, 1.2) + rng.normal(0, 0.04, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def synth_session(emotions: list[str], seconds_each: float, fs: float = 128.0,
                  face_every_s: float = 2.0, seed: int = 0) -> Session:
    """A synthetic session: consecutive stretches of ``emotions``, ECG/GSR and faces of
    each, one subject; write it with :func:`vitaledge.device.io.sessions.write_session`."""
    subject = draw_subject(seed)
    ecg, gsr, faces, times = [], [], [], []
    for k, emo in enumerate(emotions):
        prof = EMOTION_PROFILES[emo]
        ecg.append(emotion_ecg(seconds_each, fs, prof, subject, seed * 1000 + k))
        gsr.append(emotion_gsr(seconds_each, fs, prof, subject, seed * 1000 + k + 500))
        for j, t in enumerate(np.arange(0.0, seconds_each, face_every_s)):
            faces.append(synth_face(emo, seed * 1000 + 10 * k + j))
            times.append(k * seconds_each + t)
    return Session(np.concatenate(ecg), np.concatenate(gsr), float(fs),
                   np.stack(faces).astype(np.uint8) if faces else np.zeros((0, 64, 64),
                                                                            np.uint8),
                   np.asarray(times, np.float64))
