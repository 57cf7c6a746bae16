"""``vitaledge convert`` for emotion runs (ECG CNN-LSTM, multimodal hybrid, speech).

An emotion run directory (see docs/convert.md, "Emotion runs") holds ``model.keras``,
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

The target table (:mod:`.targets`) says which quantizations each target makes for emotion
models; Edge TPU and TFLite Micro refuse them, with the reason printed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vitaledge.device.eval.metrics import classification_metrics
from vitaledge.device.io.heldout import read_npz, write_heldout
from vitaledge.device.model.manifest import SIGNAL_SPECS
from vitaledge.train.backend import keras
from vitaledge.train.run_files import check_heldout

from .results import Result, write_summary
from .targets import FAMILIES, resolve, variant_name
from .unroll import UnrollError, lstm_layers, unrolled_function
from .variants import ConvertOptions, Source, Variant, build_variant

EMOTION_TASKS = FAMILIES["emotion"].tasks

#: The full-int8 input range per task (``to_tflite``'s ``input_range``), min/max otherwise.
#: Speech: the log-mel images are standardized per utterance, so their extremes are a
#: handful of values 4-6 deviations out (0.005 % beyond about -2.8 and +3.9) that the
#: min/max range spends a third of the 256 steps on; once the weights are rounded with
#: compensation the input's rounding is the largest error left. cnn_speech, 4 speaker folds
#: (240 held-out clips each), compensated rounding, min/max -> ``mse``: agreement with
#: Keras 0.983 -> 0.996, 0.988 -> 0.988, 0.971 -> 0.983, 0.992 -> 0.983, accuracy below
#: Keras 1.25 -> 0.42, -0.42 -> 0, 1.25 -> 0.42, 0.42 -> 0.83 points; final model (120
#: clips) 0.967 -> 0.992, 3.3 -> 0.8 points. With nearest rounding the range alone does
#: nothing (agreement 0.867, 0.954, 0.950, 0.963).
INPUT_RANGE = {"emotion-speech": "mse"}


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
    try:  # the manifest's signal spec, checked before anything is converted
        SIGNAL_SPECS[cfg["task"]].from_dict({"kind": cfg["task"], **cfg["signal"]})
    except (TypeError, ValueError) as exc:
        raise EmotionRunError(f"{run_dir}/config.json: {exc}") from exc
    try:
        data = read_npz(run_dir / "data.npz")
        check_heldout(run_dir / "data.npz", data, len(cfg["labels"]), calib=True)
    except ValueError as exc:
        raise EmotionRunError(str(exc)) from exc
    return cfg, data


def _inputs(model: keras.Model, data: dict, prefix: str, where: Path) -> list[np.ndarray]:
    arrays = []
    for name in model.input_names:
        key = f"{prefix}_{name}"
        if key not in data:
            raise EmotionRunError(f"{where}/data.npz: missing {key!r} for model input {name!r}")
        arrays.append(data[key].astype(np.float32))
    return arrays


def _variants(model: keras.Model, opts: ConvertOptions, recurrent: bool,
              concrete) -> list[Variant]:
    """The variants to build: each (target, quantization) the table gives emotion models,
    from the unrolled graph when the model is recurrent; the fused-LSTM conversion of the
    fp32 one first, as the speed reference, unless ``opts.fused_reference`` is off."""
    lstm = {True: "unrolled, input projection hoisted", False: "fused"}
    out = []
    for target, quant in resolve(opts.targets, opts.quant, "emotion"):
        if recurrent and quant == "none" and opts.fused_reference:
            out.append(Variant(variant_name(target, quant, fused=True), target, quant, model,
                               extra={"lstm": lstm[False]}))
        out.append(Variant(variant_name(target, quant), target, quant, model,
                           concrete=concrete if recurrent else None,
                           extra={"lstm": lstm[True] if recurrent else "none"}))
    return out


def convert_emotion_run(run_dir: Path, out: Path, opts: ConvertOptions,
                        before_writing: Callable[[], None] | None = None) -> list[Result]:
    """Build, verify and describe the emotion run's artifacts under ``out``
    (``before_writing``: as :func:`.pipeline.convert_run`)."""
    run_dir, out = Path(run_dir), Path(out)
    if any(opts.sparsities):
        raise EmotionRunError("pruning is implemented for beat models; emotion runs are "
                              "converted unpruned (drop --prune)")
    if opts.qat:  # it was ignored: the plain int8 artifact came out under its own name
        raise EmotionRunError("quantization-aware training is implemented for beat models; "
                              "emotion runs are quantized after training (drop --qat)")
    cfg, data = load_run(run_dir)
    model = keras.models.load_model(str(run_dir / "model.keras"))
    labels = list(cfg["labels"])
    if model.output_shape[-1] != len(labels):  # found only after converting, with the
        # artifact left behind
        raise EmotionRunError(f"{run_dir}/config.json: labels {labels} are {len(labels)}; "
                              f"the model gives {model.output_shape[-1]} outputs")
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
    variants = _variants(model, opts, recurrent, concrete)
    src = Source(run_dir=run_dir, task=cfg["task"], labels=labels,
                 signal={"kind": cfg["task"], **cfg["signal"]}, arch=cfg["arch"],
                 input_names=list(model.input_names),
                 calibration=calib if multi else calib[0], X=test if multi else test[0],
                 y=y, keras_probs=keras_probs, keras_ref=keras_ref,
                 input_range=INPUT_RANGE.get(cfg["task"], "minmax"))
    if before_writing is not None:
        before_writing()
    out.mkdir(parents=True, exist_ok=True)
    # The held-out inputs, for device-side checks (bench) without TensorFlow.
    write_heldout(out / "heldout.npz", test, y, src.signal)  # the Keras input order
    results = [build_variant(src, v, out, opts) for v in variants]
    write_summary(out, results, keras_ref)
    return results
