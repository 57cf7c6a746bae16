"""Edge TPU compatibility: which ops the Edge TPU maps, and where the graph splits.

The rules are Coral's published model requirements: 8-bit quantized tensors, static
shapes, at most three non-unit dimensions per activation tensor (only the three innermost
may be > 1; a convolution's constant filter is [out, h, w, in]), and the supported-operation
list. The compiler maps the graph up to the first op it
cannot map; that op and everything after run on the CPU. When ``edgetpu_compiler`` is on
PATH it is run and its log is parsed into the report.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

SUPPORTED = {
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
    "FULLY_CONNECTED", "L2_NORMALIZATION", "LOGISTIC", "LSTM",
    "UNIDIRECTIONAL_SEQUENCE_LSTM", "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL",
    "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6",
    "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE",
    "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM",
    "SQUARED_DIFFERENCE", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
}


#: The inputs of weighted ops that are activations (the rest are constant filters and
#: biases). Coral's rank rule is about activations: a CONV_2D filter is [out, h, w, in],
#: its out-channel count always > 1, and the compiler maps such convolutions (every
#: MobileNet is made of them); applied to the filter it split every Conv1D model at its
#: first convolution.
ACTIVATION_INPUTS = {"CONV_2D": (0,), "DEPTHWISE_CONV_2D": (0,), "FULLY_CONNECTED": (0,),
                     "TRANSPOSE_CONV": (2,)}


def _shape_checked(op: dict) -> list[dict]:
    """The tensors of ``op`` the rank rule applies to: its activations."""
    keep = ACTIVATION_INPUTS.get(op["op"])
    inputs = op["inputs"] if keep is None else [op["inputs"][i] for i in keep
                                                 if i < len(op["inputs"])]
    return inputs + op["outputs"]


def _tensor_problem(t: dict, rank: bool = True) -> str | None:
    if t["dtype"] not in ("int8", "uint8", "int32"):
        return f"tensor dtype {t['dtype']} is not 8-bit quantized"
    shape = t["shape"]
    outer = shape[:-3]
    if rank and any(d > 1 for d in outer):
        return f"tensor shape {shape} has a dimension > 1 outside the three innermost"
    return None


def compatibility(ops: list[dict]) -> dict:
    """Per-op mapping report from :func:`vitaledge.device.model.runtime.list_ops` output."""
    rows, split_at = [], None
    for o in ops:
        reason = None if o["op"] in SUPPORTED else "operation not supported by the Edge TPU"
        if reason is None:
            activations = {id(t) for t in _shape_checked(o)}
            for t in o["inputs"] + o["outputs"]:
                # int32 only for biases; activations must be 8-bit
                if t["dtype"] == "int32" and len(t["shape"]) > 1:
                    reason = "int32 activation tensor"
                    break
                reason = _tensor_problem(t, rank=id(t) in activations)
                if reason:
                    break
        if reason and split_at is None:
            split_at = o["index"]
        where = "edgetpu" if split_at is None else "cpu"
        rows.append({"index": o["index"], "op": o["op"], "supported": reason is None,
                     "runs_on": where, "reason": reason})
    n_tpu = sum(r["runs_on"] == "edgetpu" for r in rows)
    return {"ops": rows, "mapped": n_tpu, "total": len(rows), "split_at": split_at,
            "fully_mapped": split_at is None, "compiler": None}


def run_compiler(model_path: Path, out_dir: Path) -> dict | None:
    """Run ``edgetpu_compiler`` if installed; return its parsed summary, or None."""
    exe = shutil.which("edgetpu_compiler")
    if exe is None:
        return None
    proc = subprocess.run([exe, "-s", "-o", str(out_dir), str(model_path)], capture_output=True,
                          text=True, timeout=600)
    log = proc.stdout + proc.stderr
    summary = {"returncode": proc.returncode, "log": log, "ops": []}
    m = re.search(r"Number of operations that will run on Edge TPU:\s*(\d+)", log)
    if m:
        summary["mapped"] = int(m.group(1))
    m = re.search(r"Number of operations that will run on CPU:\s*(\d+)", log)
    if m:
        summary["on_cpu"] = int(m.group(1))
    for line in log.splitlines():
        cells = [c.strip() for c in re.split(r"\s{2,}", line.strip()) if c.strip()]
        if len(cells) >= 3 and cells[1].isdigit():
            summary["ops"].append({"op": cells[0], "count": int(cells[1]),
                                   "status": " ".join(cells[2:])})
    return summary


def format_report(rep: dict) -> str:
    lines = [f"Edge TPU: {rep['mapped']} of {rep['total']} ops mapped"
             + ("" if rep["fully_mapped"] else f"; graph splits onto the CPU at op "
                f"#{rep['split_at']}"), ""]
    lines.append(f"{'#':>4}  {'op':<28}{'supported':<11}{'runs on':<9}reason")
    for r in rep["ops"]:
        lines.append(f"{r['index']:>4}  {r['op']:<28}{'yes' if r['supported'] else 'no':<11}"
                     f"{r['runs_on']:<9}{r['reason'] or ''}")
    if rep["compiler"] is None:
        lines += ["", "edgetpu_compiler is not on PATH: this report applies Coral's published "
                  "rules; install the compiler (Debian/x86-64 only) to have it checked."]
    else:
        lines += ["", "edgetpu_compiler log:", rep["compiler"].get("log", "")]
    return "\n".join(lines) + "\n"
