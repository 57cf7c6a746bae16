"""What a run directory or a converted artifact holds, read back and checked before any
work: its Keras model file (without TensorFlow), the task it names, the run an artifact
came from, and an emotion run's held-out ``data.npz``. Each refusal names the file. No
TensorFlow is loaded here, except by :func:`load_keras`."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from vitaledge.device.model.manifest import TASKS

#: The first bytes of an HDF5 file (the legacy Keras format, which ``load_model`` also reads
#: from a file named ``.keras``).
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def check_keras_file(path: Path) -> None:
    """Refuse, without TensorFlow, a ``model.keras`` that cannot be a Keras model: missing,
    not a file, neither a Keras archive (zip) nor HDF5 (a truncated archive loses the zip
    directory at its end), an archive whose members fail their CRC or that has no
    ``config.json``. The error names the file, so a command fails before any work."""
    path = Path(path)
    if not path.exists():
        folds = sorted(p.name for p in path.parent.glob("fold-*") if p.is_dir())
        if folds:  # a patient-wise K-fold run: each fold is a run of its own
            raise FileNotFoundError(f"{path.parent}: a K-fold run directory ({', '.join(folds)} "
                                    f"here) has no model of its own; give one of its folds, "
                                    f"e.g. {path.parent / folds[0]}")
        raise FileNotFoundError(f"{path}: missing; a run written by 'vitaledge train' has "
                                "its model there")
    if not path.is_file():
        raise ValueError(f"{path}: not a file; expected a Keras model")
    try:
        if not zipfile.is_zipfile(path):
            with path.open("rb") as f:
                if f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                    return
            raise ValueError(f"{path}: not a Keras model (neither a .keras archive nor HDF5; "
                             f"{path.stat().st_size} bytes, truncated or corrupt?)")
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
            names = z.namelist()
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{path}: unreadable Keras model archive: {exc}") from exc
    if bad is not None:
        raise ValueError(f"{path}: corrupt Keras model archive ({bad} fails its CRC check)")
    if "config.json" not in names:
        raise ValueError(f"{path}: not a Keras model archive (no config.json in it)")


def load_keras(path: Path):
    """The Keras model in ``path`` (its callers run :func:`check_keras_file` before reading
    any data); a model Keras cannot load is a ValueError naming the file."""
    from .backend import keras

    try:
        return keras.models.load_model(str(path))
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: cannot load the Keras model: {exc}") from exc


def source_run(artifact: Path, manifest) -> Path:
    """The run ``artifact`` was converted from, as it was then: a run trained again since
    (its ``config.json`` no longer the one the manifest's ``source_run.config_sha256``
    names) would lend the artifact another run's held-out beats and settings (ValueError)."""
    import hashlib

    run_dir = Path(manifest.source_run.get("path", ""))
    want = manifest.source_run.get("config_sha256")
    cfg = run_dir / "config.json"
    if want and cfg.is_file() and hashlib.sha256(cfg.read_bytes()).hexdigest() != want:
        raise ValueError(f"{artifact}: its source run {run_dir} was trained again since it "
                         "was converted (config.json is not the one converted): its held-out "
                         "data is another run's; convert that run again")
    return run_dir


def file_task(path: Path) -> str:
    """The task a run's ``config.json`` or an artifact's ``manifest.json`` names (``beat``
    when absent: beat runs written before ``task`` existed); a ValueError naming the file
    when it cannot be read, is not a JSON object or names a task no model is trained for."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a JSON object, got {json.dumps(doc)[:40]}")
    task = doc.get("task", "beat")
    if task not in TASKS:
        raise ValueError(f"{path}: task {task!r} is not one of {', '.join(TASKS)}")
    return task


def run_task(model_path: Path) -> str:
    """The task of a run directory, its ``model.keras`` or a converted artifact: the
    manifest's, else ``config.json``'s (beat runs written before ``task`` existed: beat)."""
    model_path = Path(model_path)
    base = model_path if model_path.is_dir() else model_path.parent
    for name in ("manifest.json", "config.json"):
        if (base / name).exists():
            return file_task(base / name)
    folds = sorted(p.name for p in base.glob("fold-*") if p.is_dir())
    if folds:  # a leave-speakers-out K-fold run: as check_keras_file says for beat folds
        raise FileNotFoundError(f"{base}: a K-fold run directory ({', '.join(folds)} here) "
                                f"has no model of its own; give one of its folds, e.g. "
                                f"{base / folds[0]}")
    raise FileNotFoundError(f"{base}: no config.json or manifest.json; MODEL must be a run "
                            "directory written by 'vitaledge train', its model.keras, or a "
                            "converted artifact")


def check_heldout(path: Path, data: dict, n_labels: int, calib: bool = False) -> None:
    """An emotion run's ``data.npz`` holds what scoring it needs: ``test_y``, class indices
    below ``n_labels``, as many rows in every ``test_`` input, every ``test_`` input (and with
    ``calib``, for convert, every ``calib_`` one) finite; a ValueError
    naming the file and the array otherwise (a KeyError or IndexError traceback, or numbers
    from NaN inputs, before)."""
    if "test_y" not in data:
        raise ValueError(f"{path}: missing 'test_y'")
    y = data["test_y"]
    if (y.ndim != 1 or not np.issubdtype(y.dtype, np.integer)
            or (len(y) and not (0 <= y.min() and y.max() < n_labels))):
        raise ValueError(f"{path}: test_y is {y.dtype}{list(y.shape)}, expected class indices "
                         f"0 to {n_labels - 1}")
    checked = ("test_", "calib_") if calib else ("test_",)
    for k, v in data.items():
        if k.startswith("test_") and k != "test_y":
            if len(v) != len(y):
                raise ValueError(f"{path}: {k} has {len(v)} rows, test_y {len(y)}")
        if k.startswith(checked) and np.issubdtype(v.dtype, np.floating) \
                and not np.isfinite(v).all():  # a NaN in calibration made a broken int8 model
            raise ValueError(f"{path}: {k} holds non-finite values")
