"""Model zoo: a registry of named architectures, each for one task.

Every builder takes the input shape (without batch) and the number of classes and returns
an uncompiled Keras 2 model whose output is a softmax over the classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .backend import keras

L = keras.layers


@dataclass(frozen=True)
class Arch:
    name: str
    task: str
    build: Callable[[tuple[int, ...], int], keras.Model]
    summary: str


ZOO: dict[str, Arch] = {}


def register(name: str, task: str, summary: str):
    def deco(fn: Callable[[tuple[int, ...], int], keras.Model]):
        ZOO[name] = Arch(name, task, fn, summary)
        return fn
    return deco


def get(name: str, task: str | None = None) -> Arch:
    if name not in ZOO:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(sorted(ZOO))}")
    arch = ZOO[name]
    if task is not None and arch.task != task:
        raise KeyError(f"architecture {name!r} is for task {arch.task!r}, not {task!r}")
    return arch


def names(task: str) -> list[str]:
    return sorted(n for n, a in ZOO.items() if a.task == task)


def build(name: str, input_shape: tuple[int, ...], n_classes: int) -> keras.Model:
    return get(name).build(tuple(input_shape), n_classes)


def _conv_block(x, filters: int, kernel: int, dropout: float, prefix: str,
                bn: dict | None = None):
    x = L.Conv1D(filters, kernel, padding="same", name=f"{prefix}_conv")(x)
    x = L.BatchNormalization(name=f"{prefix}_bn", **(bn or {}))(x)
    x = L.ReLU(name=f"{prefix}_relu")(x)
    x = L.MaxPooling1D(2, name=f"{prefix}_pool")(x)
    return L.Dropout(dropout, name=f"{prefix}_drop")(x)


def _skip(src, pool: int, filters: int, name: str):
    """Project ``src`` to the length and width of a block output ``pool`` x shorter."""
    x = L.MaxPooling1D(pool, name=f"{name}_pool")(src)
    return L.Conv1D(filters, 1, name=f"{name}_proj")(x)


@register("resnet1d", "beat", "seed 003: 4 conv blocks 32/64/128/256, skips in->b2 and b1->b3")
def resnet1d(input_shape: tuple[int, ...], n_classes: int) -> keras.Model:
    """Seed 003's network: four blocks Conv1D(k=5) -> BN -> ReLU -> MaxPool 2 -> Dropout 0.2
    with 32/64/128/256 filters; the input is added to block 2's output and block 1's output
    to block 3's (each through a 1x1 convolution after pooling to the same length);
    Flatten -> Dense 128 -> ReLU -> Dropout 0.3 -> Dense n (softmax).

    The seed is a PyTorch model, so BatchNorm uses PyTorch's defaults (momentum 0.1, i.e.
    Keras momentum 0.9, eps 1e-5): with Keras' 0.99 the moving statistics lag far behind
    on small data sets and the saved model scores near chance while training looks fine."""
    bn = {"momentum": 0.9, "epsilon": 1e-5}
    inp = L.Input(input_shape, name="beat")
    b1 = _conv_block(inp, 32, 5, 0.2, "b1", bn)
    b2 = _conv_block(b1, 64, 5, 0.2, "b2", bn)
    b2 = L.Add(name="skip_in_b2")([b2, _skip(inp, 4, 64, "skip1")])
    b3 = _conv_block(b2, 128, 5, 0.2, "b3", bn)
    b3 = L.Add(name="skip_b1_b3")([b3, _skip(b1, 4, 128, "skip2")])
    b4 = _conv_block(b3, 256, 5, 0.2, "b4", bn)
    x = L.Flatten(name="flatten")(b4)
    x = L.Dense(128, name="fc1")(x)
    x = L.ReLU(name="fc1_relu")(x)
    x = L.Dropout(0.3, name="fc1_drop")(x)
    out = L.Dense(n_classes, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="resnet1d")


@register("cnn1d", "beat", "seed 002: 3 conv blocks + 2 dense blocks with BatchNorm")
def cnn1d(input_shape: tuple[int, ...], n_classes: int) -> keras.Model:
    """Seed 002's plain CNN: conv blocks (Conv1D -> BN -> ReLU -> MaxPool -> Dropout),
    Flatten, dense blocks (Dense -> BN -> ReLU -> Dropout), Dense softmax."""
    inp = L.Input(input_shape, name="beat")
    x = inp
    for i, (f, k) in enumerate(((32, 7), (64, 5), (128, 3)), start=1):
        x = _conv_block(x, f, k, 0.2, f"c{i}")
    x = L.Flatten(name="flatten")(x)
    for i, (units, drop) in enumerate(((128, 0.4), (64, 0.3)), start=1):
        x = L.Dense(units, name=f"d{i}")(x)
        x = L.BatchNormalization(name=f"d{i}_bn")(x)
        x = L.ReLU(name=f"d{i}_relu")(x)
        x = L.Dropout(drop, name=f"d{i}_drop")(x)
    out = L.Dense(n_classes, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="cnn1d")


@register("tiny", "beat", "microcontroller CNN: 4 strided convs, <= 20k parameters")
def tiny(input_shape: tuple[int, ...], n_classes: int) -> keras.Model:
    """Four stride-2 Conv1D -> BN -> ReLU layers (16/24/32/48 filters), Flatten, Dense.
    Small enough for a Cortex-M4 with 256 KB of RAM; only ops TFLite Micro has kernels for."""
    inp = L.Input(input_shape, name="beat")
    x = inp
    for i, (f, k) in enumerate(((16, 7), (24, 5), (32, 5), (48, 3)), start=1):
        x = L.Conv1D(f, k, strides=2, padding="same", name=f"t{i}_conv")(x)
        x = L.BatchNormalization(name=f"t{i}_bn")(x)
        x = L.ReLU(name=f"t{i}_relu")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dropout(0.2, name="drop")(x)
    out = L.Dense(n_classes, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="tiny")
