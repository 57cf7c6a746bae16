"""The conversion targets: which quantizations each accepts and what each adds.

| target  | quantizations        | default      | adds                                        |
|---------|----------------------|--------------|---------------------------------------------|
| cpu     | none, int8, dynamic, fp16 | none, int8 | runs under XNNPACK (checked)             |
| edgetpu | int8                 | int8         | op-compatibility report (+ compiler log)     |
| gpu     | fp16, none           | fp16         | note of ops the GPU delegate does not take   |
| micro   | int8                 | int8         | C array + header, op resolver, tensor arena  |
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str
    quants: tuple[str, ...]
    default_quants: tuple[str, ...]
    summary: str


TARGETS: dict[str, Target] = {
    t.name: t for t in (
        Target("cpu", ("none", "int8", "dynamic", "fp16"), ("none", "int8"),
               "Raspberry Pi class CPUs, XNNPACK"),
        Target("edgetpu", ("int8",), ("int8",), "Coral Edge TPU (full int8)"),
        Target("gpu", ("fp16", "none"), ("fp16",), "GPU delegates (fp16)"),
        Target("micro", ("int8",), ("int8",), "microcontrollers, TFLite Micro"),
    )
}


def resolve(targets: list[str], quant: str | None) -> list[tuple[str, str]]:
    """(target, quantization) pairs to build; ``all`` means every target."""
    names = list(TARGETS) if "all" in targets else targets
    pairs = []
    for name in names:
        if name not in TARGETS:
            raise ValueError(f"unknown target {name!r}; expected one of {list(TARGETS)} or all")
        t = TARGETS[name]
        if quant is None:
            pairs += [(name, q) for q in t.default_quants]
        elif quant in t.quants:
            pairs.append((name, quant))
        elif len(names) == 1:
            raise ValueError(f"target {name} takes quantization {'/'.join(t.quants)}, "
                             f"not {quant}")
    if not pairs:
        raise ValueError(f"no target accepts quantization {quant}")
    return pairs


def variant_name(target: str, quant: str, sparsity: float, qat: bool = False) -> str:
    q = {"none": "fp32"}.get(quant, quant)
    return (f"{target}-{q}" + (f"-pruned{int(round(sparsity * 100))}" if sparsity else "")
            + ("-qat" if qat else ""))
