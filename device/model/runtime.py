"""TensorFlow-free model runtime: LiteRT backends, delegates, and a small model API.

Backends, in order of preference: ``ai-edge-litert``, then ``tflite-runtime`` (what many
Raspberry Pi and Coral images ship). Never ``tf.lite``: the device does not import
TensorFlow (TensorFlow 2.21's ``tf.lite`` has no Interpreter left, and trying it loaded all
of TensorFlow on a device without LiteRT only to fail). Models load only through their
manifest: the sha256 is checked before the interpreter sees the bytes, and the
interpreter's tensors must match the manifest's specs.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vitaledge.device.model.manifest import (
    ManifestError,
    TensorSpec,
    input_key,
    load_manifest,
    verify_model_file,
)

log = logging.getLogger(__name__)

BACKENDS = ("ai-edge-litert", "tflite-runtime")
#: Interpreter threads anything may ask for (device run, its config, bench run, convert):
#: LiteRT starts each one, and 100,000 of them crashed the daemon.
MAX_THREADS = 256
_BACKEND_MODULES = {
    "ai-edge-litert": "ai_edge_litert.interpreter",
    "tflite-runtime": "tflite_runtime.interpreter",
}
#: Delegate short names -> shared library names tried by ``load_delegate``.
DELEGATE_LIBS = {
    "edgetpu": "libedgetpu.so.1",
    "gpu": "libtensorflowlite_gpu_delegate.so",
}


#: The end of the message of a delegate that does not load: ``device run``'s option. A
#: command without that option replaces it with its own (bench run, device selftest).
FALLBACK_HINT = "use --fallback cpu to run on the CPU instead"
#: What those commands say instead: time or check the model on the CPU.
CPU_HINT = "give --delegate xnnpack or none to use the CPU instead"


class ModelLoadError(RuntimeError):
    """A backend, delegate or model could not be loaded or run."""


@dataclass
class Backend:
    name: str
    module: Any
    version: str

    @property
    def Interpreter(self):  # noqa: N802 - mirrors the LiteRT API name
        return self.module.Interpreter

    def load_delegate(self, library: str, options: dict | None = None):
        return self.module.load_delegate(library, options or {})


def get_backend(name: str | None = None) -> Backend:
    """The named backend, or the first one installed (in :data:`BACKENDS` order)."""
    names = [name] if name else list(BACKENDS)
    errors = []
    for n in names:
        if n not in _BACKEND_MODULES:
            raise ModelLoadError(f"unknown backend {n!r}; expected one of {BACKENDS}")
        try:
            mod = importlib.import_module(_BACKEND_MODULES[n])
        except ImportError as exc:
            errors.append(f"{n}: {exc}")
            continue
        if not hasattr(mod, "Interpreter"):  # a module of that name that is not LiteRT
            errors.append(f"{n}: {_BACKEND_MODULES[n]} {_version_of(n)} has no Interpreter")
            continue
        return Backend(n, mod, _version_of(n))
    raise ModelLoadError("no LiteRT backend available (" + "; ".join(errors) +
                        "); install 'ai-edge-litert' (pip install 'vitaledge[device]')")


def _version_of(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    dist = {"ai-edge-litert": "ai-edge-litert", "tflite-runtime": "tflite-runtime"}[name]
    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


#: The entry points every external TFLite delegate library exports (load_delegate calls them).
DELEGATE_SYMBOLS = ("tflite_plugin_create_delegate", "tflite_plugin_destroy_delegate")


def make_interpreter(model_content: bytes, backend: Backend, threads: int | None = 1,
                     delegate: str = "xnnpack", fallback_cpu: bool = False,
                     preserve_tensors: bool = False, name: str = "the model"):
    """An allocated interpreter for ``model_content`` (``name``: the model, for the error of
    a model the interpreter refuses, e.g. its file).

    ``delegate``: ``xnnpack`` (the backend's default CPU path), ``none`` (reference kernels
    only), ``edgetpu``, ``gpu``, or a path to a delegate shared library. A delegate that
    cannot be loaded is an error unless ``fallback_cpu`` is set, in which case the model runs
    on the CPU and a warning is logged. ``preserve_tensors`` keeps every intermediate tensor
    readable after ``invoke`` (LiteRT otherwise reuses their memory: an intermediate read
    afterwards holds whatever a later op wrote there).
    """
    if not delegate or not str(delegate).strip():
        raise ModelLoadError(f"delegate {delegate!r}: expected xnnpack, none, edgetpu, gpu or "
                             "a delegate library's path")
    kwargs: dict[str, Any] = {"model_content": model_content}
    if preserve_tensors:
        kwargs["experimental_preserve_all_tensors"] = True
    if threads is not None:
        kwargs["num_threads"] = int(threads)
    if delegate == "none":
        resolver = getattr(backend.module, "OpResolverType", None)
        if resolver is None:
            raise ModelLoadError(f"backend {backend.name} cannot disable XNNPACK")
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    elif delegate != "xnnpack":
        lib = DELEGATE_LIBS.get(delegate, delegate)
        try:
            # Probe with ctypes first: a failed load_delegate leaves a half-built Delegate
            # whose destructor prints a traceback in ai-edge-litert 2.3.
            so = ctypes.CDLL(lib)
            lacks = [f for f in DELEGATE_SYMBOLS if not hasattr(so, f)]
            if lacks:  # load_delegate would fail too, and its destructor print a traceback
                raise ValueError(f"{lib} is not a TFLite delegate library (no {lacks[0]})")
            kwargs["experimental_delegates"] = [backend.load_delegate(lib)]
        except (ValueError, OSError, RuntimeError) as exc:
            if not fallback_cpu:
                raise ModelLoadError(f"cannot load the {delegate} delegate ({lib}): {exc}; "
                                    f"{FALLBACK_HINT}") from exc
            log.warning("delegate %s (%s) unavailable (%s); falling back to CPU", delegate,
                        lib, exc)
    try:
        interp = backend.Interpreter(**kwargs)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"the interpreter refused {name}: {exc}") from exc
    return interp


_NP_DTYPES = {"float32": np.float32, "float16": np.float16, "int8": np.int8, "uint8": np.uint8,
              "int16": np.int16, "int32": np.int32}


def quantize(x: np.ndarray, dtype, params: tuple[float, int] | None) -> np.ndarray:
    """Float values -> ``dtype`` with affine ``(scale, zero_point)``, rounded and clipped;
    a plain cast when ``params`` is None (float tensors)."""
    if params is None or not params[0]:
        return np.asarray(x).astype(dtype)
    scale, zero_point = params
    info = np.iinfo(dtype)
    return np.clip(np.round(np.asarray(x) / scale + zero_point), info.min,
                   info.max).astype(dtype)


def tensor_spec(detail: dict) -> TensorSpec:
    """TensorSpec of an interpreter tensor detail (what convert writes into the manifest)."""
    from vitaledge.device.model.manifest import Quantization

    scale, zp = detail.get("quantization", (0.0, 0))
    q = Quantization(float(scale), int(zp)) if scale else None
    return TensorSpec(detail["name"], [int(s) for s in detail["shape"]],
                      np.dtype(detail["dtype"]).name, q)


def _check_spec(actual: TensorSpec, expected: TensorSpec, what: str) -> None:
    if actual.shape != expected.shape or actual.dtype != expected.dtype:
        raise ManifestError(f"model {what} is {actual.dtype}{actual.shape}, manifest says "
                            f"{expected.dtype}{expected.shape}")
    a, e = actual.quantization, expected.quantization
    if (a is None) != (e is None) or (a and e and (not np.isclose(a.scale, e.scale, rtol=1e-6)
                                                   or a.zero_point != e.zero_point)):
        raise ManifestError(f"model {what} quantization {a} differs from the manifest's {e}")


# Ops that keep state in variable tensors between invocations. TFLite's fused LSTM/RNN
# kernels carry their hidden and cell state over from one invoke() to the next, so a
# converted Keras LSTM would start each window from the previous window's final state;
# models containing them get their variables reset before every call.
STATEFUL_OPS = frozenset({"UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM", "LSTM",
                          "UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_RNN", "RNN",
                          "SVDF", "VAR_HANDLE", "ASSIGN_VARIABLE", "READ_VARIABLE"})


class Model:
    """A converted model, loaded through its manifest.

    ``predict(x)`` takes float windows shaped like the input without its batch dimension
    (or with it) and returns float class probabilities; (de)quantization is handled here.
    """

    def __init__(self, artifact: str | Path, backend: str | None = None, threads: int = 1,
                 delegate: str = "xnnpack", fallback_cpu: bool = False,
                 verify_key: str | Path | None = None, preserve_tensors: bool = False):
        self.manifest, self.path = load_manifest(artifact, verify_file=False)
        if verify_key:  # the signed manifest must be the one loaded (device/model/signing.py)
            from vitaledge.device.model.manifest import Manifest
            from vitaledge.device.model.signing import SignatureError, verify_artifact

            signed = verify_artifact(artifact, verify_key)
            if Manifest.from_dict(signed, where=str(artifact)) != self.manifest:
                raise SignatureError(f"{artifact}: manifest changed while it was loaded")
        content = verify_model_file(self.manifest, self.path)
        check_not_empty(content, str(self.path))
        self.backend = get_backend(backend)
        self.delegate = delegate
        self.threads = threads
        self.interpreter = make_interpreter(content, self.backend, threads, delegate,
                                            fallback_cpu, preserve_tensors, name=str(self.path))
        self.stateful = bool(STATEFUL_OPS & {o["op"] for o in list_ops(content, backend,
                                                                 name=str(self.path))})
        ins, outs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        specs = self.manifest.inputs
        if len(ins) != len(specs) or len(outs) != 1:
            raise ManifestError(f"{self.path}: manifest describes {len(specs)} input(s) and one "
                                f"output, the model has {len(ins)} and {len(outs)}")
        by_name = {d["name"]: d for d in ins}
        if len(specs) == 1:
            by_name = {specs[0].name: ins[0]}
        self._ins = []
        for spec in specs:
            if spec.name not in by_name:
                raise ManifestError(f"{self.path}: model has no input named {spec.name!r} "
                                    f"(it has {sorted(by_name)})")
            _check_spec(tensor_spec(by_name[spec.name]), spec, f"input {spec.name}")
            self._ins.append(by_name[spec.name])
        self._in, self._out = self._ins[0], outs[0]
        _check_spec(tensor_spec(self._out), self.manifest.output, "output")
        # ``logits`` (the micro target's models end before the softmax): predict applies
        # :func:`softmax`; the manifest has checked it is one of OUTPUT_KINDS
        self.output_kind = self.manifest.output_kind
        self.input_shape = tuple(self.manifest.input.shape)
        self.input_shapes = [tuple(t.shape) for t in specs]

    @property
    def labels(self) -> list[str]:
        return self.manifest.labels

    def quantize_input(self, x: np.ndarray, which: int = 0) -> np.ndarray:
        """Float windows -> input ``which``'s dtype, with its scale and zero point."""
        spec = self.manifest.inputs[which]
        q = spec.quantization
        return quantize(x, _NP_DTYPES[spec.dtype], None if q is None else (q.scale, q.zero_point))

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        """Output tensor values -> float values (probabilities, or logits when
        :attr:`output_kind` is ``logits``)."""
        q = self.manifest.output.quantization
        if q is None:
            return y.astype(np.float32)
        return ((y.astype(np.float32) - q.zero_point) * q.scale).astype(np.float32)

    def invoke_raw(self, x_quantized) -> np.ndarray:
        """One interpreter call on input(s) already in the model's dtype and shape: an array,
        or a list of arrays in the manifest's input order for multi-input models."""
        xs = x_quantized if isinstance(x_quantized, list | tuple) else [x_quantized]
        for detail, x in zip(self._ins, xs, strict=True):
            self.interpreter.set_tensor(detail["index"], x)
        if self.stateful:
            self.interpreter.reset_all_variables()
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._out["index"])

    def _shaped(self, x, which: int) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        per = self.input_shapes[which][1:]
        if x.shape == per:
            x = x[None]
        if x.shape[1:] != per:
            if x.ndim >= 1 and len(x) and int(np.prod(x.shape[1:])) == int(np.prod(per)):
                x = x.reshape((len(x), *per))
            else:
                name = self.manifest.inputs[which].name
                raise ValueError(f"input {name!r}: windows shaped {x.shape[1:]}, model "
                                 f"expects {per}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"input {self.manifest.inputs[which].name!r} contains NaN or "
                             "infinite values")
        return x

    def predict(self, x) -> np.ndarray:
        """Probabilities (n, n_labels) for windows ``x`` of shape (n, *input_shape[1:]); for a
        multi-input model ``x`` is a list of such arrays in the manifest's input order, or a
        dict keyed by the model's input names (``{"beat": ..., "rr": ...}``)."""
        if isinstance(x, dict):
            names = [input_key(s.name) for s in self.manifest.inputs]
            missing = [n for n in names if n not in x]
            if missing:
                raise ValueError(f"model inputs {missing} not given (have {sorted(x)})")
            x = [x[n] for n in names] if len(names) > 1 else x[names[0]]
        multi = len(self._ins) > 1
        xs = list(x) if multi else [x]
        if len(xs) != len(self._ins):
            raise ValueError(f"model takes {len(self._ins)} inputs, got {len(xs)}")
        xq = [self.quantize_input(self._shaped(a, i), i) for i, a in enumerate(xs)]
        n = len(xq[0])
        if any(len(a) != n for a in xq):
            raise ValueError(f"inputs have different numbers of windows: {[len(a) for a in xq]}")
        b = self.input_shape[0]
        out = []
        for i in range(0, n, b):
            part = [a[i:i + b] for a in xq]
            k = len(part[0])
            if k < b:
                part = [np.concatenate([p, np.repeat(p[-1:], b - k, axis=0)]) for p in part]
            out.append(self.invoke_raw(part if multi else part[0])[:k])
        if not out:
            return np.zeros((0, len(self.labels)), np.float32)
        y = self.dequantize_output(np.concatenate(out))
        return softmax(y) if self.output_kind == "logits" else y

    def decide(self, probs: np.ndarray, x, memory=None, groups: np.ndarray | None = None,
               times: np.ndarray | None = None) -> np.ndarray:
        """The class index of each row of ``probs`` (outputs for inputs ``x``) as the
        signal spec decides it: the argmax, and for a beat model with decision rules
        (similar-beat vote, premature-beat, dominant-beat) those rules, which read the
        inputs ``x``: a dict by input name or a list in the manifest's input order. The
        vote continues a stream's ``memory`` or runs per patient of ``groups``
        (:meth:`~vitaledge.device.inputs.beat.BeatSignal.decide`)."""
        names = [input_key(s.name) for s in self.manifest.inputs]
        by_name = x if isinstance(x, dict) else dict(zip(names, list(x) if len(names) > 1
                                                         else [x], strict=True))
        return self.manifest.signal.decide(probs, self.labels, by_name, memory=memory,
                                           groups=groups, times=times)


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise float32 softmax, stable for any logits (the row maximum is subtracted)."""
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))
    return (e / np.sum(e, axis=-1, keepdims=True)).astype(np.float32)


def check_not_empty(model_content: bytes, name: str) -> None:
    """A model of no bytes is named as such (LiteRT says "`model_path` or `model_content`
    must be specified")."""
    if not model_content:
        raise ModelLoadError(f"{name}: the model file is empty (0 bytes)")


def list_ops(model_content: bytes, backend: str | None = None,
             name: str = "the model") -> list[dict]:
    """The operators of a .tflite model in execution order, with their tensors' shapes and
    dtypes: ``{"index", "op", "inputs": [{"shape", "dtype"}], "outputs": [...]}``.

    Read through the interpreter without delegates, so the list is the model's own graph.
    """
    check_not_empty(model_content, name)
    b = get_backend(backend)
    kwargs: dict[str, Any] = {"model_content": model_content}
    resolver = getattr(b.module, "OpResolverType", None)
    if resolver is not None:
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interp = b.Interpreter(**kwargs)
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"cannot read the operators of {name}: {exc}") from exc
    tensors = {int(t["index"]): t for t in interp.get_tensor_details()}

    def desc(i: int) -> dict:
        t = tensors.get(int(i))
        if t is None:
            return {"shape": [], "dtype": "unknown"}
        return {"shape": [int(v) for v in t["shape"]], "dtype": np.dtype(t["dtype"]).name}

    return [{"index": int(d["index"]), "op": str(d["op_name"]),
             "inputs": [desc(i) for i in d["inputs"] if i >= 0],
             "outputs": [desc(i) for i in d["outputs"] if i >= 0]}
            for d in ops_details(interp)]


def ops_details(interp) -> list[dict]:
    """The operators of an interpreter's graph as it runs (after any delegate took part of
    it: a ``DELEGATE`` op), each a dict with ``index``, ``op_name``, ``inputs`` and
    ``outputs`` (tensor indices). LiteRT offers this only as a private method, the same in
    every backend; this is the one place that calls it."""
    return interp._get_ops_details()  # noqa: SLF001
