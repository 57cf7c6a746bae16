"""``vitaledge convert``: a training run -> verified TFLite artifacts, one directory each.

:func:`convert_run` reads the run's task and hands it to its family: beat models here,
emotion models in :mod:`.emotion`. For every requested sparsity (0 = unpruned) and
target/quantization pair (:func:`.targets.resolve`) a beat run gets one variant, built by
the shared :func:`.variants.build_variant`: converted from a batch-1 graph, written with
``manifest.json`` (plus the target's extras), loaded back through the device runtime and
evaluated on the run's held-out beats. An artifact whose accuracy falls more than
``max_drop`` points below the Keras model's is marked ❎.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from vitaledge.device.eval.metrics import classification_metrics
from vitaledge.device.io.aami import CLASSES
from vitaledge.device.io.heldout import write_heldout
from vitaledge.train.backend import keras
from vitaledge.train.config import BeatTrainConfig
from vitaledge.train.data import Prepared, check_split_ids, prepare
from vitaledge.train.decide import decide_beats
from vitaledge.train.predict import predict
from vitaledge.train.run_files import file_task

from .prune import PruneReport, prune
from .quantize import representative_windows
from .results import DROP, FAIL, OK, Result, table, write_summary
from .targets import converter, micro_sample, resolve, variant_name
from .variants import ConvertOptions, Source, Variant, build_variant


def convert_run(run_dir: Path, out: Path, opts: ConvertOptions,
                before_writing: Callable[[], None] | None = None) -> list[Result]:
    """Build, verify and describe every requested artifact of ``run_dir`` under ``out``.

    The run's ``task`` (config.json; ``beat`` when absent) picks the family and its
    converter (:data:`.targets.FAMILIES`): beat runs are converted here
    (:func:`convert_beat_run`), emotion runs by :func:`.emotion.convert_emotion_run`.
    ``before_writing`` is called once every option has been checked against the run and
    before anything is written to ``out`` (``convert --overwrite`` sets the earlier
    conversion there aside then, so a refused option leaves it as it was).
    """
    run_dir, out = Path(run_dir), Path(out)
    return converter(file_task(run_dir / "config.json"))(run_dir, out, opts, before_writing)


def convert_beat_run(run_dir: Path, out: Path, opts: ConvertOptions,
                     before_writing: Callable[[], None] | None = None) -> list[Result]:
    """The beat family: every sparsity x (target, quantization) pair, QAT when asked."""
    cfg = BeatTrainConfig.load(run_dir / "config.json")
    if cfg.records and not Path(cfg.records).is_dir():
        raise ValueError(f"{run_dir}/config.json: the run's record directory {cfg.records!r} "
                         "(as given to train, relative to where that ran) is not a directory "
                         "here; convert reads the run's beats again from it: run convert "
                         "from that folder")
    pairs = resolve(opts.targets, opts.quant, "beat")
    if opts.qat and not any(q == "int8" for _, q in pairs):  # fine-tuned, then unused
        raise ValueError(f"--qat fine-tunes for full int8, which none of {pairs} is: give a "
                         "target that makes int8 (cpu, edgetpu, micro), or leave --qat out")
    base = keras.models.load_model(str(run_dir / "model.keras"))
    p: Prepared = prepare(cfg)
    check_split_ids(run_dir / "splits.npz", p.train, p.val, p.test)
    held, held_name = (p.test, "test") if len(p.test) else (p.val, "validation")
    names = list(base.input_names)
    keras_probs = predict(base, held.inputs())
    beat_signal = cfg.beat_signal()
    keras_pred = decide_beats(beat_signal, keras_probs, held)
    keras_acc = float(np.mean(keras_pred == held.y))
    keras_ref = {"accuracy": keras_acc, "macro_f1": classification_metrics(
        held.y, keras_pred, list(CLASSES))["macro"]["f1"], "n": int(len(held.y)),
        "evaluated_on": held_name}
    rep = representative_windows(p.train, opts.representative_size, cfg.seed, names)
    print(f"keras model: accuracy {keras_acc:.4f} on {len(held.y)} held-out {held_name} beats; "
          f"calibration set {len(rep[0] if isinstance(rep, list) else rep)} windows")
    signal = beat_signal.to_dict()
    held_inputs = held.inputs()
    X = [held_inputs[k] for k in names] if isinstance(held_inputs, dict) else held.X
    src = Source(run_dir=run_dir, task="beat", labels=list(CLASSES), signal=signal,
                 arch=cfg.arch, input_names=names, calibration=rep,
                 X=X, y=held.y, keras_probs=keras_probs, keras_ref=keras_ref,
                 order={"groups": held.record, "times": held.sample})
    results: list[Result] = []
    if before_writing is not None:
        before_writing()
    out.mkdir(parents=True, exist_ok=True)
    # The held-out windows, for device-side checks (bench --data) without TensorFlow.
    write_heldout(out / "heldout.npz", X, held.y, src.signal, held.record, held.sample)
    for s in opts.sparsities:
        model, pruning = base, None
        if s:
            print(f"\npruning to {s:.0%} sparsity (--prune-epochs {opts.prune_epochs}, more "
                  "if the training windows are few)")
            model, report = prune(base, p.X_fit, p.y_fit, (p.val.inputs(), p.val.y), s,
                                  epochs=opts.prune_epochs, class_weight=p.class_weight,
                                  log_dir=run_dir / "logs" / f"pruning-{int(s * 100)}")
            pruning = report.to_dict()
            print(f"measured sparsity {report.overall:.3f} over {report.pruned_weights:,} "
                  "kernel weights")
        qmodel = None
        if opts.qat:
            from .qat import quantization_aware

            qmodel = quantization_aware(model, p)
        for target, quant in pairs:
            # the fake-quantized network is for int8 only: a float artifact from it would be
            # another model under the plain name
            q = qmodel is not None and quant == "int8"
            results.append(build_variant(src, Variant(
                variant_name(target, quant, s, q), target, quant, qmodel if q else model,
                pruning=pruning, extra={"qat": q}), out, opts))
    write_summary(out, results, keras_ref)
    return results


__all__ = ["ConvertOptions", "Result", "convert_run", "convert_beat_run", "PruneReport",
           "OK", "DROP", "FAIL", "table", "micro_sample"]
