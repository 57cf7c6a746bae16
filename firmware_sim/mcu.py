"""The simulated microcontroller: does an int8 model run the same under TFLite Micro as
under LiteRT, and does it fit a given MCU's memory and beat deadline?

* Agreement: the artifact's int8 input, computed once per beat, goes through the
  ``tflite-micro`` Python interpreter (the MCU's kernels and allocator, x86 build) and
  through LiteRT; the int8 outputs (logits for the ``micro`` target's artifacts, which
  end before the softmax) are compared (argmax, difference in output steps) and every
  argmax mismatch is listed. Argmax ties go to the first (lowest-index) class, as numpy's
  argmax and a firmware loop with a strict ``>`` do; exact ties are counted.
* Memory: the tensor arena is measured by search (:func:`measure_arena`); RAM adds a
  sample ring buffer, a window buffer and the patient memory of the inputs and decision
  rules that keep earlier beats (the template's windows, the similar-beat vote's windows
  and outputs, as float32), flash adds op-kernel estimates to the model.
* Time: cycles are *estimated* from the model's multiply-accumulate count and the
  profile's cycles-per-MAC; a beat must be classified before the next one at 200 bpm.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np

from vitaledge.device.inputs.beat import BeatSignal
from vitaledge.device.io.beats import beats_from_dir
from vitaledge.device.io.heldout import read_heldout
from vitaledge.device.model.manifest import load_manifest
from vitaledge.device.model.runtime import Model, list_ops, ops_details
from vitaledge.firmware_sim.export import beat_models_only
from vitaledge.firmware_sim.tflm import measure_arena

from .profiles import FLASH_OTHER_OP, FLASH_PER_OP, FLASH_RUNTIME, McuProfile

DEADLINE_BPM = 200.0
RING_MARGIN_S = 0.5  # detector look-ahead (0.2 s) + filter and resampler reach, rounded up


def load_beats(data: str | Path, signal, n: int, seed: int = 0,
               n_labels: int | None = None) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """``n`` real beats (seeded choice, in order): the model's inputs (one array per input,
    in the manifest's order: the windows, and the RR features for a model with an ``rr``
    input), labels, and where each came from (``record:sample`` for WFDB, ``heldout#i`` for
    convert's heldout.npz). WFDB beats of an RR model are cut where the device's detector
    finds them, as the daemon cuts them. A heldout.npz's inputs must be finite and its
    labels below ``n_labels`` (the model's classes), as ``bench run`` requires."""
    if str(data).endswith(".npz"):
        held = read_heldout(data, n_labels)
        if held.signal.get("window") != signal.window.to_dict():
            raise ValueError(f"{data}: windows were made with another window spec")
        xs, y = list(held.inputs), held.y
        ids = [f"heldout#{i}" for i in range(len(y))]
    else:
        multi = len(signal.input_names()) > 1
        b = beats_from_dir(data, signal.window, anchor="detected" if multi else "annotated",
                           rr=signal.rr, template=signal.template)
        inputs = b.inputs()
        xs = [inputs[k] for k in signal.input_names()] if multi else [b.X]
        y = b.y
        ids = [f"{r}:{s}" for r, s in zip(b.record, b.sample, strict=True)]
    if len(y) == 0:
        raise ValueError(f"{data}: no beats")
    if len(xs) != len(signal.input_names()):
        raise ValueError(f"{data}: holds {len(xs)} inputs per beat, the model takes "
                         f"{signal.input_names()}")
    idx = np.sort(np.random.default_rng(seed).choice(len(y), min(n, len(y)), replace=False))
    return [x[idx] for x in xs], y[idx], [ids[i] for i in idx]


def _micro_order(model: Model) -> list[int]:
    """For each manifest input, its index among the interpreter's (and TFLite Micro's)
    subgraph inputs: the converter orders inputs its own way."""
    names = [d["name"] for d in model.interpreter.get_input_details()]
    return [names.index(spec.name) if spec.name in names else i
            for i, spec in enumerate(model.manifest.inputs)]


def mac_count(ops: list[dict]) -> tuple[int, list[dict]]:
    """Multiply-accumulates of one inference, total and per op (conv, depthwise, dense)."""
    per = []
    for op in ops:
        out = op["outputs"][0]["shape"] if op["outputs"] else []
        w = op["inputs"][1]["shape"] if len(op["inputs"]) > 1 else []
        name = op["op"]
        if name == "CONV_2D" and len(w) == 4:
            macs = math.prod(out[1:]) * math.prod(w[1:])
        elif name == "DEPTHWISE_CONV_2D" and len(w) == 4:
            macs = math.prod(out[1:]) * w[1] * w[2]
        elif name == "FULLY_CONNECTED" and len(w) == 2:
            macs = math.prod(out) * w[1]
        else:
            macs = 0
        per.append({"index": op["index"], "op": name, "macs": int(macs)})
    return sum(p["macs"] for p in per), per


def compare_runtimes(artifact: str | Path, X, ids: list[str], y: np.ndarray,
                     arena: int, delegates: tuple[str, ...] = ("none", "xnnpack")) -> dict:
    """TFLite Micro vs LiteRT on the same quantized inputs, once per LiteRT delegate
    (``none``: LiteRT's reference int8 kernels; ``xnnpack``: what the Pi runs)."""
    # intermediate tensors kept: the logits are read after invoke (LiteRT warns that this
    # is for debugging and costs memory: it is what this comparison is for)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
        models = {d: Model(artifact, delegate=d, preserve_tensors=True) for d in delegates}
    model = next(iter(models.values()))
    if model.manifest.input.dtype != "int8" or model.manifest.output.dtype != "int8":
        raise ValueError(f"{artifact}: not a full-integer int8 model "
                         f"(input {model.manifest.input.dtype}, output "
                         f"{model.manifest.output.dtype})")
    micro = _preserving_micro(Path(model.path).read_bytes(), arena)
    logit_idx = {d: _softmax_input(m.interpreter) for d, m in models.items()}
    xs = list(X) if isinstance(X, list | tuple) else [X]
    order = _micro_order(model)
    lite: dict[str, list] = {d: [] for d in delegates}
    lite_logits: dict[str, list] = {d: [] for d in delegates}
    tflm, tflm_logits = [], []
    for j in range(len(y)):
        xq = [model.quantize_input(np.asarray(x[j], np.float32).reshape(model.input_shapes[i]),
                                   i) for i, x in enumerate(xs)]
        for d, m in models.items():
            lite[d].append(np.array(m.invoke_raw(xq if len(xq) > 1 else xq[0])[0], np.int16))
            if logit_idx[d] is not None:
                lite_logits[d].append(np.array(m.interpreter.get_tensor(logit_idx[d]),
                                               np.int16).ravel())
        for i, q in enumerate(xq):
            micro.set_input(q, order[i])
        micro.invoke()
        tflm.append(np.array(micro.get_output(0)[0], np.int16))
        li = next((i for i in logit_idx.values() if i is not None), None)
        if li is not None:
            tflm_logits.append(np.array(micro.GetTensor(li, 0)["tensor_data"],
                                        np.int16).ravel())
    tflm_a = np.stack(tflm)
    ta, t_ties = tflm_a.argmax(1), exact_ties(tflm_a)
    labels = model.labels
    out = {"beats": int(len(y)), "output": model.output_kind,
           "argmax_ties": "first maximum (lowest class index)",
           "accuracy_tflm": float(np.mean(ta == y)), "ties_tflm": int(t_ties.sum()),
           "litert": {}}
    for d in delegates:
        lite_a = np.stack(lite[d])
        diff = np.abs(lite_a - tflm_a)
        la, l_ties = lite_a.argmax(1), exact_ties(lite_a)
        mism = [{"beat": ids[i], "label": labels[int(y[i])], "litert": labels[int(la[i])],
                 "tflm": labels[int(ta[i])], "litert_out": lite_a[i].tolist(),
                 "tflm_out": tflm_a[i].tolist(), "tie": bool(t_ties[i] or l_ties[i])}
                for i in np.flatnonzero(la != ta)]
        out["litert"][d] = {
            "runtime": f"{model.backend.name} {model.backend.version}, delegate {d}",
            "argmax_agreement": float(np.mean(la == ta)),
            "max_diff_steps": int(diff.max()),
            "beats_differing": int(np.count_nonzero(diff.max(1))),
            "beats_over_1_step": int(np.count_nonzero(diff.max(1) > 1)),
            "ties_litert": int(l_ties.sum()),
            "accuracy_litert": float(np.mean(la == y)), "mismatches": mism}
        if lite_logits[d] and tflm_logits:
            ld = np.abs(np.stack(lite_logits[d]) - np.stack(tflm_logits)).max(1)
            out["litert"][d].update(logits_max_diff_steps=int(ld.max()),
                                    logits_beats_differing=int(np.count_nonzero(ld)))
    return out


def exact_ties(scores: np.ndarray) -> np.ndarray:
    """Per row: is the largest score shared by two or more classes?"""
    return np.count_nonzero(scores == scores.max(1, keepdims=True), axis=1) > 1


def _softmax_input(interpreter) -> int | None:
    """Tensor index of the logits (the input of the final SOFTMAX) of an artifact that
    still ends in a softmax, when this interpreter runs that op itself (so the tensor is
    materialized); None for logits artifacts, whose output is already the logits."""
    ops = [o for o in ops_details(interpreter) if o["op_name"] == "SOFTMAX"]
    return int(ops[-1]["inputs"][0]) if ops else None


def _preserving_micro(content: bytes, arena: int):
    """A TFLite Micro interpreter that keeps every tensor readable (for the logits); its
    arena is larger than the measured one, which does not change any result."""
    from tflite_micro.python.tflite_micro import runtime

    size = max(4 * 1024 * 1024, 64 * arena)
    return runtime.Interpreter.from_bytes(
        content, arena_size=size,
        intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)  # sic: their spelling


def patient_memory(signal: BeatSignal, n_classes: int) -> dict:
    """Bytes of the earlier beats a beat model keeps per patient, float32: the template
    input's windows, the dominant-beat rule's own template's (its beats on time) and the
    similar-beat vote's windows and outputs (0 without them)."""
    length = signal.window.length
    tmpl, own, vote = signal.template, signal.rule_template(), signal.similar
    return {"template": 0 if tmpl is None else int(tmpl.beats) * length * 4,
            "dominant_template": 0 if own is None else int(own.beats) * length * 4,
            "similar_vote": 0 if vote is None else int(vote.beats) * (length + n_classes) * 4}


def memory_budget(content: bytes, ops: list[dict], arena: int, signal, n_classes: int,
                  input_fs: float, profile: McuProfile) -> dict:
    """RAM = arena + sample ring + window buffer + patient memory (:func:`patient_memory`);
    flash = model + runtime + op kernels."""
    spec = signal.window
    ring_s = spec.length / spec.fs + RING_MARGIN_S
    ring_samples = int(math.ceil(ring_s * input_fs))
    ring = ring_samples * (2 + 4)  # raw int16 + filtered float32 per sample
    window = spec.length * 4  # float32 window before it is quantized into the arena
    patient = patient_memory(signal, n_classes)
    kinds = sorted({op["op"] for op in ops})
    kernels = {k: FLASH_PER_OP.get(k, FLASH_OTHER_OP) for k in kinds}
    ram = arena + ring + window + sum(patient.values())
    flash = len(content) + FLASH_RUNTIME + sum(kernels.values())
    ram_avail = profile.ram_bytes - profile.reserved_ram
    flash_avail = profile.flash_bytes - profile.reserved_flash
    return {"arena_bytes": arena, "ring_buffer_bytes": ring, "ring_samples": ring_samples,
            "ring_seconds": round(ring_s, 3), "window_buffer_bytes": window,
            "patient_memory_bytes": patient,
            "ram_bytes": ram, "ram_available": ram_avail, "ram_fits": ram <= ram_avail,
            "model_bytes": len(content), "runtime_flash_estimate": FLASH_RUNTIME,
            "op_kernel_flash_estimate": kernels, "flash_bytes": flash,
            "flash_available": flash_avail, "flash_fits": flash <= flash_avail}


def timing_estimate(macs: int, profile: McuProfile, bpm: float = DEADLINE_BPM) -> dict:
    cycles = macs * profile.cycles_per_mac
    ms = cycles / profile.clock_hz * 1e3
    deadline = 60e3 / bpm
    return {"macs": macs, "cycles_estimate": int(cycles), "inference_ms_estimate": round(ms, 3),
            "deadline_ms": round(deadline, 1), "deadline_bpm": bpm,
            "meets_deadline": ms <= deadline, "cycles_per_mac": profile.cycles_per_mac,
            "basis": profile.mac_basis}


def simulate_mcu(artifact: str | Path, profile: McuProfile, data: str | Path, n_beats: int = 1000,
                 input_fs: float = 360.0, seed: int = 0,
                 delegates: tuple[str, ...] = ("none", "xnnpack")) -> dict:
    """Everything ``vitaledge firmware mcu`` reports, as a dict."""
    manifest, path = load_manifest(artifact)
    beat_models_only(artifact, manifest.task, "firmware mcu")
    content = path.read_bytes()
    X, y, ids = load_beats(data, manifest.signal, n_beats, seed, len(manifest.labels))
    problem = manifest.rows_problem(X)
    if problem:
        raise ValueError(f"{data}: {problem}")
    model = Model(artifact, delegate="none")
    order = _micro_order(model)
    sample = [None] * len(X)
    for i, x in enumerate(X):
        sample[order[i]] = model.quantize_input(
            np.asarray(x[0], np.float32).reshape(model.input_shapes[i]), i)
    arena = measure_arena(content, sample if len(sample) > 1 else sample[0])
    ops = list_ops(content)
    macs, per_op = mac_count(ops)
    return {"artifact": str(artifact), "profile": asdict(profile), "data": str(data),
            "agreement": compare_runtimes(artifact, X, ids, y, arena, delegates),
            "memory": memory_budget(content, ops, arena, manifest.signal, len(manifest.labels),
                                    input_fs, profile),
            "timing": timing_estimate(macs, profile), "ops": per_op}


def format_report(r: dict) -> str:
    a, m, t, p = r["agreement"], r["memory"], r["timing"], r["profile"]
    ok = {True: "yes", False: "NO"}
    lines = [
        f"{r['artifact']} on {p['name']} ({p['part']}, {p['core']} @ "
        f"{p['clock_hz'] / 1e6:.0f} MHz)",
        f"TFLite Micro vs LiteRT int8 on {a['beats']} real beats ({r['data']}); "
        f"TFLM accuracy {100 * a['accuracy_tflm']:.2f}%",
        f"output: int8 {a['output']}; argmax ties go to the {a['argmax_ties']}; "
        f"TFLM exact ties {a['ties_tflm']}",
    ]
    for c in a["litert"].values():
        lines += [
            f"  vs {c['runtime']}: argmax agreement {100 * c['argmax_agreement']:.2f}%, "
            f"largest output difference {c['max_diff_steps']} step(s), beats differing "
            f"{c['beats_differing']} (over 1 step: {c['beats_over_1_step']}), "
            f"LiteRT exact ties {c['ties_litert']}, mismatches {len(c['mismatches'])}"]
        if "logits_max_diff_steps" in c:
            lines += [f"    logits (softmax input): largest difference "
                      f"{c['logits_max_diff_steps']} step(s) on "
                      f"{c['logits_beats_differing']} beats"]
        lines += [f"    {x['beat']}: label {x['label']}  LiteRT {x['litert']} "
                  f"{x['litert_out']}  TFLM {x['tflm']} {x['tflm_out']}"
                  + ("  (exact tie)" if x["tie"] else "") for x in c["mismatches"]]
    kern = ", ".join(f"{k} {v // 1024} KB" for k, v in m["op_kernel_flash_estimate"].items())
    lines += [
        f"RAM   arena {m['arena_bytes']:,} (measured) + ring buffer {m['ring_buffer_bytes']:,} "
        f"({m['ring_samples']} samples) + window {m['window_buffer_bytes']:,}"
        + "".join(f" + {k.replace('_', ' ')} {v:,}"
                  for k, v in m.get("patient_memory_bytes", {}).items() if v)
        + " = "
        f"{m['ram_bytes']:,} B of {m['ram_available']:,} available "
        f"({p['ram_bytes'] // 1024} KB - {p['reserved_ram'] // 1024} KB reserved): "
        f"fits {ok[m['ram_fits']]}",
        f"flash model {m['model_bytes']:,} + runtime {m['runtime_flash_estimate']:,} (est.) + "
        f"kernels (est.: {kern}) = {m['flash_bytes']:,} B of {m['flash_available']:,} "
        f"available: fits {ok[m['flash_fits']]}",
        f"time  {t['macs']:,} MACs x {t['cycles_per_mac']} cycles/MAC = "
        f"{t['cycles_estimate']:,} cycles = {t['inference_ms_estimate']} ms (ESTIMATE); "
        f"deadline {t['deadline_ms']} ms at {t['deadline_bpm']:.0f} bpm: met "
        f"{ok[t['meets_deadline']]}",
        f"      basis: {t['basis']}",
    ]
    return "\n".join(lines)
