"""One variant, built the same way for every model family: convert, write ``model.tflite``,
add the target's extras, describe it in ``manifest.json``, verify it through the device
runtime on the run's held-out data, record the figures in the manifest, and write the
self-test vectors (``selftest.npz``: a few held-out inputs and this artifact's own outputs
on them, named in the manifest with their sha256, so a signature covers them).

A family (:mod:`.pipeline` for beat models, :mod:`.emotion`) prepares a :class:`Source`
once per run and a :class:`Variant` per artifact; :func:`build_variant` does the rest.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vitaledge import __version__
from vitaledge.device.model.manifest import SCHEMA_VERSION, SIGNAL_SPECS, Manifest, input_key
from vitaledge.device.model.runtime import (
    Model,
    ModelLoadError,
    get_backend,
    list_ops,
    make_interpreter,
    tensor_spec,
)
from vitaledge.device.model.selftest import write_selftest
from vitaledge.train.backend import keras

from .logits import LOGITS, logits_model
from .quantize import to_tflite
from .results import FAIL, Result, status
from .targets import TARGETS, Built
from .verify import verify


@dataclass
class ConvertOptions:
    targets: list[str] = field(default_factory=lambda: ["cpu"])
    quant: str | None = None
    sparsities: list[float] = field(default_factory=lambda: [0.0])
    qat: bool = False
    representative_size: int = 300
    max_drop: float = 1.0  # accuracy points
    prune_epochs: int = 4
    threads: int = 1
    name: str = "vitaledge"
    # emotion runs: also build the straight (fused-LSTM) conversion, the speed reference
    fused_reference: bool = True
    # full int8: Conv/Dense kernels rounded with error compensation (convert/rounding.py)
    weight_rounding: str = "compensated"


@dataclass
class Source:
    """A run as every variant of it sees it: what goes into the manifest (task, labels,
    signal, arch), the calibration inputs, and the held-out inputs with the Keras model's
    own figures on them. Inputs are one array, or a list of arrays in model input order."""

    run_dir: Path
    task: str
    labels: list[str]
    signal: dict
    arch: str
    input_names: list[str]
    calibration: np.ndarray | list[np.ndarray]
    X: np.ndarray | list[np.ndarray]
    y: np.ndarray
    keras_probs: np.ndarray
    keras_ref: dict
    input_range: str = "minmax"  # full int8's input range (quantize.INPUT_RANGES)
    #: each held-out beat's patient and time, for decisions made over a patient's beats in
    #: order (the similar-beat vote); empty for tasks without them
    order: dict = field(default_factory=dict)


@dataclass
class Variant:
    """One artifact to build: ``model`` (or a batch-1 ``concrete`` function of it, e.g. the
    unrolled LSTM) converted for ``target`` at ``quant``; ``extra`` holds the family's own
    manifest extras (written before the target's)."""

    name: str
    target: str
    quant: str
    model: keras.Model
    concrete: Any = None
    pruning: dict | None = None
    extra: dict = field(default_factory=dict)


def build_manifest(src: Source, target: str, quant: str, content: bytes,
                   pruning: dict | None, extra: dict,
                   output_kind: str = "probabilities") -> Manifest:
    """The manifest of ``content`` (metrics empty until verified)."""
    interp = make_interpreter(content, get_backend(), threads=1, delegate="none")
    details = interp.get_input_details()
    by_name = {input_key(d["name"]): d for d in details}
    if len(details) == 1:
        specs = [tensor_spec(details[0])]
    elif set(src.input_names) <= set(by_name):
        specs = [tensor_spec(by_name[n]) for n in src.input_names]
    else:
        raise ModelLoadError(f"converted model inputs {sorted(by_name)} do not match the "
                             f"Keras inputs {src.input_names}")
    return Manifest(
        schema_version=SCHEMA_VERSION, task=src.task, labels=list(src.labels),
        model_file="model.tflite", sha256=hashlib.sha256(content).hexdigest(),
        size_bytes=len(content), target=target, quantization=quant,
        input=specs[0], output=tensor_spec(interp.get_output_details()[0]),
        signal=SIGNAL_SPECS[src.task].from_dict(src.signal), pruning=pruning,
        source_run={"path": str(src.run_dir.resolve()), "arch": src.arch,
                    "config_sha256": hashlib.sha256(
                        (src.run_dir / "config.json").read_bytes()).hexdigest(),
                    "keras": src.keras_ref},
        metrics={}, created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        vitaledge_version=__version__, extra=extra, extra_inputs=specs[1:],
        output_kind=output_kind)


def build_variant(src: Source, v: Variant, out: Path, opts: ConvertOptions) -> Result:
    """Build, describe and verify ``v`` in ``out / v.name``; failures become ❌ rows."""
    target = TARGETS[v.target]
    vdir = out / v.name
    vdir.mkdir(parents=True, exist_ok=True)
    logits = None
    if target.logits and v.concrete is None:
        # the class is the argmax, so the artifact ends at the logits (convert/logits.py)
        logits = logits_model(v.model)
        if logits is None:
            print(f"{v.name}: no final softmax layer found to remove; the output stays "
                  "probabilities")
    net = v.model if logits is None else logits
    try:
        content = to_tflite(net, v.quant, src.calibration, concrete=v.concrete,
                            weight_rounding=opts.weight_rounding, input_range=src.input_range)
    except Exception as exc:  # converter errors are many and untyped
        return Result(v.name, FAIL, vdir, error=f"conversion failed: {exc}")
    (vdir / "model.tflite").write_bytes(content)
    gz = len(gzip.compress(content, 9))
    try:
        ops = list_ops(content)
        extra = {"gzip_bytes": gz, "ops": sorted({o["op"] for o in ops}), **v.extra}
        if v.quant == "int8":  # how the int8 weights and input range were chosen
            from .rounding import eligible_layers

            rounded = opts.weight_rounding == "compensated" and bool(eligible_layers(net))
            extra.update(weight_rounding="compensated" if rounded else "nearest",
                         input_range=src.input_range)
        extra.update(target.extras(Built(content, ops, vdir, opts.name, src.calibration,
                                         tuple(src.input_names))))
        m = build_manifest(src, v.target, v.quant, content, v.pruning, extra,
                           "probabilities" if logits is None else LOGITS)
        m.save(vdir / "manifest.json")
        metrics = verify(vdir, src.X, src.y, src.keras_probs, list(src.labels), opts.threads,
                         order=src.order)
    except (ModelLoadError, RuntimeError, ValueError) as exc:
        return Result(v.name, FAIL, vdir, len(content), gz, error=str(exc))
    metrics["evaluated_on"] = src.keras_ref["evaluated_on"]
    metrics["accuracy_drop_points"] = round(
        (src.keras_ref["accuracy"] - metrics["accuracy"]) * 100, 3)
    m.metrics = metrics
    try:  # held-out inputs and this artifact's own outputs on them, for the device's check
        m.selftest = write_selftest(vdir, Model(vdir, threads=opts.threads), src.X, src.y)
    except (ModelLoadError, RuntimeError, ValueError) as exc:
        return Result(v.name, FAIL, vdir, len(content), gz,
                      error=f"self-test vectors: {exc}")
    m.save(vdir / "manifest.json")
    return Result(v.name, status(metrics["accuracy_drop_points"], opts.max_drop), vdir,
                  len(content), gz, metrics)
