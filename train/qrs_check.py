"""Training the beat check's network (:mod:`vitaledge.device.dsp.beat_check`): where is an
R peak, in clean and noisy ECG.

Data: the annotated records named (by default de Chazal's DS1 present in ``--data``; never
a test patient), read on MLII, through the device's own input stage
(:class:`~vitaledge.device.dsp.qrs_net.NetInput`: 0.5-40 Hz causal band-pass, 120 Hz).
Each epoch draws ``crops`` 5-s windows at random; 80 % of them get real noise added
(``ma``, ``bw`` or both, from ``--noise``), each at an SNR drawn uniformly from -6 to 24 dB
as nst(1) defines it (:mod:`vitaledge.device.io.nst`: the record's QRS peak-to-peak
amplitude against the noise's RMS). The noise is taken from the noise records' **second**
channel only: ``vitaledge data nst`` adds the first channel to MLII, so the noise-stress
records a model is scored on hold noise it never saw. Target: a Gaussian (sigma 2 samples,
17 ms) at every reference beat. Binary cross-entropy, Adam 2e-3, the last four epochs at
5e-4; no validation split, no early stopping: the recipe (epochs included) was chosen on two
patient-wise halves of DS1 (docs/experiments.md, "A learned check of each beat").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vitaledge.device.dsp.qrs_net import (
    NET_FS,
    WINDOW,
    ConvLayer,
    NetInput,
    QrsNet,
    fold_batchnorm,
    standardize,
)
from vitaledge.device.io.aami import map_annotations
from vitaledge.device.io.nst import noise_gain, qrs_amplitude, rms_amplitude
from vitaledge.device.io.records import RecordError, read_record, record_path, wfdb_module

from .backend import keras, set_seed

WIDTH, KERNEL, DILATIONS = 32, 7, (1, 2, 4, 8, 16, 32)
SIGMA = 2.0
SNR_DB = (-6.0, 24.0)
NOISES = ("ma", "bw")
NOISE_CHANNEL = 1   # the channel data nst does not add to MLII
CLEAN_SHARE = 0.2


def network() -> keras.Model:
    inp = keras.Input((None, 1))
    h = inp
    for i, d in enumerate(DILATIONS):
        h = keras.layers.Conv1D(WIDTH if i else 16, KERNEL, dilation_rate=d, padding="same")(h)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.ReLU()(h)
    out = keras.layers.Conv1D(1, 1, activation="sigmoid")(h)
    return keras.Model(inp, out)


def to_qrs_net(model: keras.Model, leads: tuple[str, ...] = ("MLII",)) -> QrsNet:
    """The trained Keras network as the device's :class:`QrsNet` (batch norm folded),
    naming the ``leads`` it was trained on."""
    convs = [ly for ly in model.layers if isinstance(ly, keras.layers.Conv1D)]
    norms = [ly for ly in model.layers if isinstance(ly, keras.layers.BatchNormalization)]
    layers = []
    for conv, bn in zip(convs[:-1], norms, strict=True):
        w, b = conv.get_weights()
        gamma, beta, mean, var = bn.get_weights()
        w, b = fold_batchnorm(w, b, gamma, beta, mean, var, bn.epsilon)
        layers.append(ConvLayer(w, b, int(conv.dilation_rate[0]), True))
    w, b = convs[-1].get_weights()
    layers.append(ConvLayer(w, b, 1, False))
    return QrsNet(layers, leads)


def target(n: int, beats: np.ndarray) -> np.ndarray:
    t = np.zeros(n, np.float32)
    k = np.arange(-3 * int(SIGMA), 3 * int(SIGMA) + 1)
    g = np.exp(-0.5 * (k / SIGMA) ** 2).astype(np.float32)
    for c in beats:
        idx = c + k
        ok = (idx >= 0) & (idx < n)
        t[idx[ok]] = np.maximum(t[idx[ok]], g[ok])
    return t


def net_input(x: np.ndarray, fs: float) -> np.ndarray:
    return NetInput(fs).process(x).astype(np.float32)


def record_leads(path: Path, leads: tuple[str, ...] | None) -> list[str]:
    """The leads of ``path`` to train on: those of ``leads`` it has (every lead it has when
    ``leads`` is None); a record with none of them is a :class:`RecordError`."""
    try:
        names = list(wfdb_module().rdheader(str(record_path(path))).sig_name or [])
    except Exception as exc:
        raise RecordError(f"{path}: cannot read the header: {exc}") from exc
    chosen = names if leads is None else [n for n in names if n in leads]
    if not chosen:
        raise RecordError(f"{path}: none of the leads {', '.join(leads or ())} "
                          f"(leads: {', '.join(names)})")
    return chosen


def load_records(paths: list[Path], leads: tuple[str, ...] | None = ("MLII",),
                 ) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(input at NET_FS, target, QRS peak-to-peak) per record and lead (``leads``: the lead
    names to read, each where the record has it; None: every lead)."""
    out = []
    for p in paths:
        for lead in record_leads(p, leads):
            rec = read_record(p, lead=lead)
            ref, cls = map_annotations(rec.ann_samples, rec.ann_symbols)
            if not len(ref):
                raise RecordError(f"{p}: no beat annotations to train on")
            normal = ref[cls == 0]
            s_pp = qrs_amplitude(rec.signal, rec.fs, normal if len(normal) >= 50 else ref)
            z = net_input(rec.signal, rec.fs)
            if len(z) <= WINDOW:
                raise RecordError(f"{p}: {len(rec.signal) / rec.fs:.1f} s long; training "
                                  f"needs records longer than {WINDOW / NET_FS:g} s")
            beats = np.round(ref * NET_FS / rec.fs).astype(np.int64)
            out.append((z, target(len(z), beats), s_pp))
    return out


def load_noise(directory: Path) -> dict[str, tuple[np.ndarray, float]]:
    """Each noise record's second channel at NET_FS, and its RMS (nst's measure)."""
    out = {}
    for name in NOISES:
        path = record_path(directory / name)
        if not path.with_suffix(".hea").is_file():
            raise RecordError(f"{directory}: no noise record {name!r} ({name}.hea); --noise "
                              f"needs {' and '.join(NOISES)} (../shared/data/nstdb-noise)")
        rec = wfdb_module().rdrecord(str(path))
        if rec.p_signal.shape[1] <= NOISE_CHANNEL:
            raise RecordError(f"{path}: needs {NOISE_CHANNEL + 1} channels")
        raw = rec.p_signal[:, NOISE_CHANNEL].astype(np.float64)
        out[name] = (net_input(raw, float(rec.fs)),
                     rms_amplitude(raw, float(rec.fs), max_windows=len(raw)))
    return out


def crops(data, noise, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    X = np.empty((n, WINDOW), np.float32)
    Y = np.empty((n, WINDOW), np.float32)
    for i in range(n):
        z, t, s_pp = data[rng.integers(len(data))]
        a = rng.integers(0, len(z) - WINDOW)
        w = z[a:a + WINDOW].copy()
        u = rng.random()
        if u >= CLEAN_SHARE:
            kinds = (["ma"] if u < 0.55 else ["bw"] if u < 0.8 else ["ma", "bw"])
            for kind in kinds:
                nz, n_rms = noise[kind]
                b = rng.integers(0, len(nz) - WINDOW)
                w += noise_gain(rng.uniform(*SNR_DB), s_pp, n_rms) * nz[b:b + WINDOW]
        X[i], Y[i] = w, t[a:a + WINDOW]
    return standardize(X)[..., None], Y[..., None]


def train_qrs_check(records: list[Path], noise_dir: Path, epochs: int = 16,
                    crops_per_epoch: int = 12000, seed: int = 0,
                    leads: tuple[str, ...] | None = ("MLII",), log=print) -> QrsNet:
    """Fit the network on ``records`` (paths; ``leads`` of each, None: all) with noise from
    ``noise_dir``."""
    set_seed(seed)
    rng = np.random.default_rng(seed)
    data, noise = load_records(records, leads), load_noise(noise_dir)
    model = network()
    model.compile(keras.optimizers.Adam(2e-3), "binary_crossentropy")
    for epoch in range(epochs):
        if epoch == max(0, epochs - 4):
            model.optimizer.learning_rate.assign(5e-4)
        X, Y = crops(data, noise, crops_per_epoch, rng)
        hist = model.fit(X, Y, batch_size=32, epochs=1, verbose=0)
        log(f"epoch {epoch + 1}/{epochs}: loss {hist.history['loss'][0]:.4f}")
    trained_on = sorted({lead for p in records for lead in record_leads(p, leads)})
    return to_qrs_net(model, tuple(trained_on))
