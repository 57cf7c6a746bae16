"""Model zoo: a registry of named architectures, each for one task.

Every builder takes the input shape (without batch) and the number of classes and returns
an uncompiled Keras 2 model whose output is a softmax over the classes. The registry
itself imports no TensorFlow (the CLI lists its names for ``--arch``); Keras is loaded
the first time a model is built.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .backend import keras

L = None  # keras.layers once _load_keras() has run


@dataclass(frozen=True)
class Arch:
    name: str
    task: str
    build: Callable[[tuple[int, ...], int], keras.Model]
    summary: str
    #: the model's named inputs, in the order the Keras model takes them (its Input layers'
    #: names); a builder of more than one, or of the multimodal task, takes a dict of input
    #: shapes keyed by these names
    inputs: tuple[str, ...] = ("beat",)


ZOO: dict[str, Arch] = {}


def _load_keras() -> None:
    """Bind ``keras`` and ``L`` (its layers) for the builders below, importing TF once."""
    global keras, L
    if L is None:
        from .backend import keras

        L = keras.layers


def register(name: str, task: str, summary: str, inputs: tuple[str, ...] = ("beat",)):
    """Add a builder to :data:`ZOO` under ``name`` for ``task`` (one entry per architecture)."""
    def deco(fn: Callable[[tuple[int, ...], int], keras.Model]):
        @functools.wraps(fn)
        def build(*args, **kwargs) -> keras.Model:
            _load_keras()
            return fn(*args, **kwargs)

        ZOO[name] = Arch(name, task, build, summary, inputs)
        return build
    return deco


def get(name: str, task: str | None = None) -> Arch:
    if name not in ZOO:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(sorted(ZOO))}")
    arch = ZOO[name]
    if task is not None and arch.task != task:
        raise KeyError(f"architecture {name!r} is for task {arch.task!r}, not {task!r}")
    return arch


def names(task: str | None = None) -> list[str]:
    """Registered architecture names, for one task or (None) all of them."""
    return sorted(n for n, a in ZOO.items() if task is None or a.task == task)


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


def _resnet1d_trunk(inp):
    """Seed 003's four blocks with their two skips, up to Flatten (layer names kept)."""
    bn = {"momentum": 0.9, "epsilon": 1e-5}
    b1 = _conv_block(inp, 32, 5, 0.2, "b1", bn)
    b2 = _conv_block(b1, 64, 5, 0.2, "b2", bn)
    b2 = L.Add(name="skip_in_b2")([b2, _skip(inp, 4, 64, "skip1")])
    b3 = _conv_block(b2, 128, 5, 0.2, "b3", bn)
    b3 = L.Add(name="skip_b1_b3")([b3, _skip(b1, 4, 128, "skip2")])
    b4 = _conv_block(b3, 256, 5, 0.2, "b4", bn)
    return L.Flatten(name="flatten")(b4)


def _tiny_trunk(x):
    """tiny's four stride-2 Conv1D -> BN -> ReLU layers, up to Flatten."""
    for i, (f, k) in enumerate(((16, 7), (24, 5), (32, 5), (48, 3)), start=1):
        x = L.Conv1D(f, k, strides=2, padding="same", name=f"t{i}_conv")(x)
        x = L.BatchNormalization(name=f"t{i}_bn")(x)
        x = L.ReLU(name=f"t{i}_relu")(x)
    return L.Flatten(name="flatten")(x)


@register("resnet1d", "beat", "seed 003: 4 conv blocks 32/64/128/256, skips in->b2 and b1->b3")
def resnet1d(input_shape: tuple[int, ...], n_classes: int) -> keras.Model:
    """Seed 003's network: four blocks Conv1D(k=5) -> BN -> ReLU -> MaxPool 2 -> Dropout 0.2
    with 32/64/128/256 filters; the input is added to block 2's output and block 1's output
    to block 3's (each through a 1x1 convolution after pooling to the same length);
    Flatten -> Dense 128 -> ReLU -> Dropout 0.3 -> Dense n (softmax).

    The seed is a PyTorch model, so BatchNorm uses PyTorch's defaults (momentum 0.1, i.e.
    Keras momentum 0.9, eps 1e-5): with Keras' 0.99 the moving statistics lag far behind
    on small data sets and the saved model scores near chance while training looks fine."""
    inp = L.Input(input_shape, name="beat")
    x = _resnet1d_trunk(inp)
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
    x = L.Dropout(0.2, name="drop")(_tiny_trunk(inp))
    out = L.Dense(n_classes, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="tiny")


def _rr_branch(rr, units: int = 16):
    """RR features -> a small dense code: timing is what tells S from N on a new patient."""
    x = L.Dense(units, name="rr_fc")(rr)
    return L.ReLU(name="rr_relu")(x)


def _beat_rr_head(trunk, rr_code, units: int, dropout: float, n_classes: int):
    x = L.Concatenate(name="beat_rr")([trunk, rr_code])
    x = L.Dense(units, name="head_fc")(x)
    x = L.ReLU(name="head_relu")(x)
    x = L.Dropout(dropout, name="head_drop")(x)
    return L.Dense(n_classes, activation="softmax", name="probs")(x)


@register("resnet1d-rr", "beat",
          "inter-patient: seed 003's resnet1d on the beat window + a dense RR-feature branch",
          inputs=("beat", "rr"))
def resnet1d_rr(input_shapes: dict[str, tuple[int, ...]], n_classes: int) -> keras.Model:
    """The resnet1d trunk (its layers and PyTorch BatchNorm defaults) up to Flatten, the RR
    features (``vitaledge.device.dsp.rr``) through Dense 16, joined before the classifier."""
    inp = L.Input(input_shapes["beat"], name="beat")
    rr = L.Input(input_shapes["rr"], name="rr")
    out = _beat_rr_head(_resnet1d_trunk(inp), _rr_branch(rr), 128, 0.3, n_classes)
    return keras.Model([inp, rr], out, name="resnet1d_rr")


@register("tiny-rr", "beat",
          "inter-patient microcontroller model: tiny's 4 strided convs + RR features, <= 25k "
          "parameters", inputs=("beat", "rr"))
def tiny_rr(input_shapes: dict[str, tuple[int, ...]], n_classes: int) -> keras.Model:
    """tiny's trunk (four stride-2 Conv1D -> BN -> ReLU) and a narrow head joined with the
    RR branch: about 23k parameters, only ops TFLite Micro has kernels for."""
    inp = L.Input(input_shapes["beat"], name="beat")
    rr = L.Input(input_shapes["rr"], name="rr")
    out = _beat_rr_head(_tiny_trunk(inp), _rr_branch(rr, 8), 20, 0.2, n_classes)
    return keras.Model([inp, rr], out, name="tiny_rr")


@register("tiny-rrt", "beat",
          "inter-patient microcontroller model: tiny-rr with the patient's running template "
          "as a second channel of the window", inputs=("beat", "rr", "template"))
def tiny_rrt(input_shapes: dict[str, tuple[int, ...]], n_classes: int) -> keras.Model:
    """tiny-rr whose convolutions see the beat and the patient's template (the median of
    the previous beats) side by side, so "unlike this patient's usual beat" is learnable."""
    inp = L.Input(input_shapes["beat"], name="beat")
    rr = L.Input(input_shapes["rr"], name="rr")
    tmpl = L.Input(input_shapes["template"], name="template")
    x = L.Concatenate(name="beat_template")([inp, tmpl])
    out = _beat_rr_head(_tiny_trunk(x), _rr_branch(rr, 8), 20, 0.2, n_classes)
    return keras.Model([inp, rr, tmpl], out, name="tiny_rrt")


@register("resnet1d-rrt", "beat",
          "inter-patient: resnet1d-rr with the patient's running template as a second channel",
          inputs=("beat", "rr", "template"))
def resnet1d_rrt(input_shapes: dict[str, tuple[int, ...]], n_classes: int) -> keras.Model:
    """resnet1d-rr on the beat and the patient's template stacked as two channels."""
    inp = L.Input(input_shapes["beat"], name="beat")
    rr = L.Input(input_shapes["rr"], name="rr")
    tmpl = L.Input(input_shapes["template"], name="template")
    x0 = L.Concatenate(name="beat_template")([inp, tmpl])
    out = _beat_rr_head(_resnet1d_trunk(x0), _rr_branch(rr), 128, 0.3, n_classes)
    return keras.Model([inp, rr, tmpl], out, name="resnet1d_rrt")


@register("tdcnnlstm_speech", "emotion-speech",
          "seed 004: TimeDistributed Conv2D 3x3 64/64/128/128 (BN, ELU, MaxPool, Dropout) "
          "-> LSTM 256 -> softmax", inputs=("mel",))
def tdcnnlstm_speech(input_shape: tuple[int, ...], n_classes: int, width: float = 1.0,
                     lstm_units: int = 256, dropout: float = 0.2,
                     pools: tuple[int, int, int, int] = (4, 4, 4, 2)) -> keras.Model:
    """Seed 004's speech-emotion network over a sequence of log-mel images
    (images, mel bands, frames, 1): four learning modules, each TimeDistributed
    Conv2D 3x3 (64, 64, 128, 128 filters) -> BatchNorm -> ELU -> MaxPool -> Dropout, then
    Flatten per image, LSTM(256) over the images and Dense softmax.

    The seed gives neither pool sizes nor dropout rates. Dropout 0.2 follows the Time
    Distributed ConvNet it descends from; that network pools 2, 4, 4, 4, here the default
    is 4, 4, 4, 2 ('same' padding): both shrink a 64 x 128 image to 1 x 1 x 128 features
    per step, but pooling by 4 first makes the second convolution 4x cheaper (26 M instead
    of 91 M multiply-adds per image in all), which matters on a Raspberry Pi and for training on
    two CPU cores; ``pools=(2, 4, 4, 4)`` builds the original. BatchNorm momentum is 0.9:
    with Keras' 0.99 the moving statistics lag behind on a few hundred steps of small data
    (see resnet1d). ``width`` scales the filter
    counts and ``lstm_units`` the LSTM (for fast tests); the defaults are the seed's."""
    inp = L.Input(input_shape, name="mel")
    x = inp
    for i, (filters, pool) in enumerate(zip((64, 64, 128, 128), pools, strict=True), start=1):
        f = max(1, int(round(filters * width)))
        x = L.TimeDistributed(L.Conv2D(f, 3, padding="same"), name=f"lm{i}_conv")(x)
        x = L.TimeDistributed(L.BatchNormalization(momentum=0.9), name=f"lm{i}_bn")(x)
        x = L.TimeDistributed(L.Activation("elu"), name=f"lm{i}_elu")(x)
        x = L.TimeDistributed(L.MaxPooling2D(pool, padding="same"), name=f"lm{i}_pool")(x)
        x = L.TimeDistributed(L.Dropout(dropout), name=f"lm{i}_drop")(x)
    x = L.TimeDistributed(L.Flatten(), name="flatten")(x)
    x = L.LSTM(lstm_units, name="lstm")(x)
    out = L.Dense(n_classes, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="tdcnnlstm_speech")


@register("cnn_speech", "emotion-speech",
          "speaker-independent default: the clip's log-mel images side by side as one "
          "spectrogram, four Conv2D blocks, global average pooling; ~98k parameters",
          inputs=("mel",))
def cnn_speech(input_shape: tuple[int, ...], n_classes: int, width: float = 1.0,
               dropout: float = 0.3) -> keras.Model:
    """A small 2-D CNN over the whole clip, on the same input as seed 004's network
    (images, mel bands, frames, 1): the images are laid side by side in time (one
    transpose and reshape inside the model, so the signal spec is unchanged), then four
    blocks Conv2D 3x3 (16, 32, 64, 128 filters x ``width``) -> BatchNorm -> ReLU ->
    MaxPool (2x4, 2x4, 2x2, 2x2: mel x time) -> global average pooling -> Dropout -> Dense.

    Why: seed 004 pools every half-second image down to one vector before its LSTM, and
    on speakers it has not heard it learns slowly and unstably (docs/results.md). Global
    average pooling over frequency and time makes the features independent of where in
    the clip the emotion is voiced, and with ~98k weights there is little to memorize a
    speaker by."""
    n_img, n_mels, n_frames, _ = input_shape
    inp = L.Input(input_shape, name="mel")
    x = L.Permute((2, 1, 3, 4), name="bands_first")(inp)
    x = L.Reshape((n_mels, n_img * n_frames, 1), name="one_spectrogram")(x)
    for i, (filters, pool) in enumerate(zip((16, 32, 64, 128),
                                            ((2, 4), (2, 4), (2, 2), (2, 2)), strict=True),
                                        start=1):
        x = L.Conv2D(max(1, int(round(filters * width))), 3, padding="same",
                     name=f"c{i}_conv")(x)
        x = L.BatchNormalization(momentum=0.9, name=f"c{i}_bn")(x)
        x = L.ReLU(name=f"c{i}_relu")(x)
        x = L.MaxPooling2D(pool, padding="same", name=f"c{i}_pool")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dropout(dropout, name="drop")(x)
    out = L.Dense(n_classes, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="cnn_speech")


@register("cnnlstm_ecg", "emotion-ecg",
          "seed 000: TimeDistributed Conv1D(32, k50) -> LSTM 128 -> Dense 256/128/4, "
          "2,231,268 parameters", inputs=("ecg",))
def cnnlstm_ecg(input_shape: tuple[int, ...] = (48, 128, 1), n_classes: int = 4,
                dropout: float = 0.2) -> keras.Model:
    """Seed 000's ECG emotion CNN-LSTM, layer for layer: 48 one-second windows ->
    TimeDistributed Conv1D(32, 50, ReLU, 'same') -> Reshape (48, 4096) -> LSTM(128) ->
    Dense 256 ReLU -> Dropout -> Dense 128 ReLU -> Dropout -> Dense 4 -> Dropout -> softmax.

    The seed does not give its dropout rate (0.2 here). The LSTM stays a plain Keras
    LSTM layer: the converter unrolls it (convert/unroll.py) into an equivalent, faster
    graph."""
    return _cnnlstm_ecg(input_shape, n_classes, dropout, filters=32, units=128,
                        dense=(256, 128), name="cnnlstm_ecg")


def _cnnlstm_ecg(input_shape: tuple[int, ...], n_classes: int, dropout: float, filters: int,
                 units: int, dense: tuple[int, int], name: str) -> keras.Model:
    """The seed-000 layer stack at a given width (layer names as in the seed's summary)."""
    inp = L.Input(input_shape, name="ecg")
    steps, width = input_shape[0], input_shape[1]
    x = L.TimeDistributed(L.Conv1D(filters, 50, padding="same", activation="relu"),
                          name="time_distributed")(inp)
    x = L.Reshape((steps, width * filters), name="reshape")(x)
    x = L.LSTM(units, name="lstm")(x)
    x = L.Dense(dense[0], activation="relu", name="dense")(x)
    x = L.Dropout(dropout, name="dropout")(x)
    x = L.Dense(dense[1], activation="relu", name="dense_1")(x)
    x = L.Dropout(dropout, name="dropout_1")(x)
    x = L.Dense(n_classes, name="dense_2")(x)
    x = L.Dropout(dropout, name="dropout_2")(x)
    out = L.Activation("softmax", name="activation")(x)
    return keras.Model(inp, out, name=name)


def _physio_branch(physio, lstm_units: int):
    """Two strided convolutions (4x shorter sequence), then an LSTM over it."""
    x = L.Conv1D(32, 5, strides=2, padding="same", activation="relu", name="physio_conv1")(physio)
    x = L.Conv1D(32, 5, strides=2, padding="same", activation="relu", name="physio_conv2")(x)
    return L.LSTM(lstm_units, name="lstm")(x)


def _face_branch(face, conv_layers: int):
    """``conv_layers`` blocks Conv2D 3x3 (16, 32, 64, ... filters) -> ReLU -> MaxPool 2."""
    side = min(int(d) for d in face.shape[1:3])
    if side >> conv_layers < 1:
        raise ValueError(f"conv_layers {conv_layers}: {conv_layers} halvings of the "
                         f"{side}-pixel face leave nothing (at most {side.bit_length() - 1})")
    x = face
    for i in range(conv_layers):
        x = L.Conv2D(16 * 2 ** i, 3, padding="same", activation="relu", name=f"face_conv{i + 1}")(x)
        x = L.MaxPooling2D(2, name=f"face_pool{i + 1}")(x)
    x = L.Flatten(name="face_flatten")(x)
    return L.Dense(64, activation="relu", name="face_embed")(x)


def _head(x, n_classes: int, dropout: float):
    x = L.Dense(128, activation="relu", name="head_dense")(x)
    x = L.Dropout(dropout, name="head_dropout")(x)
    return L.Dense(n_classes, activation="softmax", name="probs")(x)


@register("hybrid_multimodal", "emotion-multimodal",
          "seed 001: LSTM over ECG+GSR + HRV/GSR features + face CNN, fused",
          inputs=("physio", "features", "face"))
def hybrid_multimodal(input_shapes: dict[str, tuple[int, ...]], n_classes: int = 5,
                      conv_layers: int = 2, lstm_units: int = 64,
                      dropout: float = 0.3) -> keras.Model:
    """Seed 001's hybrid: an LSTM branch over the ECG+GSR sequence ("physio") joined by
    the HRV and GSR features ("features"), a CNN branch over the 48x48 face ("face"),
    a fusion layer (concatenation), Dense + Dropout and softmax. The seed gives no layer
    sizes; ``conv_layers``, ``lstm_units`` and ``dropout`` are what its grid searches."""
    physio = L.Input(input_shapes["physio"], name="physio")
    feats = L.Input(input_shapes["features"], name="features")
    face = L.Input(input_shapes["face"], name="face")
    f = L.Dense(32, activation="relu", name="features_dense")(feats)
    fused = L.Concatenate(name="fusion")([_physio_branch(physio, lstm_units), f,
                                          _face_branch(face, conv_layers)])
    return keras.Model([physio, feats, face], _head(fused, n_classes, dropout),
                       name="hybrid_multimodal")


@register("cnn_face", "emotion-multimodal", "seed 001 baseline: the face CNN alone",
          inputs=("face",))
def cnn_face(input_shapes: dict[str, tuple[int, ...]], n_classes: int = 5,
             conv_layers: int = 2, lstm_units: int = 64, dropout: float = 0.3) -> keras.Model:
    """The hybrid's face branch and head without the physiological inputs."""
    face = L.Input(input_shapes["face"], name="face")
    return keras.Model(face, _head(_face_branch(face, conv_layers), n_classes, dropout),
                       name="cnn_face")


@register("rnn_physio", "emotion-multimodal",
          "seed 001 baseline: the physiological LSTM (+ HRV/GSR features) alone",
          inputs=("physio", "features"))
def rnn_physio(input_shapes: dict[str, tuple[int, ...]], n_classes: int = 5,
               conv_layers: int = 2, lstm_units: int = 64, dropout: float = 0.3) -> keras.Model:
    """The hybrid's physiological branch (sequence and features) and head, no face."""
    physio = L.Input(input_shapes["physio"], name="physio")
    feats = L.Input(input_shapes["features"], name="features")
    f = L.Dense(32, activation="relu", name="features_dense")(feats)
    x = L.Concatenate(name="fusion")([_physio_branch(physio, lstm_units), f])
    return keras.Model([physio, feats], _head(x, n_classes, dropout), name="rnn_physio")


@register("cnnlstm_ecg_small", "emotion-ecg",
          "seed 000's layer stack at a quarter width (Conv1D 8, LSTM 32, Dense 64/32)",
          inputs=("ecg",))
def cnnlstm_ecg_small(input_shape: tuple[int, ...] = (48, 128, 1), n_classes: int = 4,
                      dropout: float = 0.2) -> keras.Model:
    """:func:`cnnlstm_ecg` with 8 filters, LSTM(32) and Dense 64/32 (~140k parameters):
    the same layers, names and input, small enough for fast tests and microcontrollers."""
    return _cnnlstm_ecg(input_shape, n_classes, dropout, filters=8, units=32, dense=(64, 32),
                        name="cnnlstm_ecg_small")
