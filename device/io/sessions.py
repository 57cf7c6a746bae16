"""Multimodal session recordings: ECG + GSR samples and timestamped face frames in one file.

What the multimodal emotion model (seed 001) needs on a stream comes from two sensors at
different paces: a wearable's ECG and GSR channels at ``fs`` Hz and a camera's face frames
every so often. A session file keeps both, so a session can be replayed through the daemon
(``--source replay:SESSION.npz``) the way a WFDB record is:

``ecg`` (n,) float, ``gsr`` (n,) float, ``fs`` scalar, ``faces`` (m, H, W) uint8 grayscale
(or (m, H, W, 3) RGB), ``face_times`` (m,) seconds from the first sample, increasing.

Replay yields (k, 2) sample chunks [ecg, gsr] and :class:`FaceFrame` items, each frame
before the chunk whose time span holds it. Files are read with ``allow_pickle=False``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitaledge.device.io.heldout import NPZ_ERRORS, npz_problem

KEYS = ("ecg", "gsr", "fs", "faces", "face_times")


class SessionError(ValueError):
    """A session file is unusable; the message names the file and the field."""


@dataclass(frozen=True)
class FaceFrame:
    """One camera frame and its time (seconds from the stream's first sample)."""

    time_s: float
    image: np.ndarray


@dataclass
class Session:
    ecg: np.ndarray
    gsr: np.ndarray
    fs: float
    faces: np.ndarray
    face_times: np.ndarray


def check_session(s: Session, where: str) -> Session:
    if s.ecg.ndim != 1 or s.gsr.shape != s.ecg.shape:
        raise SessionError(f"{where}: ecg and gsr must be 1-D and equally long, got "
                           f"{s.ecg.shape} and {s.gsr.shape}")
    if not (np.all(np.isfinite(s.ecg)) and np.all(np.isfinite(s.gsr))):
        raise SessionError(f"{where}: ecg/gsr contain NaN or infinite samples")
    if not np.isfinite(s.fs) or s.fs <= 0:
        raise SessionError(f"{where}: fs must be a positive number, got {s.fs}")
    if s.faces.ndim not in (3, 4) or len(s.faces) != len(s.face_times):
        raise SessionError(f"{where}: faces must be (m, H, W[, 3]) with one time each, got "
                           f"{s.faces.shape} and {s.face_times.shape} times")
    if len(s.face_times) and (np.any(np.diff(s.face_times) < 0)
                              or not np.all(np.isfinite(s.face_times))):
        raise SessionError(f"{where}: face_times must be finite and increasing")
    return s


def read_session(path: str | Path) -> Session:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in KEYS if k not in z.files]
            if missing:
                raise SessionError(f"{path}: not a session file, missing {missing}")
            a = {k: z[k] for k in KEYS}
    except NPZ_ERRORS as exc:
        if isinstance(exc, SessionError):
            raise
        raise SessionError(f"{path}: cannot read session: {npz_problem(exc)}") from exc
    bad = [k for k in ("ecg", "gsr", "fs", "face_times") if a[k].dtype.kind not in "fiu"
           or a[k].ndim != (0 if k == "fs" else 1)]
    if bad:
        got = ", ".join(f"{k} {a[k].dtype}{list(a[k].shape)}" for k in bad)
        raise SessionError(f"{path}: ecg, gsr, face_times must be 1-D numbers and fs one "
                           f"number, got {got}")
    s = Session(a["ecg"].astype(np.float64), a["gsr"].astype(np.float64), float(a["fs"]),
                a["faces"], a["face_times"].astype(np.float64))
    return check_session(s, str(path))


def write_session(path: str | Path, s: Session) -> Path:
    check_session(s, str(path))
    path = Path(path)
    np.savez_compressed(path, ecg=s.ecg, gsr=s.gsr, fs=np.float64(s.fs), faces=s.faces,
                        face_times=s.face_times)
    return path


def session_chunks(s: Session, chunk: int):
    """(k, 2) [ecg, gsr] chunks, each preceded by the face frames taken at or before the
    chunk's end: a window ending with this chunk is paired with the latest frame at or
    before its end (``MultimodalStage``, ``model_inputs`` in batch), so a frame taken exactly
    at the end must arrive before the chunk that completes the window."""
    both = np.stack([s.ecg, s.gsr], axis=1)
    f = 0
    for i in range(0, len(both), chunk):
        end_s = min(i + chunk, len(both)) / s.fs
        while f < len(s.face_times) and s.face_times[f] <= end_s:
            yield FaceFrame(float(s.face_times[f]), s.faces[f])
            f += 1
        yield both[i:i + chunk]
