"""``vitaledge convert``: a training run -> verified TFLite artifacts, one directory each.

For every requested sparsity (0 = unpruned) and target/quantization pair: convert from a
batch-1 graph, write ``model.tflite`` and ``manifest.json`` (plus the target's extras),
load it back through the device runtime, evaluate it on the run's held-out beats and record
the figures in the manifest. An artifact whose accuracy falls more than ``max_drop``
points below the Keras model's is marked ❎.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitaledge import __version__
from vitaledge.device.eval.metrics import classification_metrics
from vitaledge.device.io.aami import CLASSES
from vitaledge.device.model.manifest import SCHEMA_VERSION, Manifest
from vitaledge.device.model.runtime import (
    ModelLoadError,
    get_backend,
    list_ops,
    make_interpreter,
    quantize,
    tensor_spec,
)
from vitaledge.firmware_sim import tflm as micro
from vitaledge.train.backend import keras
from vitaledge.train.config import BeatTrainConfig
from vitaledge.train.data import Prepared, check_split_ids, prepare
from vitaledge.train.predict import predict

from . import edgetpu, gpu
from .logits import LOGITS, logits_model
from .prune import PruneReport, prune
from .quantize import representative_windows, to_tflite
from .targets import resolve, variant_name
from .verify import verify

OK, DROP, FAIL = "✅", "❎", "❌"


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


@dataclass
class Result:
    variant: str
    status: str
    path: Path
    size_bytes: int = 0
    gzip_bytes: int = 0
    metrics: dict = field(default_factory=dict)
    error: str = ""


def _manifest(run_dir: Path, cfg: BeatTrainConfig, target: str, quant: str, content: bytes,
              model_file: str, pruning: dict | None, extra: dict, keras_ref: dict) -> Manifest:
    interp = make_interpreter(content, get_backend(), threads=1, delegate="none")
    return Manifest(
        schema_version=SCHEMA_VERSION, task="beat", labels=list(CLASSES),
        model_file=model_file, sha256=hashlib.sha256(content).hexdigest(),
        size_bytes=len(content), target=target, quantization=quant,
        input=tensor_spec(interp.get_input_details()[0]),
        output=tensor_spec(interp.get_output_details()[0]),
        signal={"kind": "beat", "window": cfg.window.to_dict(), "lead": cfg.lead},
        pruning=pruning,
        source_run={"path": str(run_dir.resolve()), "arch": cfg.arch,
                    "config_sha256": hashlib.sha256(
                        (run_dir / "config.json").read_bytes()).hexdigest(),
                    "keras": keras_ref},
        metrics={}, created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        vitaledge_version=__version__, extra=extra)


def _target_extras(target: str, content: bytes, ops: list[dict], out: Path, name: str,
                   sample: np.ndarray | None) -> dict:
    if target == "edgetpu":
        rep = edgetpu.compatibility(ops)
        rep["compiler"] = edgetpu.run_compiler(out / "model.tflite", out)
        text = edgetpu.format_report(rep)
        (out / "edgetpu_report.txt").write_text(text)
        (out / "edgetpu_report.json").write_text(json.dumps(rep, indent=2) + "\n")
        if rep["compiler"] is None:
            print("edgetpu: edgetpu_compiler not on PATH; wrote the rule-based report only")
        return {"edgetpu": {k: rep[k] for k in ("mapped", "total", "split_at",
                                                  "fully_mapped")}}
    if target == "gpu":
        cov = gpu.coverage(ops)
        (out / "gpu_ops.json").write_text(json.dumps(cov, indent=2) + "\n")
        return {"gpu": cov}
    if target == "micro":
        names = micro.resolver_ops([o["op"] for o in ops])
        cc, h = micro.c_source(content, name, names)
        (out / "model_data.cc").write_text(cc)
        (out / "model_data.h").write_text(h)
        (out / "op_resolver.cc").write_text(micro.resolver_source(names, name))
        arena = micro.measure_arena(content, sample)
        return {"micro": {"ops": names, "resolver": [micro.resolver_method(o) for o in names],
                          "arena_bytes": arena, "c_array": f"{micro.c_identifier(name)}"
                                                            "_model_data"}}
    return {}


def convert_run(run_dir: Path, out: Path, opts: ConvertOptions) -> list[Result]:
    """Build, verify and describe every requested artifact of ``run_dir`` under ``out``.

    Emotion runs (``task`` other than ``beat`` in config.json) go to
    :func:`.emotion.convert_emotion_run`.
    """
    run_dir, out = Path(run_dir), Path(out)
    try:
        task = json.loads((run_dir / "config.json").read_text()).get("task", "beat")
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise ValueError(f"{run_dir}/config.json: cannot read the run's config: {exc}") from exc
    if task != "beat":
        from .emotion import convert_emotion_run

        return convert_emotion_run(run_dir, out, opts)
    cfg = BeatTrainConfig.load(run_dir / "config.json")
    pairs = resolve(opts.targets, opts.quant)
    base = keras.models.load_model(str(run_dir / "model.keras"))
    p: Prepared = prepare(cfg)
    check_split_ids(run_dir / "splits.npz", p.train, p.val, p.test)
    held, held_name = (p.test, "test") if len(p.test) else (p.val, "validation")
    keras_probs = predict(base, held.X)
    keras_pred = keras_probs.argmax(1)
    keras_acc = float(np.mean(keras_pred == held.y))
    keras_ref = {"accuracy": keras_acc, "macro_f1": classification_metrics(
        held.y, keras_pred, list(CLASSES))["macro"]["f1"], "n": int(len(held.y)),
        "evaluated_on": held_name}
    rep = representative_windows(p.train, opts.representative_size, cfg.seed)
    print(f"keras model: accuracy {keras_acc:.4f} on {len(held.y)} held-out {held_name} beats; "
          f"calibration set {len(rep)} windows")
    results: list[Result] = []
    out.mkdir(parents=True, exist_ok=True)
    # The held-out windows, for device-side checks (bench --data) without TensorFlow.
    np.savez_compressed(out / "heldout.npz", X=held.X.astype(np.float32), y=held.y,
                        window=json.dumps(cfg.window.to_dict()))
    for s in opts.sparsities:
        model, pruning = base, None
        if s:
            print(f"\npruning to {s:.0%} sparsity ({opts.prune_epochs} fine-tuning epochs)")
            model, report = prune(base, p.X_fit, p.y_fit, (p.val.X[..., None], p.val.y), s,
                                  epochs=opts.prune_epochs, class_weight=p.class_weight,
                                  log_dir=run_dir / "logs" / f"pruning-{int(s * 100)}")
            pruning = report.to_dict()
            print(f"measured sparsity {report.overall:.3f} over {report.pruned_weights:,} "
                  "kernel weights")
        qat = False
        if opts.qat:
            from .qat import quantization_aware

            qmodel = quantization_aware(model, p)
            qat = qmodel is not None
            model = qmodel or model
        for target, quant in pairs:
            name = variant_name(target, quant, s, qat and quant == "int8")
            results.append(_build_variant(run_dir, cfg, model, target, quant, name, out / name,
                                          rep, pruning, keras_ref, held, keras_probs, opts))
    write_summary(out, results, keras_ref)
    return results


def _build_variant(run_dir, cfg, model, target, quant, name, vdir: Path, rep, pruning,
                   keras_ref, held, keras_probs, opts: ConvertOptions) -> Result:
    vdir.mkdir(parents=True, exist_ok=True)
    # micro: the class is the argmax, so the artifact ends at the logits (convert/logits.py)
    logits = logits_model(model) if target == "micro" else None
    if target == "micro" and logits is None:
        print(f"{name}: no final softmax layer found to remove; the output stays probabilities")
    try:
        content = to_tflite(model if logits is None else logits, quant, rep)
    except Exception as exc:  # converter errors are many and untyped
        return Result(name, FAIL, vdir, error=f"conversion failed: {exc}")
    (vdir / "model.tflite").write_bytes(content)
    gz = len(gzip.compress(content, 9))
    try:
        ops = list_ops(content)
        sample = micro_sample(content, rep) if target == "micro" else None
        extra = {"gzip_bytes": gz, "ops": sorted({o["op"] for o in ops}),
                 "qat": name.endswith("-qat")}
        if logits is not None:
            extra["output"] = LOGITS
        extra.update(_target_extras(target, content, ops, vdir, opts.name, sample))
        m = _manifest(run_dir, cfg, target, quant, content, "model.tflite", pruning, extra,
                      keras_ref)
        m.save(vdir / "manifest.json")
        metrics = verify(vdir, held.X, held.y, keras_probs, list(CLASSES), opts.threads)
    except (ModelLoadError, RuntimeError, ValueError) as exc:
        return Result(name, FAIL, vdir, len(content), gz, error=str(exc))
    metrics["evaluated_on"] = keras_ref["evaluated_on"]
    metrics["accuracy_drop_points"] = round((keras_ref["accuracy"] - metrics["accuracy"]) * 100,
                                            3)
    m.metrics = metrics
    m.save(vdir / "manifest.json")
    status = OK if metrics["accuracy_drop_points"] <= opts.max_drop else DROP
    return Result(name, status, vdir, len(content), gz, metrics)


def micro_sample(content: bytes, rep: np.ndarray) -> np.ndarray:
    """One calibration window in the model's input dtype and shape (for arena search)."""
    interp = make_interpreter(content, get_backend(), threads=1, delegate="none")
    d = interp.get_input_details()[0]
    return quantize(rep[:1].reshape(d["shape"]).astype(np.float32), d["dtype"],
                    d["quantization"])


def table(results: list[Result], keras_ref: dict) -> str:
    """Ultralytics-style summary: format, status, size, accuracy, agreement, latency."""
    head = (f"{'format':<24}{'status':<8}{'size KB':>9}{'gzip KB':>9}{'sparsity':>9}"
            f"{'accuracy':>10}{'macro F1':>10}{'agree':>8}{'max dp':>8}{'ms':>8}")
    lines = [head, f"{'keras (source)':<24}{OK:<8}{'':>9}{'':>9}{'':>9}"
             f"{keras_ref['accuracy']:>10.4f}{keras_ref['macro_f1']:>10.4f}"]
    for r in results:
        if r.status == FAIL:
            lines.append(f"{r.variant:<24}{r.status:<8}  {r.error[:100]}")
            continue
        m = r.metrics
        sp = ""
        mpath = r.path / "manifest.json"
        if mpath.exists():
            pr = json.loads(mpath.read_text()).get("pruning")
            sp = f"{pr['measured_sparsity']:.2f}" if pr else ""
        lines.append(f"{r.variant:<24}{r.status:<8}{r.size_bytes / 1024:>9.1f}"
                     f"{r.gzip_bytes / 1024:>9.1f}{sp:>9}{m['accuracy']:>10.4f}"
                     f"{m['macro_f1']:>10.4f}{m['agreement_with_keras']:>8.4f}"
                     f"{m['max_prob_diff']:>8.4f}{m['latency_ms_median']:>8.3f}")
    return "\n".join(lines)


def write_summary(out: Path, results: list[Result], keras_ref: dict) -> None:
    summary = {"keras": keras_ref, "artifacts": [
        {"variant": r.variant, "status": r.status, "path": str(r.path), "size_bytes":
         r.size_bytes, "gzip_bytes": r.gzip_bytes, "metrics": r.metrics, "error": r.error}
        for r in results]}
    (out / "convert_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = table(results, keras_ref)
    (out / "convert_summary.txt").write_text(text + "\n")
    print("\n" + text)


__all__ = ["ConvertOptions", "Result", "convert_run", "PruneReport", "OK", "DROP", "FAIL"]
