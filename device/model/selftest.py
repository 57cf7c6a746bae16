"""Self-test vectors: a handful of real inputs an artifact travels with, and the outputs the
artifact itself gave on them, so a device can check a model through its own runtime before
it serves (``vitaledge device selftest``, and every over-the-air deployment).

``convert`` writes them right after building an artifact (:func:`write_selftest`): up to
:data:`DEFAULT_VECTORS` held-out inputs (one of each class first, then spread over the
rest), run through the device runtime (:class:`~.runtime.Model`, never TensorFlow), into
``selftest.npz`` beside the model. The manifest (schema 4) names the file with its sha256,
size, vector count and tolerance (:class:`~.manifest.SelfTestRef`), so a manifest signature
covers the vectors as it covers the model bytes.

Layout (NumPy ``.npz``, compressed, no pickles)::

    input_<name>   float32 (n, ...): the inputs of model input <name> (its name without
                   ``serving_default_``/``:0``), as ``Model.predict`` takes them
    expected       float32 (n, labels): what ``Model.predict`` returned on them

:func:`check` runs the inputs through a loaded model and holds the outputs to the
manifest's ``atol`` (int8 outputs: four quantization steps, which the reference kernels
and XNNPACK both meet; float: 1e-3, 1e-2 for fp16 and
partly quantized models), and the class (argmax) to exactly the expected one wherever the
expected top two are more than ``2 * atol`` apart (a near tie may go either way on
another CPU or backend).
"""

from __future__ import annotations

import hashlib
import io
import math
import zipfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vitaledge.device.io.atomic import write_atomic
from vitaledge.device.model.manifest import (
    Manifest,
    ManifestError,
    SelfTestRef,
    input_key,
    unreadable,
)

SELFTEST_FILE = "selftest.npz"
DEFAULT_VECTORS = 8


class SelfTestError(ManifestError):
    """An artifact has no self-test vectors, or its vectors file is missing, changed or
    does not hold the documented arrays (a failed comparison is a result, not this)."""


@dataclass
class SelfTestResult:
    """How a model did on its vectors: ``passed``, the largest absolute output difference,
    the classes that differed, and ``reason`` (empty when passed)."""

    passed: bool
    vectors: int
    max_abs_diff: float
    atol: float
    argmax_mismatches: int
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


#: Quantization steps of an int8 output the self-test allows: XNNPACK (which writes the
#: vectors) and the reference kernels (``--delegate none``, what TFLite Micro runs) round
#: the requantizations between layers differently; on the six-network default of
#: 2026-12-02 they differ by 3 steps (0.0118), and two steps failed healthy artifacts.
QUANT_STEPS = 4


def default_atol(m: Manifest) -> float:
    """The tolerance written for an artifact: ``QUANT_STEPS`` steps of a quantized output,
    else 1e-3 for a float model and 1e-2 for fp16 or partly quantized ones."""
    q = m.output.quantization
    if q is not None:
        return round(max(QUANT_STEPS * q.scale, 1e-3), 6)
    return 1e-3 if m.quantization == "none" else 1e-2


def pick(y: np.ndarray | None, n: int, k: int = DEFAULT_VECTORS) -> np.ndarray:
    """Indices of ``k`` of ``n`` inputs: the first of each class (in label order), then
    evenly spread over the rest; sorted."""
    k = min(k, n)
    chosen: list[int] = []
    if y is not None:
        y = np.asarray(y)
        for c in np.unique(y):
            if len(chosen) < k:
                chosen.append(int(np.flatnonzero(y == c)[0]))
    taken = set(chosen)
    rest = [i for i in range(n) if i not in taken]
    need = min(k - len(chosen), len(rest))
    if need > 0:
        chosen += [rest[int(j)] for j in np.round(np.linspace(0, len(rest) - 1, need))]
    return np.array(sorted(chosen), dtype=np.int64)


def _names(m: Manifest) -> list[str]:
    return [input_key(t.name) for t in m.inputs]


def write_selftest(artifact: str | Path, model, X, y: np.ndarray | None = None,
                   k: int = DEFAULT_VECTORS) -> SelfTestRef:
    """Pick ``k`` of the inputs ``X`` (an array, or a list in the manifest's input order),
    run them through ``model`` (the artifact loaded with the device runtime), write
    ``selftest.npz`` in ``artifact`` (atomically) and return the manifest's reference."""
    m: Manifest = model.manifest
    xs = list(X) if isinstance(X, list | tuple) else [X]
    if len(xs) != len(m.inputs):
        raise ValueError(f"self-test vectors: {len(xs)} input array(s) for a model with "
                         f"{len(m.inputs)} input(s)")
    n = len(xs[0])
    if n == 0:
        raise ValueError("self-test vectors: no inputs to pick from")
    idx = pick(y, n, k)
    if problem := m.rows_problem([np.asarray(a) for a in xs]):
        raise ValueError(f"self-test vectors: {problem}")
    # stored in the tensor's own row shape (a beat window given as [n, 187] for a
    # [1, 187, 1] tensor is kept as [k, 187, 1]): what read_vectors checks them against
    chosen = [np.asarray(a, np.float32)[idx].reshape(len(idx), *spec.shape[1:])
              for a, spec in zip(xs, m.inputs, strict=True)]
    expected = np.asarray(model.predict(chosen if len(chosen) > 1 else chosen[0]), np.float32)
    arrays = {f"input_{name}": a for name, a in zip(_names(m), chosen, strict=True)}
    buf = io.BytesIO()
    np.savez_compressed(buf, expected=expected, **arrays)
    data = buf.getvalue()
    write_atomic(Path(artifact) / SELFTEST_FILE, data)
    return SelfTestRef(file=SELFTEST_FILE, sha256=hashlib.sha256(data).hexdigest(),
                       size_bytes=len(data), vectors=int(len(idx)), atol=default_atol(m))


def vectors_bytes(path: Path, ref: SelfTestRef) -> bytes:
    """The bytes of the vectors file ``path``, checked against the manifest's ``ref``
    (size and sha256); SelfTestError when it is missing or does not match."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise SelfTestError(f"{path}: self-test vectors named by the manifest are missing "
                            f"({exc.strerror or exc})") from exc
    except OSError as exc:  # a directory in its place, no permission
        raise SelfTestError(unreadable(path, exc, "the self-test vectors file")) from exc
    if len(data) != ref.size_bytes or hashlib.sha256(data).hexdigest() != ref.sha256:
        raise SelfTestError(f"{path}: {len(data)} bytes that do not match the manifest's "
                            "selftest sha256/size (corrupt or tampered)")
    return data


def check_vectors_file(artifact: str | Path, m: Manifest) -> None:
    """The vectors file a manifest names (if any) is there and is the one it names."""
    if m.selftest is not None:
        folder = Path(artifact) if Path(artifact).is_dir() else Path(artifact).parent
        vectors_bytes(folder / m.selftest.file, m.selftest)


def read_vectors(artifact: str | Path, m: Manifest) -> tuple[list[np.ndarray], np.ndarray]:
    """The inputs (manifest order) and expected outputs of ``artifact``'s vectors, after
    checking the file against the manifest (sha256, size) and the arrays against the model
    (names, shapes, count)."""
    ref = m.selftest
    if ref is None:
        raise SelfTestError(f"{artifact}: no self-test vectors (manifest schema "
                            f"{m.schema_version} without selftest; convert the model again "
                            "with this vitaledge to get them)")
    path = Path(artifact) / ref.file
    data = vectors_bytes(path, ref)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        why = "empty file (0 bytes)" if isinstance(exc, EOFError) else exc
        raise SelfTestError(f"{path}: not a self-test vectors file: {why}") from exc
    names = _names(m)
    want = {"expected", *(f"input_{n}" for n in names)}
    if set(arrays) != want:
        raise SelfTestError(f"{path}: holds {sorted(arrays)}, expected {sorted(want)}")
    inputs = [arrays[f"input_{n}"] for n in names]
    expected = arrays["expected"]
    want_rows = [(ref.vectors, *spec.shape[1:]) for spec in m.inputs]
    for name, a, want in zip(names, inputs, want_rows, strict=True):
        # rows of the tensor's size in another shape are the same values: vectors written
        # before they were stored in the tensor's shape ([8, 187] for [8, 187, 1]) pass
        if (len(a) != ref.vectors or a.size != math.prod(want)
                or not np.issubdtype(a.dtype, np.floating)):
            raise SelfTestError(f"{path}: input_{name} is {a.dtype}{list(a.shape)}, expected "
                                f"float {list(want)}")
    inputs = [a.reshape(want) for a, want in zip(inputs, want_rows, strict=True)]
    if expected.shape != (ref.vectors, len(m.labels)) or not np.all(np.isfinite(expected)):
        raise SelfTestError(f"{path}: expected is {list(expected.shape)}, expected "
                            f"{[ref.vectors, len(m.labels)]} finite values")
    return inputs, expected


def compare(got: np.ndarray, expected: np.ndarray, atol: float) -> SelfTestResult:
    """``got`` against ``expected``: every value within ``atol``, and the same class
    wherever the expected top two are more than ``2 * atol`` apart."""
    got = np.asarray(got, np.float64)
    expected = np.asarray(expected, np.float64)
    n = len(expected)
    if got.shape != expected.shape:
        return SelfTestResult(False, n, float("inf"), atol, n, f"outputs shaped "
                              f"{list(got.shape)}, expected {list(expected.shape)}")
    diff = float(np.max(np.abs(got - expected))) if n else 0.0
    top2 = np.sort(expected, axis=1)[:, -2:] if expected.shape[1] > 1 else None
    clear = (top2[:, 1] - top2[:, 0] > 2 * atol) if top2 is not None else np.ones(n, bool)
    mismatches = int(np.sum(clear & (got.argmax(1) != expected.argmax(1))))
    reasons = []
    if not diff <= atol:
        reasons.append(f"outputs differ by up to {diff:.3g} (tolerance {atol:g})")
    if mismatches:
        reasons.append(f"{mismatches} of {n} vectors changed class")
    return SelfTestResult(not reasons, n, round(diff, 8), atol, mismatches, "; ".join(reasons))


def check(model, artifact: str | Path | None = None) -> SelfTestResult:
    """Run ``model``'s self-test vectors (beside its model file, or in ``artifact``)
    through it. Raises :class:`SelfTestError` when there are none or they are unreadable."""
    m: Manifest = model.manifest
    # the artifact's folder, given as the folder or as one of its files (model, manifest)
    where = Path(model.path).parent if artifact is None or not Path(artifact).is_dir() \
        else Path(artifact)
    inputs, expected = read_vectors(where, m)
    try:
        got = model.predict(inputs if len(inputs) > 1 else inputs[0])
    except (ValueError, RuntimeError) as exc:
        return SelfTestResult(False, len(expected), float("inf"), m.selftest.atol,
                              len(expected), f"the model failed on its vectors: {exc}")
    return compare(got, expected, m.selftest.atol)
