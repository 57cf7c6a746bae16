"""``vitaledge firmware export``: what a firmware engineer needs to run an int8 artifact
under TFLite Micro: the model as a C array, the op resolver, a config header, a README."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from vitaledge.device.dsp.rr import MIN_IRREGULAR
from vitaledge.device.inputs.beat import BeatSignal
from vitaledge.device.model.manifest import input_key, load_manifest
from vitaledge.device.model.runtime import get_backend, list_ops, make_interpreter
from vitaledge.firmware_sim.tflm import (
    c_identifier,
    c_source,
    measure_arena,
    resolver_ops,
    resolver_source,
)

ARENA_HEADROOM = 1.1  # the measured minimum plus 10 %, rounded up to 16 bytes


def _input_macros(ident: str, m, order: list[int]) -> list[str]:
    """Per model input: its TFLite Micro input index, length, scale and zero point, named
    after the input (``BEAT``, ``RR``), so a multi-input model's every input is quantized
    with its own parameters; the RR feature order and spec as a comment."""
    lines = []
    for spec, idx in zip(m.inputs, order, strict=True):
        key = f"{ident.upper()}_{c_identifier(input_key(spec.name)).upper()}"
        q = spec.quantization
        lines += [f"#define {key}_INPUT_INDEX {idx}",
                  f"#define {key}_LENGTH {int(np.prod(spec.shape[1:]))}"]
        if q:
            lines += [f"#define {key}_SCALE {q.scale!r}f",
                      f"#define {key}_ZERO_POINT {q.zero_point}"]
    rr = beat_signal(m).rr
    if rr is not None:
        d = rr.to_dict()
        lines.append(f"// RR input, in this order (seconds; *_rel divided by long_rr): "
                     f"{', '.join(d['features'])}; local_beats {d['local_beats']}, long_s "
                     f"{d['long_s']}, RR clipped to [{d['min_rr_s']}, {d['max_rr_s']}] s "
                     "(vitaledge.device.dsp.rr)")
        if "irregularity" in d["features"]:
            lines.append(f"// irregularity: median |difference of successive RR intervals| over "
                         f"the last {d['irregular_beats']} clipped intervals before the beat "
                         f"(not its own pre_rr; only those within long_s), divided by their "
                         f"mean; 0 with fewer than {MIN_IRREGULAR} intervals")
    tmpl = beat_signal(m).template
    if tmpl is not None:
        lines += ["// template input: the sample-wise median of the (float, unquantized) beat "
                  "windows of up to TEMPLATE_BEATS previous beats, fewer at the start of a "
                  "stream; the first beat is its own template (vitaledge.device.dsp.template)",
                  f"#define {ident.upper()}_TEMPLATE_BEATS {int(tmpl.beats)}"]
    return (lines + _similar_macros(ident, m) + _premature_macros(ident, m)
            + _fusion_macros(ident, m) + _dominant_macros(ident, m))


def _similar_macros(ident: str, m) -> list[str]:
    """The similar-beat vote (vitaledge.device.dsp.similar_beats), when the model has one."""
    vote = beat_signal(m).similar
    if vote is None:
        return []
    key = f"{ident.upper()}_SIMILAR"
    return ["// Similar-beat vote, before the argmax: the beat's probabilities (for int8 logits: "
            "dequantized, then a softmax)",
            "// are averaged with the network outputs of those of the patient's previous "
            "BEATS beats",
            "// whose (float) window's Pearson correlation with this beat's exceeds MIN_CORR; "
            "keep each",
            "// beat's window minus its mean over its norm and its own outputs in a ring "
            "(vitaledge.device.dsp.similar_beats)",
            f"#define {key}_BEATS {int(vote.beats)}",
            f"#define {key}_MIN_CORR {float(vote.min_corr)!r}f"]


def _premature_macros(ident: str, m) -> list[str]:
    """The premature-beat rule (vitaledge.device.dsp.premature), when the model has one:
    the firmware decides N/S by timing exactly as the daemon does."""
    rule = beat_signal(m).premature
    if rule is None:
        return []
    key = f"{ident.upper()}_PREMATURE"
    lines = ["// Premature-beat rule: when the argmax is N or S, the class is S if",
             "//   bias + sum_k weight_k * logf(term_k) > logf(threshold / (1 - threshold))",
             "// else N; V, F and Q stay the argmax (vitaledge.device.dsp.premature). Terms: "
             + ", ".join(f"{k} = {t}" for k, t in enumerate(rule.terms)),
             "// (pre_rel: pre_rr/long_rr; post_rel: post_rr/long_rr; local_rel: "
             "local_rr/long_rr; pre_local: pre_rr/local_rr; post_pre: post_rr/pre_rr)",
             f"#define {key}_TERMS {len(rule.terms)}",
             f"#define {key}_BIAS {float(rule.bias)!r}f",
             f"#define {key}_THRESHOLD {float(rule.threshold)!r}f"]
    lines += [f"#define {key}_WEIGHT_{t.upper()} {float(w)!r}f"
              for t, w in zip(rule.terms, rule.weights, strict=True)]
    if rule.max_irregularity is not None:
        lines += ["// ... and only when the irregularity RR feature is at most MAX_IRREGULARITY "
                  "(else N: an irregular rhythm, as in atrial fibrillation)",
                  f"#define {key}_MAX_IRREGULARITY {float(rule.max_irregularity)!r}f"]
    return lines


def _fusion_macros(ident: str, m) -> list[str]:
    """The fusion rule (vitaledge.device.dsp.fusion), when the model has one."""
    rule = beat_signal(m).fusion
    if rule is None:
        return []
    labels = list(m.labels)
    return ["// Fusion rule, applied to the argmax before the dominant-beat rule: an argmax of F",
            "// (class FUSION_FROM) is decided as class FUSION_TO (vitaledge.device.dsp.fusion)",
            f"#define {ident.upper()}_FUSION_FROM {labels.index('F')}",
            f"#define {ident.upper()}_FUSION_TO {labels.index(rule.as_class)}"]


def _dominant_macros(ident: str, m) -> list[str]:
    """The dominant-beat rule (vitaledge.device.dsp.dominant), when the model has one."""
    rule = beat_signal(m).dominant
    if rule is None:
        return []
    key = f"{ident.upper()}_DOMINANT"
    lines = ["// Dominant-beat rule, applied before the premature-beat rule: a beat whose argmax",
             "// is V is N when the Pearson correlation of its window with the template input",
             "// exceeds MIN_CORR and pre_rr/long_rr exceeds MIN_PRE_REL"
             + (", or the correlation exceeds MIN_CORR_ANY" if rule.min_corr_any is not None
                else ""),
             "// (vitaledge.device.dsp.dominant)",
             f"#define {key}_MIN_CORR {float(rule.min_corr)!r}f",
             f"#define {key}_MIN_PRE_REL {float(rule.min_pre_rel)!r}f"]
    if rule.min_corr_any is not None:
        lines.append(f"#define {key}_MIN_CORR_ANY {float(rule.min_corr_any)!r}f")
    if rule.on_time is not None:
        lines += ["// its template is not the template input but its own: the sample-wise median "
                  "of the windows of the",
                  "// last TEMPLATE_BEATS beats with ON_TIME_LO <= pre_rr/local_rr <= ON_TIME_HI "
                  "(a beat's own template is taken before it enters; none yet: its own window)",
                  f"#define {key}_ON_TIME_LO {rule.on_time[0]!r}f",
                  f"#define {key}_ON_TIME_HI {rule.on_time[1]!r}f"]
    pause = rule.compensatory
    if pause is not None:
        lines += ["// then, whatever the class so far, a beat is V when the correlation is below "
                  "PAUSE_MAX_CORR,",
                  "// pre_rr/long_rr is below PAUSE_MAX_PRE_REL and (pre_rr + post_rr)/long_rr "
                  "exceeds PAUSE_MIN (a compensatory pause)",
                  f"#define {key}_PAUSE_MAX_CORR {float(pause.max_corr)!r}f",
                  f"#define {key}_PAUSE_MAX_PRE_REL {float(pause.max_pre_rel)!r}f",
                  f"#define {key}_PAUSE_MIN {float(pause.min_pause)!r}f"]
    return lines


def _config_header(ident: str, m, arena: int, ops: list[str],
                   order: list[int] | None = None) -> str:
    q_in, q_out = m.input.quantization, m.output.quantization
    labels = ", ".join(c_string(lab) for lab in m.labels)
    w = m.signal.to_dict().get("window", {})
    guard = f"{ident.upper()}_MODEL_CONFIG_H_"
    return "\n".join([
        "// Generated by vitaledge firmware export. Do not edit.",
        f"#ifndef {guard}", f"#define {guard}", "",
        f"#define {ident.upper()}_ARENA_BYTES {arena}",
        f"#define {ident.upper()}_INPUT_LENGTH {int(np.prod(m.input.shape[1:]))}",
        f"#define {ident.upper()}_INPUT_SCALE {q_in.scale!r}f" if q_in else "",
        f"#define {ident.upper()}_INPUT_ZERO_POINT {q_in.zero_point}" if q_in else "",
        f"#define {ident.upper()}_OUTPUT_SCALE {q_out.scale!r}f" if q_out else "",
        f"#define {ident.upper()}_OUTPUT_ZERO_POINT {q_out.zero_point}" if q_out else "",
        f"#define {ident.upper()}_NUM_CLASSES {len(m.labels)}",
        "// 1: the output is the int8 logits (no softmax); the class is their argmax, and a",
        "// softmax over the dequantized logits gives probabilities when they are wanted"
        + (" (the similar-beat vote averages them: see *_SIMILAR_*)."
           if beat_signal(m).similar is not None else "."),
        f"#define {ident.upper()}_OUTPUT_IS_LOGITS {int(_is_logits(m))}",
        f"#define {ident.upper()}_WINDOW_HZ {float(w.get('fs', 0))!r}f",
        f"#define {ident.upper()}_OP_COUNT {len(ops)}",
        *(_input_macros(ident, m, order) if order and len(m.inputs) > 1 else []),
        f"static const char* const {ident}_labels[] = {{{labels}}};", "",
        f"#endif  // {guard}", ""])


def c_string(text: str) -> str:
    """``text`` as a C string literal: its UTF-8 bytes, printable ASCII as itself but for
    ``"``, ``\\`` and ``?`` (a trigraph), escaped; every other byte (control characters,
    newlines, non-ASCII) as a three-digit octal escape, which cannot run into what
    follows as a hex escape would."""
    out = []
    for b in text.encode("utf-8"):
        c = chr(b)
        if c in '"\\?':
            out.append("\\" + c)
        elif 0x20 <= b < 0x7F:
            out.append(c)
        else:
            out.append(f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def _subgraph_order(content: bytes, m) -> list[int]:
    """Each manifest input's index among the model's subgraph inputs (what
    ``interp.input(i)`` takes on the MCU): the converter orders inputs its own way."""
    if len(m.inputs) == 1:
        return [0]
    names = [d["name"] for d in
             make_interpreter(content, get_backend(), threads=1, delegate="none")
             .get_input_details()]
    return [names.index(spec.name) for spec in m.inputs]


def _is_logits(m) -> bool:
    return m.output_kind == "logits"


def _output_section(m, ident: str) -> str:
    q = m.output.quantization
    scale, zp = (q.scale, q.zero_point) if q else (1, 0)
    vote = beat_signal(m).similar is not None
    if not _is_logits(m):
        return (f"int8 scores for {m.labels}; probability `p = (q - {zp}) x {scale}`. The class "
                "is the argmax" + (" of the similar-beat vote's average of the probabilities "
                                   "(see below)." if vote else
                                   " (no dequantization needed for it)."))
    softmax = (f"dequantize, `z = (q - {zp}) x {scale}`, and take a softmax, `p_i = exp(z_i - "
               "max z) /\nsum_j exp(z_j - max z)`.")
    if vote:
        return (f"int8 **logits** for {m.labels}: the model ends before its softmax\n"
                f"(`{ident.upper()}_OUTPUT_IS_LOGITS` is 1). This model's similar-beat vote "
                "averages probabilities,\nso every beat needs them: " + softmax
                + " The class is the argmax of the vote's average\n(a tie goes to the first "
                "class when the scan uses a strict `>`), then the decision rules.")
    return (f"int8 **logits** for {m.labels}: the model ends before its softmax\n"
            f"(`{ident.upper()}_OUTPUT_IS_LOGITS` is 1). The class is the argmax of the int8\n"
            "values (no dequantization, no softmax needed; a tie goes to the first class when\n"
            "the scan uses a strict `>`). Only if probabilities are wanted: " + softmax)


def _more_inputs_section(m, ident: str) -> str:
    """The README's words on a multi-input model's other inputs and its decision rules
    (their numbers are in ``model_config.h``); empty for a one-input model."""
    if len(m.inputs) == 1:
        return ""
    key = ident.upper()
    names = ", ".join(f"`{spec.name}` {tuple(spec.shape)}" for spec in m.inputs)
    lines = [f"## More inputs: {names}", "",
             f"Each input has its own quantization and interpreter index: "
             f"`{key}_<INPUT>_INPUT_INDEX`, `_LENGTH`, `_SCALE`, `_ZERO_POINT` in "
             "`model_config.h` (the converter orders the inputs its own way; use the index)."]
    if beat_signal(m).rr is not None:
        lines.append("The RR input's features, in order, and how each is computed causally "
                     "are a comment in `model_config.h`; the reference implementation is "
                     "`vitaledge/device/dsp/rr.py`. A beat is classified when the next R peak "
                     "is found (its post-RR).")
    if beat_signal(m).template is not None:
        lines.append(f"The template input is the sample-wise median of the float windows of "
                     f"the previous `{key}_TEMPLATE_BEATS` beats "
                     "(`vitaledge/device/dsp/template.py`).")
    lines.append("The decision rules applied after the network (the similar-beat vote, "
                 "then the argmax, the fusion, dominant-beat and premature-beat rules, each "
                 "when the manifest has it) are `*_SIMILAR_*`, `*_FUSION_*`, `*_DOMINANT_*` "
                 "and `*_PREMATURE_*` macros; `vitaledge/device/dsp/similar_beats.py`, "
                 "`fusion.py`, `dominant.py` and `premature.py` are their reference "
                 "implementations.")
    return "\n".join(lines) + "\n\n"


def _readme(m, ident: str, arena: int, measured: int, ops: list[str]) -> str:
    q_in = m.input.quantization
    w = m.signal.to_dict().get("window", {})
    f = w.get("filter") or {}
    acc = m.metrics.get("accuracy")
    register = f"Register{ident.title().replace('_', '')}Ops"
    return f"""# {ident}: beat classifier for TFLite Micro

Generated by `vitaledge firmware export` from an artifact with sha256 `{m.sha256}`
({m.size_bytes:,} bytes, {m.quantization}, target `{m.target}`).
Held-out accuracy measured with this artifact: {acc if acc is None else f'{acc:.4f}'}.

## Files

| file | what |
|---|---|
| `model_data.cc` / `model_data.h` | the model: `{ident}_model_data[]` (16-byte aligned) \
and its length |
| `op_resolver.cc` | `{register}()`: the {len(ops)} operators the model uses \
({", ".join(ops)}) into a `MicroMutableOpResolver<{len(ops)}>` |
| `model_config.h` | arena size, input/output quantization, class labels as C constants |
| `manifest.json` | the full manifest (signal spec, metrics, source run) |

## Memory

Tensor arena: **{arena:,} bytes** (`{ident.upper()}_ARENA_BYTES`): the smallest arena in
which the tflite-micro interpreter ran the model ({measured:,} bytes, found by search),
plus 10 %. Align it to 16 bytes. Check RAM and flash against a part with
`vitaledge firmware mcu ARTIFACT --profile ...`.

## Input: one beat window

- int8 tensor of shape {m.input.shape}; quantize `q = round(x / {q_in.scale if q_in else 1}) +
  {q_in.zero_point if q_in else 0}`, clipped to [-128, 127].
- Window convention `{w.get('convention')}` at {w.get('fs')} Hz, {w.get('length')} samples,
  normalization `{w.get('normalize')}`; before windowing the ECG is band-passed
  {f.get('low_hz')}-{f.get('high_hz')} Hz (causal Butterworth, order {f.get('order')}).
  `kachuee`: the window starts at the R peak and spans 1.2 x the median of the last
  {w.get('rr_context')} RR intervals, resampled to {w.get('length')} samples, scaled to [0, 1],
  zero-padded. The reference implementation is `vitaledge/device/dsp/windows.py`; compare
  your firmware's windows with it on a recorded signal before trusting the classes.

{_more_inputs_section(m, ident)}## Output

{_output_section(m, ident)}

## Calling it

```cpp
#include "model_data.h"
#include "model_config.h"
#include "tensorflow/lite/micro/micro_interpreter.h"

alignas(16) static uint8_t arena[{ident.upper()}_ARENA_BYTES];
// op_resolver.cc defines {ident}_OpResolver and {register}(); declare them or
// include op_resolver.cc in this translation unit
static {ident}_OpResolver resolver;
{register}(resolver);
const tflite::Model* model = tflite::GetModel({ident}_model_data);
tflite::MicroInterpreter interp(model, resolver, arena, sizeof(arena));
interp.AllocateTensors();
// fill interp.input(0)->data.int8 with the quantized window (a model with RR features has
// two inputs: fill interp.input(<NAME>_BEAT_INPUT_INDEX) with the window and
// interp.input(<NAME>_RR_INPUT_INDEX) with the RR features, each quantized with its own
// <NAME>_<INPUT>_SCALE / _ZERO_POINT from model_config.h), then:
interp.Invoke();
int8_t* scores = interp.output(0)->data.int8;  // class = argmax of scores
```
"""


#: The files of a firmware bundle, as :func:`export_firmware` writes them.
BUNDLE = ("model_data.cc", "model_data.h", "op_resolver.cc", "model_config.h", "README.md",
          "manifest.json", "export.json")


def beat_signal(m) -> BeatSignal:
    """The beat model's signal spec, which the bundle's macros read (the task was checked
    by :func:`beat_models_only`)."""
    if not isinstance(m.signal, BeatSignal):
        raise ValueError(f"the model's signal is {type(m.signal).__name__}, not a beat "
                         "model's: the firmware bundle takes beat models only")
    return m.signal


def beat_models_only(artifact: str | Path, task: str, command: str) -> None:
    """The MCU side (bundle, simulated MCU) is the beat model's: its window, RR features and
    decision rules; convert makes no micro artifact of an emotion model."""
    if task != "beat":
        raise ValueError(f"{artifact}: the model's task is {task!r}; {command} takes beat "
                         "models only (convert makes micro artifacts of beat models)")


def export_firmware(artifact: str | Path, out: str | Path,
                    overwrite: bool = False) -> list[Path]:
    """Write the firmware bundle for an int8 artifact into ``out``; returns the files.
    Unless ``overwrite``, a ValueError naming the first bundle file already in ``out`` (a
    firmware project's own README.md, an earlier export) is raised before any is written."""
    held = next((Path(out) / f for f in BUNDLE if (Path(out) / f).exists()), None)
    if held is not None and not overwrite:
        raise ValueError(f"{held}: already exists (an earlier export, or the project's own "
                         "file?); give a new --out, or --overwrite to replace it")
    odd = next((Path(out) / f for f in BUNDLE if (Path(out) / f).exists()
                and not (Path(out) / f).is_file()), None)
    if odd is not None:  # found when half the bundle was written
        raise ValueError(f"{odd}: not a file (a folder?); the bundle writes a file there")
    m, path = load_manifest(artifact)
    beat_models_only(artifact, m.task, "firmware export")
    if m.input.dtype != "int8":
        raise ValueError(f"{artifact}: input is {m.input.dtype}; TFLite Micro export needs a "
                         "full-integer int8 artifact (convert --target micro)")
    content = path.read_bytes()
    ops = resolver_ops([o["op"] for o in list_ops(content, name=str(path))])
    ident = (m.extra.get("micro") or {}).get("c_array", "vitaledge_model_data")
    ident = c_identifier(ident.removesuffix("_model_data") or "vitaledge")
    measured = (m.extra.get("micro") or {}).get("arena_bytes")
    order = _subgraph_order(content, m)
    if not measured:
        sample = [None] * len(m.inputs)
        for spec, idx in zip(m.inputs, order, strict=True):
            q = spec.quantization
            sample[idx] = np.full(spec.shape, q.zero_point if q else 0, np.int8)
        measured = measure_arena(content, sample if len(sample) > 1 else sample[0])
    arena = int(np.ceil(measured * ARENA_HEADROOM / 16) * 16)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    src, hdr = c_source(content, ident, ops)
    files = {"model_data.cc": src, "model_data.h": hdr,
             "op_resolver.cc": resolver_source(ops, ident),
             "model_config.h": _config_header(ident, m, arena, ops, order),
             "README.md": _readme(m, ident, arena, int(measured), ops)}
    files["export.json"] = json.dumps(
        {"sha256": m.sha256, "arena_bytes": arena, "arena_measured": int(measured),
         "ops": ops, "identifier": ident}, indent=2) + "\n"
    # the whole bundle written beside, then moved into place: a write that fails (a full
    # disk) leaves no half bundle of new and earlier files
    stage = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    try:
        for name, text in files.items():
            (stage / name).write_text(text)
        shutil.copyfile(path.parent / "manifest.json", stage / "manifest.json")
        for name in [*files, "manifest.json"]:
            os.replace(stage / name, out / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return [out / name for name in BUNDLE]
