"""``heldout.npz``: the held-out model inputs ``vitaledge convert`` saves beside a run's
artifacts, so the device side (the bench, checks on the target) can measure any of them
without TensorFlow or the training data.

Layout, the same for every task (a NumPy ``.npz``, compressed, no pickles):

``X_0``, ``X_1``, ...  float32, one array per model input in the manifest's input order
                       (``Manifest.inputs``), each (n, ...) as ``Model.predict`` takes it
``y``                  int64 (n,): class indices in the manifest's label order
``signal``             0-d str: JSON of the manifest's ``signal`` dict, the spec the inputs
                       were made with (a model made with another spec must not use them)
``record``, ``sample`` optional (beat runs): each beat's record (str) and R-peak sample,
                       so that a decision that runs over a patient's beats in time order
                       (the similar-beat vote) is made as training made it

Files written before this layout are still read: emotion runs wrote the same arrays; beat
runs wrote ``X`` (the windows), ``y`` and ``window`` (JSON of the window spec alone), read
as ``X_0`` and a signal of ``{"kind": "beat", "window": ...}``.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitaledge.device.io.atomic import write_atomic


class HeldoutError(ValueError):
    """A held-out file is missing or does not hold the documented arrays."""


#: What ``np.load`` and reading its arrays raise on a damaged file: the disk (OSError),
#: bad bytes or pickled data (ValueError), an empty file (EOFError), a truncated archive
#: (BadZipFile), a corrupt compressed array (zlib.error).
NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def npz_problem(exc: BaseException) -> str:
    """What was wrong with an .npz, from one of :data:`NPZ_ERRORS`, for a message that
    names the file (numpy says only "No data left in file" of an empty one)."""
    if isinstance(exc, EOFError):
        return "empty file (0 bytes), not a valid .npz"
    if isinstance(exc, zipfile.BadZipFile | zlib.error):
        return f"not a valid .npz (truncated or corrupt: {exc})"
    if "Object arrays" in str(exc):  # numpy's words name allow_pickle
        return "not a readable .npz (it holds object arrays: pickled Python objects, which " \
               "are never loaded)"
    if "pickled" in str(exc):  # numpy's would advise loading the file "unsafely"
        return "not a valid .npz (not a zip archive of arrays)"
    return f"not a readable .npz: {exc}"


@dataclass
class Heldout:
    """Held-out inputs (one array per model input), labels, and the signal spec dict."""

    inputs: list[np.ndarray]
    y: np.ndarray
    signal: dict
    #: each row's patient (record) and time (sample), when the file has them
    groups: np.ndarray | None = None
    times: np.ndarray | None = None

    @property
    def x(self) -> np.ndarray | list[np.ndarray]:
        """What ``Model.predict`` takes: the array, or the list for multi-input models."""
        return self.inputs[0] if len(self.inputs) == 1 else list(self.inputs)


def write_heldout(path: str | Path, inputs: np.ndarray | list[np.ndarray], y: np.ndarray,
                  signal: dict, groups: np.ndarray | None = None,
                  times: np.ndarray | None = None) -> Path:
    """Write ``path`` in the layout above, atomically (a crash leaves the old file);
    ``groups`` and ``times`` are each beat's record and sample."""
    path = Path(path)
    xs = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
    arrays = {f"X_{i}": np.asarray(a, np.float32) for i, a in enumerate(xs)}
    if groups is not None:
        arrays["record"] = np.asarray(groups).astype(str)
    if times is not None:
        arrays["sample"] = np.asarray(times, np.int64)
    buf = io.BytesIO()
    np.savez_compressed(buf, y=np.asarray(y, np.int64), signal=json.dumps(signal), **arrays)
    write_atomic(path, buf.getvalue())
    return path


def read_npz(path: str | Path, missing: str = "no such file") -> dict[str, np.ndarray]:
    """Every array of an .npz (no pickles); a :class:`HeldoutError` naming the file and
    what was wrong with it otherwise (``missing``, empty, truncated, not an .npz)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError as exc:
        raise HeldoutError(f"{path}: {missing}") from exc
    except NPZ_ERRORS as exc:
        raise HeldoutError(f"{path}: {npz_problem(exc)}") from exc


def read_heldout(path: str | Path, n_labels: int | None = None) -> Heldout:
    """Read a ``heldout.npz`` (this layout or the older beat one); errors name the file.
    The inputs must be finite numbers and the labels class indices (below ``n_labels``,
    the model's class count, when given)."""
    path = Path(path)
    files = read_npz(path, missing="no held-out file")
    if "X" in files and "window" in files:  # the beat layout before this one
        names, signal = ["X"], {"kind": "beat", "window": _json(files["window"], path)}
    else:
        n = 0
        while f"X_{n}" in files:
            n += 1
        if not n or "signal" not in files:
            raise HeldoutError(f"{path}: expected arrays X_0.., y and signal, found "
                               f"{sorted(files)}")
        names, signal = [f"X_{i}" for i in range(n)], _json(files["signal"], path)
    inputs = [files[k] for k in names]
    if "y" not in files:
        raise HeldoutError(f"{path}: missing the labels 'y'")
    _check_arrays(path, names, inputs, files["y"], n_labels)
    if any(len(a) != len(files["y"]) for a in inputs):
        raise HeldoutError(f"{path}: {[len(a) for a in inputs]} inputs for "
                           f"{len(files['y'])} labels")
    order = [files.get(k) for k in ("record", "sample")]
    if any(a is not None and (a.ndim != 1 or len(a) != len(files["y"])) for a in order):
        raise HeldoutError(f"{path}: record/sample arrays do not match the "
                           f"{len(files['y'])} labels")
    return Heldout(inputs, files["y"], signal, *order)


def _check_arrays(path: Path, names: list[str], inputs: list[np.ndarray], y: np.ndarray,
                  n_labels: int | None) -> None:
    """Inputs of finite numbers; labels 1-D class indices."""
    for name, a in zip(names, inputs, strict=True):
        if a.ndim == 0 or a.dtype.kind not in "fiu":
            raise HeldoutError(f"{path}: {name} is {a.dtype}{list(a.shape)}, expected "
                               "(n, ...) numbers")
        bad = np.count_nonzero(~np.isfinite(a))
        if bad:
            raise HeldoutError(f"{path}: {name} holds NaN or infinite values "
                               f"({bad} of {a.size})")
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise HeldoutError(f"{path}: labels 'y' are {y.dtype}{list(y.shape)}, expected "
                           "(n,) integer class indices")
    if len(y) and (y.min() < 0 or (n_labels is not None and y.max() >= n_labels)):
        want = ("non-negative class indices" if n_labels is None else
                f"class indices 0..{n_labels - 1} (the model has {n_labels} classes)")
        raise HeldoutError(f"{path}: labels 'y' run from {y.min()} to {y.max()}, expected "
                           f"{want}")


def _json(value: np.ndarray, path: Path) -> dict:
    try:
        d = json.loads(str(value))
    except json.JSONDecodeError as exc:
        raise HeldoutError(f"{path}: signal spec is not JSON: {exc}") from exc
    if not isinstance(d, dict):
        raise HeldoutError(f"{path}: signal spec is not an object")
    return d
