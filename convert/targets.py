"""The conversion targets: one table, one entry per target.

Each :class:`Target` says which model families (and so which manifest tasks) it takes, the
device delegate it is built for, the quantizations it makes per family (accepted with
``--quant``, and built by default), and its extras hook: the files and manifest extras the
target adds beside ``model.tflite`` (Edge TPU compatibility report, GPU op coverage, C
source and tensor arena for microcontrollers). The table drives the checks
(:func:`resolve`), the variant builder's dispatch, the CLI's ``--target`` choices and the
README's target table (:func:`markdown`). Adding a target is one entry here plus its
extras function; ``tests/test_targets.py`` checks the table against the manifest schema.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitaledge.device.model.manifest import QUANTS, input_key
from vitaledge.device.model.runtime import get_backend, make_interpreter, quantize
from vitaledge.firmware_sim import tflm as micro

from . import edgetpu, gpu

#: How full-int8 conversion rounds Conv/Dense kernels: ``compensated`` (:mod:`.rounding`:
#: GPTQ on the calibration inputs, then the converter) or ``nearest`` (the converter's own).
#: Here, not in the quantizer (which loads TensorFlow), so the CLI's choices come from it.
WEIGHT_ROUNDINGS = ("compensated", "nearest")

#: Model families -> the manifest tasks they convert. A family has its own variant plan
#: (beat: sparsity x QAT x quantization; emotion: fused reference + unrolled LSTM).
@dataclass(frozen=True)
class Family:
    """A family of tasks converted alike: its tasks, and ``module:function`` that converts a
    run of it (``convert(run_dir, out, opts, before_writing)``), imported when a
    conversion starts. A new family is an entry here, and the variants its targets make."""

    tasks: tuple[str, ...]
    converter: str


FAMILIES: dict[str, Family] = {
    "beat": Family(("beat",), "vitaledge.convert.pipeline:convert_beat_run"),
    "emotion": Family(("emotion-ecg", "emotion-multimodal", "emotion-speech"),
                      "vitaledge.convert.emotion:convert_emotion_run"),
}


def family_of(task: str) -> str:
    """The family converting ``task``; ValueError naming the known tasks otherwise."""
    for name, fam in FAMILIES.items():
        if task in fam.tasks:
            return name
    known = [t for fam in FAMILIES.values() for t in fam.tasks]
    raise ValueError(f"task {task!r}: expected one of {known}")


def converter(task: str) -> Callable:
    """The function that converts a run of ``task`` (its family's converter)."""
    import importlib

    module, _, name = FAMILIES[family_of(task)].converter.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Quants:
    """Quantizations a target makes for one family: ``accepts`` (what ``--quant`` may ask
    for) and ``default`` (built, in this order, when ``--quant`` is not given)."""

    accepts: tuple[str, ...]
    default: tuple[str, ...]


@dataclass(frozen=True)
class Built:
    """What an extras hook gets: the converted model, its ops, its artifact directory, the
    C identifier prefix (``--name``) and the calibration inputs (a list in the order of
    ``input_names`` for a multi-input model)."""

    content: bytes
    ops: list[dict]
    dir: Path
    name: str
    calibration: np.ndarray | list[np.ndarray]
    input_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Target:
    name: str
    summary: str
    delegate: str                     # device runtime delegate the artifact is built for
    variants: dict[str, Quants]       # family -> quantizations it makes
    extras: Callable[[Built], dict]   # writes the target's files; returns manifest extras
    adds: str                         # what the extras are, for the docs
    logits: bool = False              # convert up to the logits (no final softmax)
    refusal: str = ""                 # why the families it does not take are refused

    @property
    def tasks(self) -> tuple[str, ...]:
        """The manifest tasks this target takes."""
        return tuple(t for fam in self.variants for t in FAMILIES[fam].tasks)


def _no_extras(built: Built) -> dict:
    return {}


def _edgetpu_extras(built: Built) -> dict:
    rep = edgetpu.compatibility(built.ops)
    rep["compiler"] = edgetpu.run_compiler(built.dir / "model.tflite", built.dir)
    (built.dir / "edgetpu_report.txt").write_text(edgetpu.format_report(rep))
    (built.dir / "edgetpu_report.json").write_text(json.dumps(rep, indent=2) + "\n")
    if rep["compiler"] is None:
        print("edgetpu: edgetpu_compiler not on PATH; wrote the rule-based report only")
    return {"edgetpu": {k: rep[k] for k in ("mapped", "total", "split_at", "fully_mapped")}}


def _gpu_extras(built: Built) -> dict:
    cov = gpu.coverage(built.ops)
    (built.dir / "gpu_ops.json").write_text(json.dumps(cov, indent=2) + "\n")
    return {"gpu": cov}


def micro_sample(content: bytes, rep, input_names=()):
    """One calibration input in the model's input dtype and shape (for arena search); for a
    multi-input model (``rep`` a list in the order of ``input_names``) a list with one per
    interpreter input, matched by name (the converter orders inputs its own way)."""
    interp = make_interpreter(content, get_backend(), threads=1, delegate="none")
    details = interp.get_input_details()
    if isinstance(rep, list | tuple):
        by_name = dict(zip(input_names, rep, strict=True))
        reps = [by_name[input_key(d["name"])] for d in details]
    else:
        reps = [rep]
    out = [quantize(np.asarray(r[:1], np.float32).reshape(d["shape"]), d["dtype"],
                    d["quantization"]) for r, d in zip(reps, details, strict=True)]
    return out if len(out) > 1 else out[0]


def _micro_extras(built: Built) -> dict:
    sample = micro_sample(built.content, built.calibration, built.input_names)
    names = micro.resolver_ops([o["op"] for o in built.ops])
    cc, h = micro.c_source(built.content, built.name, names)
    (built.dir / "model_data.cc").write_text(cc)
    (built.dir / "model_data.h").write_text(h)
    (built.dir / "op_resolver.cc").write_text(micro.resolver_source(names, built.name))
    arena = micro.measure_arena(built.content, sample)
    return {"micro": {"ops": names, "resolver": [micro.resolver_method(o) for o in names],
                      "arena_bytes": arena,
                      "c_array": f"{micro.c_identifier(built.name)}_model_data"}}


_EMOTION_REFUSAL = "emotion models are built for CPUs and GPUs"

TARGETS: dict[str, Target] = {
    t.name: t for t in (
        Target("cpu", "Raspberry Pi class CPUs, XNNPACK", "xnnpack",
               {"beat": Quants(("none", "int8", "dynamic", "fp16"), ("none", "int8")),
                "emotion": Quants(("none", "fp16", "int8-fc", "int8"),
                                  ("none", "fp16", "int8-fc", "int8"))},
               _no_extras, "verified under XNNPACK"),
        Target("edgetpu", "Coral Edge TPU (full int8)", "edgetpu",
               {"beat": Quants(("int8",), ("int8",))},
               _edgetpu_extras, "`edgetpu_report.txt/.json`: each op, mapped or not, where "
               "the graph splits; `edgetpu_compiler`'s log when it is on PATH",
               refusal=f"{_EMOTION_REFUSAL} (the Edge TPU maps no LSTM)"),
        Target("gpu", "GPU delegates (fp16)", "gpu",
               {"beat": Quants(("fp16", "none"), ("fp16",)),
                "emotion": Quants(("fp16",), ("fp16",))},
               _gpu_extras, "`gpu_ops.json`: ops the GPU delegate does not take"),
        Target("micro", "microcontrollers, TFLite Micro", "none",
               {"beat": Quants(("int8",), ("int8",))},
               _micro_extras, "`model_data.cc/.h`, `op_resolver.cc`, tensor arena measured "
               "with the tflite-micro interpreter; the model ends at the int8 logits",
               logits=True,
               refusal=f"{_EMOTION_REFUSAL} (at millions of parameters they are far beyond "
               "a microcontroller's memory)"),
    )
}


def choices() -> list[str]:
    """What ``--target`` takes: every target's name, and ``all``."""
    return [*TARGETS, "all"]


def quant_choices() -> list[str]:
    """What ``--quant`` takes: every quantization some target makes, in the manifest
    schema's order."""
    made = {a for t in TARGETS.values() for q in t.variants.values() for a in q.accepts}
    return [q for q in QUANTS if q in made]


def quant_defaults(family: str) -> str:
    """What each target makes for a ``family`` model without ``--quant`` (``--help``)."""
    return ", ".join(f"{t.name} {'+'.join(t.variants[family].default)}"
                     for t in TARGETS.values() if family in t.variants)


def resolve(targets: list[str], quant: str | None,
            family: str = "beat") -> list[tuple[str, str]]:
    """(target, quantization) pairs to build for a ``family`` model; ``all`` means every
    target. Targets that do not take the family are skipped with the reason printed."""
    names = list(TARGETS) if "all" in targets else list(targets)
    for name in names:
        if name not in TARGETS:
            raise ValueError(f"unknown target {name!r}; expected one of {list(TARGETS)} or all")
    refused = [TARGETS[n] for n in names if family not in TARGETS[n].variants]
    for t in refused:
        print(f"skipping target {t.name} for {family} models: {t.refusal}")
    pairs = []
    for name in names:
        q = TARGETS[name].variants.get(family)
        if q is None:
            continue
        if quant is None:
            pairs += [(name, v) for v in q.default]
        elif quant in q.accepts:
            pairs.append((name, quant))
        elif "all" not in targets:  # a named target was dropped without a word
            raise ValueError(f"target {name} takes quantization {'/'.join(q.accepts)}, "
                             f"not {quant}")
        else:
            print(f"skipping target {name}: it takes quantization {'/'.join(q.accepts)}, "
                  f"not {quant}")
    if not pairs:
        raise ValueError(f"no target of {names} makes {family} models"
                         + (f" with quantization {quant}" if quant else ""))
    return pairs


def variant_name(target: str, quant: str, sparsity: float = 0.0, qat: bool = False,
                 fused: bool = False) -> str:
    """``<target>-<quant>[-pruned<NN>][-qat][-fused]``; ``none`` is written ``fp32``."""
    q = {"none": "fp32"}.get(quant, quant)
    return (f"{target}-{q}" + (f"-pruned{int(round(sparsity * 100))}" if sparsity else "")
            + ("-qat" if qat else "") + ("-fused" if fused else ""))


def markdown() -> str:
    """The targets as a Markdown table (README, ``vitaledge convert --help`` docs)."""
    rows = ["| target | runs on | delegate | beat models: quantizations | emotion models | adds |",
            "|---|---|---|---|---|---|"]
    for t in TARGETS.values():
        def cell(fam, t=t):
            q = t.variants.get(fam)
            if q is None:
                return f"refused: {t.refusal}"
            more = [a for a in q.accepts if a not in q.default]
            return "+".join(q.default) + (f" (also {', '.join(more)})" if more else "")
        rows.append(f"| {t.name} | {t.summary} | {t.delegate} | {cell('beat')} | "
                    f"{cell('emotion')} | {t.adds} |")
    return "\n".join(rows)
