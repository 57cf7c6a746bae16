"""``vitaledge convert`` for emotion runs (ECG CNN-LSTM, multimodal hybrid, speech).

An emotion run directory (see README, "Emotion models") holds ``model.keras``,
``config.json`` (task, arch, labels, and the ``signal`` dict the device turns raw signals
into model inputs with) and ``data.npz`` (``calib_<input>`` calibration inputs,
``test_<input>`` held-out inputs, ``test_y``). Every artifact is verified through the
device runtime on the held-out inputs against the Keras model's own predictions.

Variants for models with an LSTM:

- ``cpu-fp32-fused``: the straight conversion, Keras LSTM -> fused
  ``UNIDIRECTIONAL_SEQUENCE_LSTM`` (not run by XNNPACK): the reference the speed-up is
  measured against.
- ``cpu-fp32`` / ``cpu-fp16`` / ``gpu-fp16``: the LSTM unrolled with its input projection
  hoisted into one matrix product (:mod:`.unroll`); same arithmetic, XNNPACK runs it.
- ``cpu-int8-fc``: the unrolled graph with its matrix products in int8 and everything
  else float: the deployed model (fastest on CPUs without fast int8 convolutions for
  one-channel inputs, and agreement with the seed-exact model is measured).
- ``cpu-int8``: full-integer, int8 in and out, recurrence included.

Edge TPU and TFLite Micro targets are refused for recurrent emotion models with the reason.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
from pathlib import Path

import numpy as np

from vitaledge import __version__
from vitaledge.device.eval.metrics import classification_metrics
from vitaledge.device.model.manifest import SCHEMA_VERSION, Manifest, input_key
from vitaledge.device.model.runtime import (
    ModelLoadError,
    get_backend,
    list_ops,
    make_interpreter,
    tensor_spec,
)
from vitaledge.train.backend import keras

from . import gpu
from .pipeline import DROP, FAIL, OK, ConvertOptions, Result, write_summary
from .quantize import to_tflite
from .unroll import UnrollError, lstm_layers, unrolled_function
from .verify import verify

EMOTION_TASKS = ("emotion-ecg", "emotion-multimodal", "emotion-speech")
# (target, quantization, unrolled?) in build order.
DEFAULT_VARIANTS = (("cpu", "none", False), ("cpu", "none", True), ("cpu", "fp16", True),
                    ("cpu", "int8-fc", True), ("cpu", "int8", True), ("gpu", "fp16", True))


class EmotionRunError(ValueError):
    """The run directory does not hold what an emotion conversion needs."""


def load_run(run_dir: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """``config.json`` and ``data.npz`` of an emotion run, checked against the contract."""
    try:
        cfg = json.loads((run_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EmotionRunError(f"{run_dir}/config.json: {exc}") from exc
    for key in ("task", "arch", "labels", "signal"):
        if key not in cfg:
            raise EmotionRunError(f"{run_dir}/config.json: missing {key!r}")
    if cfg["task"] not in EMOTION_TASKS:
        raise EmotionRunError(f"{run_dir}/config.json: task {cfg['task']!r} is not one of "
                              f"{EMOTION_TASKS}")
    try:
        with np.load(run_dir / "data.npz", allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise EmotionRunError(f"{run_dir}/data.npz: {exc}") from exc
    if "test_y" not in data:
        raise EmotionRunError(f"{run_dir}/data.npz: missing 'test_y'")
    return cfg, data


def _inputs(model: keras.Model, data: dict, prefix: str, where: Path) -> list[np.ndarray]:
    arrays = []
    for name in model.input_names:
        key = f"{prefix}_{name}"
        if key not in data:
            raise EmotionRunError(f"{where}/data.npz: missing {key!r} for model input {name!r}")
        arrays.append(data[key].astype(np.float32))
    return arrays


def _variants(opts: ConvertOptions, recurrent: bool) -> list[tuple[str, str, bool]]:
    """(target, quantization, unrolled) triples to build for these options."""
    targets = {"cpu", "gpu", "edgetpu", "micro"} if "all" in opts.targets else set(opts.targets)
    refused = sorted(targets & {"edgetpu", "micro"})
    if refused:
        print(f"skipping target(s) {', '.join(refused)}: emotion models are built for CPUs and "
              "GPUs (the Edge TPU maps no LSTM, and at millions of parameters they are far "
              "beyond a microcontroller's memory)")
    if recurrent:
        wanted = DEFAULT_VARIANTS
    else:
        wanted = tuple((t, q, False) for t, q, u in DEFAULT_VARIANTS if u or q != "none")
    out = [v for v in wanted if v[0] in targets and (opts.quant is None or v[1] == opts.quant)
           and (opts.fused_reference or not recurrent or v[2])]
    if not out:
        raise EmotionRunError(f"no emotion variant for targets {sorted(targets)} and "
                              f"quantization {opts.quant}")
    return out


def variant_name(target: str, quant: str, recurrent: bool, unrolled: bool) -> str:
    q = {"none": "fp32"}.get(quant, quant)
    return f"{target}-{q}" + ("-fused" if recurrent and not unrolled else "")


def _manifest(run_dir: Path, cfg: dict, target: str, quant: str, content: bytes,
              extra: dict, keras_ref: dict, input_names: list[str]) -> Manifest:
    interp = make_interpreter(content, get_backend(), threads=1, delegate="none")
    details = interp.get_input_details()
    by_name = {input_key(d["name"]): d for d in details}
    if len(details) == 1:
        specs = [tensor_spec(details[0])]
    elif set(input_names) <= set(by_name):
        specs = [tensor_spec(by_name[n]) for n in input_names]
    else:
        raise ModelLoadError(f"converted model inputs {sorted(by_name)} do not match the "
                             f"Keras inputs {input_names}")
    return Manifest(
        schema_version=SCHEMA_VERSION, task=cfg["task"], labels=list(cfg["labels"]),
        model_file="model.tflite", sha256=hashlib.sha256(content).hexdigest(),
        size_bytes=len(content), target=target, quantization=quant,
        input=specs[0], output=tensor_spec(interp.get_output_details()[0]),
        signal={"kind": cfg["task"], **cfg["signal"]}, pruning=None,
        source_run={"path": str(run_dir.resolve()), "arch": cfg["arch"],
                    "config_sha256": hashlib.sha256(
                        (run_dir / "config.json").read_bytes()).hexdigest(),
                    "keras": keras_ref},
        metrics={}, created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        vitaledge_version=__version__, extra=extra, extra_inputs=specs[1:])


def convert_emotion_run(run_dir: Path, out: Path, opts: ConvertOptions) -> list[Result]:
    """Build, verify and describe the emotion run's artifacts under ``out``."""
    run_dir, out = Path(run_dir), Path(out)
    if any(opts.sparsities):
        raise EmotionRunError("pruning is implemented for beat models; emotion runs are "
                              "converted unpruned (drop --prune)")
    cfg, data = load_run(run_dir)
    model = keras.models.load_model(str(run_dir / "model.keras"))
    labels = list(cfg["labels"])
    test = _inputs(model, data, "test", run_dir)
    calib = _inputs(model, data, "calib", run_dir)
    y = data["test_y"].astype(np.int64)
    multi = len(test) > 1
    keras_probs = model.predict(test if multi else test[0], verbose=0, batch_size=32)
    keras_pred = keras_probs.argmax(1)
    km = classification_metrics(y, keras_pred, labels)
    keras_ref = {"accuracy": km["accuracy"], "macro_f1": km["macro"]["f1"], "n": int(len(y)),
                 "evaluated_on": "test"}
    recurrent = bool(lstm_layers(model))
    print(f"keras model ({cfg['arch']}): accuracy {km['accuracy']:.4f} on {len(y)} held-out "
          f"windows; calibration set {len(calib[0])}")
    concrete = None
    if recurrent:
        try:
            concrete = unrolled_function(model)
        except UnrollError as exc:
            print(f"LSTM kept fused: {exc}")
            recurrent = False
    out.mkdir(parents=True, exist_ok=True)
    # The held-out inputs, for device-side checks (bench) without TensorFlow.
    np.savez_compressed(out / "heldout.npz", y=y,
                        signal=json.dumps({"kind": cfg["task"], **cfg["signal"]}),
                        **{f"X_{i}": a for i, a in enumerate(test)})  # input order
    results = []
    for target, quant, unroll in _variants(opts, recurrent):
        name = variant_name(target, quant, recurrent, unroll)
        vdir = out / name
        vdir.mkdir(parents=True, exist_ok=True)
        try:
            content = to_tflite(model, quant, calib if multi else calib[0],
                                concrete=concrete if unroll else None)
        except Exception as exc:  # converter errors are many and untyped
            results.append(Result(name, FAIL, vdir, error=f"conversion failed: {exc}"))
            continue
        (vdir / "model.tflite").write_bytes(content)
        gz = len(gzip.compress(content, 9))
        try:
            ops = list_ops(content)
            extra = {"gzip_bytes": gz, "ops": sorted({o["op"] for o in ops}),
                     "lstm": ("unrolled, input projection hoisted" if unroll else "fused")
                     if recurrent else "none"}
            if target == "gpu":
                extra["gpu"] = gpu.coverage(ops)
                (vdir / "gpu_ops.json").write_text(json.dumps(extra["gpu"], indent=2) + "\n")
            m = _manifest(run_dir, cfg, target, quant, content, extra, keras_ref,
                          list(model.input_names))
            m.save(vdir / "manifest.json")
            metrics = verify(vdir, test if multi else test[0], y, keras_probs, labels,
                             opts.threads)
        except (ModelLoadError, RuntimeError, ValueError) as exc:
            results.append(Result(name, FAIL, vdir, len(content), gz, error=str(exc)))
            continue
        metrics["evaluated_on"] = "test"
        metrics["accuracy_drop_points"] = round((keras_ref["accuracy"] - metrics["accuracy"])
                                                * 100, 3)
        m.metrics = metrics
        m.save(vdir / "manifest.json")
        status = OK if metrics["accuracy_drop_points"] <= opts.max_drop else DROP
        results.append(Result(name, status, vdir, len(content), gz, metrics))
    write_summary(out, results, keras_ref)
    return results
