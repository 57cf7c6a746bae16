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

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class HeldoutError(ValueError):
    """A held-out file is missing or does not hold the documented arrays."""


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
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, y=np.asarray(y, np.int64), signal=json.dumps(signal), **arrays)
    tmp.replace(path)
    return path


def read_heldout(path: str | Path) -> Heldout:
    """Read a ``heldout.npz`` (this layout or the older beat one); errors name the file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            files = {k: z[k] for k in z.files}
    except FileNotFoundError as exc:
        raise HeldoutError(f"{path}: no held-out file") from exc
    except (OSError, ValueError) as exc:
        raise HeldoutError(f"{path}: not a readable .npz: {exc}") from exc
    if "X" in files and "window" in files:  # the beat layout before this one
        inputs, signal = [files["X"]], {"kind": "beat", "window": _json(files["window"], path)}
    else:
        n = 0
        while f"X_{n}" in files:
            n += 1
        if not n or "signal" not in files:
            raise HeldoutError(f"{path}: expected arrays X_0.., y and signal, found "
                               f"{sorted(files)}")
        inputs, signal = [files[f"X_{i}"] for i in range(n)], _json(files["signal"], path)
    if "y" not in files:
        raise HeldoutError(f"{path}: missing the labels 'y'")
    if any(len(a) != len(files["y"]) for a in inputs):
        raise HeldoutError(f"{path}: {[len(a) for a in inputs]} inputs for "
                           f"{len(files['y'])} labels")
    order = [files.get(k) for k in ("record", "sample")]
    if any(a is not None and len(a) != len(files["y"]) for a in order):
        raise HeldoutError(f"{path}: record/sample arrays do not match the "
                           f"{len(files['y'])} labels")
    return Heldout(inputs, files["y"], signal, *order)


def _json(value: np.ndarray, path: Path) -> dict:
    try:
        d = json.loads(str(value))
    except json.JSONDecodeError as exc:
        raise HeldoutError(f"{path}: signal spec is not JSON: {exc}") from exc
    if not isinstance(d, dict):
        raise HeldoutError(f"{path}: signal spec is not an object")
    return d
