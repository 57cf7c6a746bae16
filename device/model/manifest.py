"""The manifest: the contract between conversion and the device.

Every converted model travels as ``model.tflite`` + ``manifest.json``. The manifest is all
the device needs to know about a model: task, labels, input/output tensor specs with their
quantization, the signal spec (how windows are made), the file's sha256 and size, the
source run, and the metrics measured with this very artifact on held-out data.

One schema, validated on load: unknown or missing fields are errors, not warnings. Inside,
the manifest is typed: ``signal`` is the task's signal spec dataclass (:data:`SIGNAL_SPECS`),
checked field by field when the manifest is read, so the stages take it as it is.

Schema history: 1, one input; 2 adds ``extra_inputs``; 3 adds ``output_kind`` (what the
output tensor holds, :data:`OUTPUT_KINDS`; versions 1 and 2 kept it in ``extra["output"]``,
absent meaning probabilities); 4 adds ``selftest`` (the self-test vectors file beside the
model, with its sha256 and size, so that a signature covers the vectors too; null when an
artifact has none). Versions 1 to 3 are still read, without self-test vectors.
"""

from __future__ import annotations

import hashlib
import json
import math
import reprlib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from vitaledge.device.dsp.dominant import LABELS as DOMINANT_LABELS
from vitaledge.device.dsp.premature import LABELS as PREMATURE_LABELS
from vitaledge.device.inputs.beat import BeatSignal
from vitaledge.device.inputs.emotion_ecg import EcgEmotionSignal
from vitaledge.device.inputs.mel import SpeechSignal
from vitaledge.device.inputs.multimodal import MultimodalSignal
from vitaledge.device.io.aami import CLASSES
from vitaledge.device.io.atomic import write_atomic

SCHEMA_VERSION = 4
# Version 1 had no ``extra_inputs`` (every model had one input); it is read as an empty list.
# Versions 1 and 2 had no ``output_kind``; it is read from ``extra["output"]``.
# Versions 1 to 3 had no ``selftest``; it is read as None (no vectors).
READABLE_VERSIONS = (1, 2, 3, 4)
#: The signal spec of each task: ``cls.from_dict(d, where)`` reads and checks the manifest's
#: ``signal`` dict, ``spec.to_dict()`` writes it.
SIGNAL_SPECS = {"beat": BeatSignal, "emotion-ecg": EcgEmotionSignal,
                "emotion-multimodal": MultimodalSignal, "emotion-speech": SpeechSignal}
SignalSpec = BeatSignal | EcgEmotionSignal | MultimodalSignal | SpeechSignal
TASKS = tuple(SIGNAL_SPECS)
#: ``output_kind``: what the output tensor holds. ``logits`` (the micro target's models end
#: before the softmax): the runtime applies a softmax.
OUTPUT_KINDS = ("probabilities", "logits")
TARGETS = ("cpu", "edgetpu", "gpu", "micro")
QUANTS = ("none", "int8", "int8-fc", "fp16", "dynamic")
DTYPES = ("float32", "float16", "int8", "uint8", "int16", "int32")


class ManifestError(ValueError):
    """A manifest (or the model it describes) is invalid; the message names the field."""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _strict(cls, d: Any, where: str):
    """Build dataclass ``cls`` from dict ``d`` refusing unknown and missing fields."""
    if not isinstance(d, dict):
        raise ManifestError(f"{where}: expected an object, got {type(d).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ManifestError(f"{where}: unknown field(s) {unknown}")
    missing = sorted(n for n in names if n not in d)
    if missing:
        raise ManifestError(f"{where}: missing field(s) {missing}")
    return d


def _check_type(value: Any, types: tuple, where: str) -> None:
    if isinstance(value, bool) and bool not in types:
        raise ManifestError(f"{where}: expected {'/'.join(t.__name__ for t in types)}, "
                            f"got bool")
    if not isinstance(value, types):
        raise ManifestError(f"{where}: expected {'/'.join(t.__name__ for t in types)}, "
                            f"got {type(value).__name__}")


@dataclass
class Quantization:
    """Affine quantization of a tensor: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Quantization | None:
        if d is None:
            return None
        _strict(cls, d, where)
        _check_type(d["scale"], (float, int), f"{where}.scale")
        _check_type(d["zero_point"], (int,), f"{where}.zero_point")
        if not d["scale"] > 0:
            raise ManifestError(f"{where}.scale: must be > 0, got {d['scale']}")
        return cls(float(d["scale"]), int(d["zero_point"]))


@dataclass
class TensorSpec:
    name: str
    shape: list[int]
    dtype: str
    quantization: Quantization | None

    @classmethod
    def from_dict(cls, d: Any, where: str) -> TensorSpec:
        _strict(cls, d, where)
        _check_type(d["name"], (str,), f"{where}.name")
        _check_type(d["shape"], (list,), f"{where}.shape")
        if not d["shape"] or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                                     for s in d["shape"]):
            raise ManifestError(f"{where}.shape: expected positive integers, got {d['shape']}")
        if d["dtype"] not in DTYPES:
            raise ManifestError(f"{where}.dtype: {d['dtype']!r} not one of {DTYPES}")
        q = Quantization.from_dict(d["quantization"], f"{where}.quantization")
        if d["dtype"] in ("int8", "uint8", "int16") and q is None:
            raise ManifestError(f"{where}.quantization: required for dtype {d['dtype']}")
        return cls(d["name"], list(d["shape"]), d["dtype"], q)


@dataclass
class SelfTestRef:
    """The self-test vectors beside the model (schema 4): ``file`` (a plain name), its
    ``sha256`` and ``size_bytes`` (so the manifest's signature covers them), how many
    ``vectors`` it holds and the absolute tolerance ``atol`` the outputs are held to
    (:mod:`~.selftest`)."""

    file: str
    sha256: str
    size_bytes: int
    vectors: int
    atol: float

    @classmethod
    def from_dict(cls, d: Any, where: str) -> SelfTestRef | None:
        if d is None:
            return None
        _strict(cls, d, where)
        _check_type(d["file"], (str,), f"{where}.file")
        _check_plain_name(d["file"], f"{where}.file")
        _check_sha256(d["sha256"], f"{where}.sha256")
        for k in ("size_bytes", "vectors"):
            _check_type(d[k], (int,), f"{where}.{k}")
            if d[k] < 1:
                raise ManifestError(f"{where}.{k}: must be >= 1, got {d[k]}")
        _check_type(d["atol"], (float, int), f"{where}.atol")
        if not 0 <= d["atol"] < 1:
            raise ManifestError(f"{where}.atol: expected 0 <= atol < 1, got {d['atol']}")
        return cls(d["file"], d["sha256"], d["size_bytes"], d["vectors"], float(d["atol"]))


def _check_plain_name(name: str, where: str) -> None:
    if "/" in name or "\\" in name or name in ("", ".", ".."):
        raise ManifestError(f"{where}: must be a plain file name beside the manifest, got "
                            f"{name!r}")


def _check_sha256(value: Any, where: str) -> None:
    _check_type(value, (str,), where)
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ManifestError(f"{where}: expected 64 lowercase hex digits")


@dataclass
class Manifest:
    schema_version: int
    task: str
    labels: list[str]
    model_file: str
    sha256: str
    size_bytes: int
    target: str
    quantization: str
    input: TensorSpec
    output: TensorSpec
    signal: SignalSpec
    pruning: dict | None
    source_run: dict
    metrics: dict
    created: str
    vitaledge_version: str
    extra: dict = field(default_factory=dict)
    # Inputs after the first, in the model's input order (multimodal models).
    extra_inputs: list[TensorSpec] = field(default_factory=list)
    output_kind: str = "probabilities"
    # The self-test vectors beside the model (schema 4; None: the artifact has none).
    selftest: SelfTestRef | None = None

    @property
    def inputs(self) -> list[TensorSpec]:
        return [self.input, *self.extra_inputs]

    def rows_problem(self, arrays: list) -> str | None:
        """Why ``arrays`` (one per input, in :attr:`inputs` order, a row per example) cannot
        feed this model: a count or a row shape that is not the input tensor's (the
        tensor's batch dimension aside); None when they can."""
        if len(arrays) != len(self.inputs):
            return f"{len(arrays)} input arrays for a model of {len(self.inputs)} inputs"
        for i, (a, spec) in enumerate(zip(arrays, self.inputs, strict=True)):
            row, want = [int(d) for d in a.shape[1:]], [int(d) for d in spec.shape[1:]]
            if math.prod(row) != math.prod(want):
                return (f"input {i} ({spec.name}) has rows of {row}; the model's tensor "
                        f"takes {want}")
        return None

    def to_dict(self) -> dict:
        return {**asdict(self), "signal": self.signal.to_dict()}

    def save(self, path: str | Path) -> None:
        """Write atomically: a crash never leaves a half-written manifest."""
        write_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, d: Any, where: str = "manifest") -> Manifest:
        if isinstance(d, dict) and "schema_version" in d:
            if d["schema_version"] not in READABLE_VERSIONS:
                raise ManifestError(f"{where}.schema_version: {d['schema_version']!r}, this "
                                    f"vitaledge reads versions {READABLE_VERSIONS}")
            if d["schema_version"] == 1 and "extra_inputs" not in d:
                d = {**d, "extra_inputs": []}
            if d["schema_version"] in (1, 2) and "output_kind" not in d and isinstance(
                    d.get("extra"), dict):
                extra = dict(d["extra"])
                d = {**d, "extra": extra, "output_kind": extra.pop("output", "probabilities")}
            if d["schema_version"] in (1, 2, 3):
                if d.get("selftest") is not None:
                    raise ManifestError(f"{where}.selftest: a schema {d['schema_version']} "
                                        "manifest has no self-test vectors (schema 4 adds them)")
                d = {**d, "selftest": None}
        _strict(cls, d, where)
        if d["task"] not in TASKS:
            raise ManifestError(f"{where}.task: {d['task']!r} not one of {TASKS}")
        if d["target"] not in TARGETS:
            raise ManifestError(f"{where}.target: {d['target']!r} not one of {TARGETS}")
        if d["quantization"] not in QUANTS:
            raise ManifestError(f"{where}.quantization: {d['quantization']!r} not one of "
                                f"{QUANTS}")
        _check_type(d["labels"], (list,), f"{where}.labels")
        if not d["labels"] or not all(isinstance(x, str) for x in d["labels"]):
            raise ManifestError(f"{where}.labels: expected a non-empty list of strings")
        twice = sorted({x for x in d["labels"] if d["labels"].count(x) > 1})
        if twice:
            raise ManifestError(f"{where}.labels: {twice} given more than once; each output "
                                "is one class")
        _check_type(d["model_file"], (str,), f"{where}.model_file")
        _check_plain_name(d["model_file"], f"{where}.model_file")
        _check_sha256(d["sha256"], f"{where}.sha256")
        _check_type(d["size_bytes"], (int,), f"{where}.size_bytes")
        if d["output_kind"] not in OUTPUT_KINDS:
            raise ManifestError(f"{where}.output_kind: {d['output_kind']!r} not one of "
                                f"{OUTPUT_KINDS}")
        for k in ("signal", "source_run", "metrics", "extra"):
            _check_type(d[k], (dict,), f"{where}.{k}")
        _check_micro(d["extra"].get("micro"), where)
        try:
            signal = SIGNAL_SPECS[d["task"]].from_dict(d["signal"], "signal")
        except (ValueError, OverflowError) as exc:
            raise ManifestError(f"{where}: {exc} (the signal spec of a {d['task']!r} "
                                "model)") from None
        if isinstance(signal, BeatSignal):
            _check_beat_labels(d["labels"], signal, where)
        if d["pruning"] is not None:
            _check_type(d["pruning"], (dict,), f"{where}.pruning")
        for k in ("created", "vitaledge_version"):
            _check_type(d[k], (str,), f"{where}.{k}")
        inp = TensorSpec.from_dict(d["input"], f"{where}.input")
        _check_type(d["extra_inputs"], (list,), f"{where}.extra_inputs")
        extra_inputs = [TensorSpec.from_dict(x, f"{where}.extra_inputs[{i}]")
                        for i, x in enumerate(d["extra_inputs"])]
        out = TensorSpec.from_dict(d["output"], f"{where}.output")
        if out.shape[-1] != len(d["labels"]):
            raise ManifestError(f"{where}.output.shape: last dimension {out.shape[-1]} != "
                                f"{len(d['labels'])} labels")
        names = signal.input_names()
        if names is not None:
            _check_input_names(names, [inp, *extra_inputs], where)
        if isinstance(signal, BeatSignal):  # one window per input row, or every predict fails
            per = 1
            for n in inp.shape[1:]:
                per *= n
            if per != signal.window.length:
                raise ManifestError(f"{where}.signal.window.length: {signal.window.length} "
                                    f"samples, but the input tensor {inp.shape} takes "
                                    f"{per} per window")
        selftest = SelfTestRef.from_dict(d["selftest"], f"{where}.selftest")
        if selftest is not None and selftest.file == d["model_file"]:
            raise ManifestError(f"{where}.selftest.file: {selftest.file!r} is the model file")
        return cls(**{**d, "input": inp, "output": out, "extra_inputs": extra_inputs,
                      "signal": signal, "selftest": selftest})


def _check_beat_labels(labels: list[str], signal: BeatSignal, where: str) -> None:
    """A beat model's labels are AAMI classes, and hold every class its decision rules
    decide between (a rule that looks for a label the model lacks failed at the first
    beat, after every load-time check had passed)."""
    odd = [x for x in labels if x not in CLASSES]
    if odd:
        raise ManifestError(f"{where}.labels: {odd} not AAMI beat classes {list(CLASSES)}")
    rules = (("premature", "premature-beat", PREMATURE_LABELS),
             ("dominant", "dominant-beat", DOMINANT_LABELS),
             ("fusion", "fusion", (signal.fusion.as_class,) if signal.fusion else ()))
    for field_name, words, classes in rules:
        lacking = [c for c in classes if c not in labels]
        if getattr(signal, field_name) is not None and lacking:
            raise ManifestError(f"{where}.labels: {labels} lack {lacking[0]!r}, which the "
                                f"{words} rule decides (signal.{field_name})")


#: The least TFLite Micro arena a manifest may name: 1 was written into the C config (as 16)
#: without a word, where firmware mcu measured 30,720 bytes.
MIN_ARENA_BYTES = 1024


def _check_micro(micro: Any, where: str) -> None:
    """``extra.micro`` (the micro target's build facts, which ``firmware export`` takes
    into C source): an object whose ``c_array`` is a name and whose ``arena_bytes``, when
    measured, a positive integer (absent or null: export measures it)."""
    if micro is None:
        return
    if not isinstance(micro, dict):
        raise ManifestError(f"{where}: extra.micro: expected an object, got "
                            f"{type(micro).__name__}")
    if "c_array" in micro and not (isinstance(micro["c_array"], str) and micro["c_array"]):
        raise ManifestError(f"{where}: extra.micro.c_array: expected a non-empty string (the "
                            f"C array's name), got {reprlib.repr(micro['c_array'])}")
    arena = micro.get("arena_bytes")
    if arena is not None and (isinstance(arena, bool) or not isinstance(arena, int)
                              or arena < MIN_ARENA_BYTES):
        raise ManifestError(f"{where}: extra.micro.arena_bytes: expected an integer of at "
                            f"least {MIN_ARENA_BYTES} (bytes: convert measures it; the "
                            f"smallest model here needs kilobytes), got {reprlib.repr(arena)}")


def _check_input_names(wanted: list[str], specs: list[TensorSpec], where: str) -> None:
    """The model's inputs are the ones its signal spec makes (``beat``, and ``rr`` for a
    model with RR features): a missing or extra input is refused by name."""
    if len(specs) != len(wanted):
        raise ManifestError(f"{where}: the signal spec makes inputs {wanted}, the model has "
                            f"{len(specs)} ({[s.name for s in specs]})")
    if len(specs) > 1:
        got = sorted(input_key(s.name) for s in specs)
        if got != sorted(wanted):
            raise ManifestError(f"{where}: the signal spec makes inputs {wanted}, the model "
                                f"takes {got}")


def input_key(tensor_name: str) -> str:
    """The model input's own name from its TFLite tensor name: a converted signature input
    is called ``serving_default_<name>:0`` (``"serving_default_face:0"`` -> ``"face"``)."""
    return tensor_name.removeprefix("serving_default_").split(":")[0]


def manifest_path(artifact: str | Path) -> Path:
    """``artifact/manifest.json`` for an artifact directory; for the artifact's model file
    (``.tflite``, given where its directory was meant) the manifest beside it; else the
    path itself."""
    artifact = Path(artifact)
    if artifact.is_dir():
        return artifact / "manifest.json"
    if artifact.suffix == ".tflite" and (artifact.parent / "manifest.json").is_file():
        return artifact.parent / "manifest.json"
    return artifact


def unreadable(path: Path, exc: OSError, what: str) -> str:
    """The one line naming why ``path`` (``what`` it should be) could not be read."""
    if isinstance(exc, IsADirectoryError) or Path(path).is_dir():
        return f"{path}: a directory, not {what}"
    return f"{path}: cannot read {what}: {exc.strerror or exc}"


def load_manifest(artifact: str | Path, verify_file: bool = True) -> tuple[Manifest, Path]:
    """Read and validate ``artifact/manifest.json`` (or a manifest path).

    With ``verify_file`` the model file must exist, have the recorded size and sha256.
    Returns the manifest and the model file path.
    """
    if not Path(artifact).exists():
        raise ManifestError(f"{artifact}: no such model directory (or manifest file)")
    mpath = manifest_path(artifact)
    if mpath.suffix in (".tflite", ".keras"):  # a model file alone: read as JSON, it was
        # "not valid JSON: 'utf-8' codec can't decode byte 0x90"
        raise ManifestError(f"{artifact}: a model file with no manifest.json beside it (give "
                            "the artifact directory convert wrote, which holds both)")
    try:
        raw = json.loads(mpath.read_text())
    except FileNotFoundError as exc:
        raise ManifestError(f"{mpath}: no manifest (every model must come with its "
                            "manifest.json)") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{mpath}: not valid JSON: {exc}") from exc
    except OSError as exc:  # a directory in its place, no permission
        raise ManifestError(unreadable(mpath, exc, "the manifest")) from exc
    m = Manifest.from_dict(raw, where=str(mpath))
    model_path = mpath.parent / m.model_file
    if mpath != Path(artifact) and not Path(artifact).is_dir() \
            and Path(artifact).name != m.model_file:
        raise ManifestError(f"{artifact}: not the model of the manifest beside it ({mpath} "
                            f"names {m.model_file}); give the artifact directory")
    if verify_file:
        verify_model_file(m, model_path)
    return m, model_path


#: The flatbuffer file identifier every TFLite model carries at bytes 4-8.
TFLITE_IDENTIFIER = b"TFL3"


def not_tflite(model_path: Path, data: bytes) -> str | None:
    """Why ``data``, the bytes of ``model_path``, is no TFLite model (a ``.tflite`` without
    the flatbuffer identifier: a manifest can be made to match any file); None if it is
    one or is not meant to be one."""
    if model_path.suffix == ".tflite" and data[4:8] != TFLITE_IDENTIFIER:
        return (f"{model_path} is not a TFLite flatbuffer (no "
                f"{TFLITE_IDENTIFIER.decode()} identifier)")
    return None


def verify_model_file(m: Manifest, model_path: Path) -> bytes:
    """Check size and sha256 of the model file; return its bytes (read once)."""
    try:
        data = model_path.read_bytes()
    except FileNotFoundError as exc:
        raise ManifestError(f"{model_path}: model file named by the manifest is missing") from exc
    except OSError as exc:
        raise ManifestError(unreadable(model_path, exc, "the model file")) from exc
    if len(data) != m.size_bytes:
        raise ManifestError(f"{model_path}: {len(data)} bytes, manifest says {m.size_bytes} "
                            "(truncated or replaced?)")
    digest = hashlib.sha256(data).hexdigest()
    if digest != m.sha256:
        raise ManifestError(f"{model_path}: sha256 {digest[:12]}... does not match the "
                            f"manifest's {m.sha256[:12]}... (corrupt or tampered)")
    return data
