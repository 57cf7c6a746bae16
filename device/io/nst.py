"""Noise-stress records: a clean ECG record plus a noise record at a chosen SNR, made the way
PhysioNet's ``nst`` makes the MIT-BIH Noise Stress Test Database (Moody, Muldrow & Mark, "A
noise stress test for arrhythmia detectors", Computers in Cardiology 11:381-384, 1984;
WFDB Applications Guide, nst(1) and sigamp(1)).

The method, as nst(1) defines it:

* **Signal size** ``S``: the peak-to-peak amplitude of the normal QRS complexes (a window
  around each reference ``N`` beat), as the trimmed mean over the first 300 beats (the
  largest and smallest 5 % dropped), as sigamp measures it.
* **Noise size** ``N``: the RMS amplitude of the noise (each 1-s window less its mean), a
  trimmed mean. nst measures it on the first 300 windows of the noise record; here it is
  measured on the noise that is actually added (every window of the noisy segments), so
  the SNR delivered is the SNR asked for. (Measured on 118 and 119 at 12-24 dB, nst's choice
  delivers 1.2 dB more than asked with ``ma`` and 3.8 dB more with ``bw``, whose first five
  minutes are quieter than the rest.)
* **SNR** = 20 log10(S / (N * sqrt(8))): the p-p amplitude of a sinusoid of RMS ``N`` is
  ``N * sqrt(8)``; so the noise gain for a wanted SNR is
  ``g = 10 ** (-SNR / 20) * sqrt(2) / 4 * S / N``.
* **Protocol**: no noise for the first 5 minutes (a detector's learning period), then noise
  switched on and off every 2 minutes to the end of the record.
* **No steps**: when the gain switches, a constant offset is carried so the output goes on
  from the previous sample's value instead of jumping; the same where the noise record wraps
  (a noise record shorter than the clean one is used again from its start; one shorter than
  a noisy period, 2 minutes, is refused: its noise would repeat within the period).
* Written in WFDB format 16 (nst's default), wide enough that offsets and strong noise are
  not clipped at the NST database's levels. A level the record cannot hold, because the
  sum clips at format 16's range (about -14 dB on MIT-BIH 119 with ``bw``) or the noise is
  finer than the record's resolution on every channel (50-60 dB), is refused: each
  channel's SNR is measured on what would be written (clipped, rounded to the ADC's step)
  and must be within ``SNR_TOLERANCE_DB`` (0.5 dB) of the one asked for. A channel whose
  noise alone is finer than its resolution (MIT-BIH 101's nearly isoelectric V1 at 24 dB
  holds 23.2 dB) is kept and named: ``data nst`` says so, and the sidecar's
  ``snr_held_db`` gives every channel's level.
* The reference annotations are copied unchanged.

Each ECG channel ``i`` gets noise channel ``i % n_noise``. A noise record at another sample
rate is resampled to the ECG's with the device's own polyphase resampler. ``offset_s`` (or a
``seed``) picks where in the noise record to start, so several records can be made from one
noise record reproducibly. A ``NAME.nst.json`` sidecar lists the SNR, gain, the measured
sizes and the noisy segments, for reports that score noisy and clean stretches apart.

:func:`nst_label` tells what a ready-made noise-stress record is (clean record, noise, SNR)
from that sidecar or from the NST database's own names (``118e06``: 118 with electrode
motion noise ``em`` at 6 dB; ``119e_6``: at -6 dB), so the real database's records are
scored beside the ones made here.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vitaledge.device.dsp.resample import resample
from vitaledge.device.io.aami import map_annotations
from vitaledge.device.io.records import (
    RecordError,
    check_header,
    read_annotations,
    record_path,
    signal_files,
    wfdb_module,
)

LEARNING_S = 300.0
PERIOD_S = 120.0
#: The least noisy time a record must hold after the learning period, to measure the noise
#: added on (in 1-s windows) and to be worth scoring.
MIN_NOISY_S = 10.0
#: How far the SNR a record would hold may be from the one asked for (see the docstring).
SNR_TOLERANCE_DB = 0.5
NST_SNRS = (24.0, 18.0, 12.0, 6.0, 0.0, -6.0)  # the NST database's levels


def trimmed_mean(values: np.ndarray, trim: float = 0.05) -> float:
    """Mean after dropping the largest and smallest ``trim`` fraction (sigamp's estimate)."""
    v = np.sort(np.asarray(values, np.float64))
    k = int(len(v) * trim)
    v = v[k: len(v) - k] if len(v) > 2 * k else v
    if not len(v):
        raise ValueError("no measurements to average")
    return float(v.mean())


def qrs_amplitude(x: np.ndarray, fs: float, beats: np.ndarray, half_window_s: float = 0.05,
                  max_beats: int = 300) -> float:
    """Trimmed-mean peak-to-peak amplitude of ``x`` within ±``half_window_s`` of ``beats``."""
    h = int(round(half_window_s * fs))
    beats = [int(b) for b in beats if h <= b < len(x) - h][:max_beats]
    if not beats:
        raise ValueError("no normal beats to measure the QRS amplitude on")
    return trimmed_mean(np.array([np.ptp(x[b - h: b + h + 1]) for b in beats]))


def rms_amplitude(x: np.ndarray, fs: float, window_s: float = 1.0,
                  max_windows: int = 300) -> float:
    """Trimmed-mean RMS of ``x`` over 1-s windows, each less its own mean."""
    w = int(round(window_s * fs))
    n = min(len(x) // w, max_windows)
    if n < 1:
        raise ValueError("noise shorter than one measurement window")
    seg = x[: n * w].reshape(n, w)
    return trimmed_mean(np.sqrt(((seg - seg.mean(axis=1, keepdims=True)) ** 2).mean(axis=1)))


def noise_gain(snr_db: float, signal_pp: float, noise_rms: float) -> float:
    """The gain on the noise that gives ``snr_db`` (nst(1)'s definition)."""
    return 10 ** (-snr_db / 20) * np.sqrt(2) / 4 * signal_pp / noise_rms


def measured_snr(signal_pp: float, noise_rms: float) -> float:
    """SNR in dB of a signal of QRS p-p ``signal_pp`` and noise of RMS ``noise_rms``."""
    return float(20 * np.log10(signal_pp / (noise_rms * np.sqrt(8))))


def noisy_segments(n: int, fs: float, learning_s: float = LEARNING_S,
                   period_s: float = PERIOD_S) -> list[tuple[int, int]]:
    """[start, stop) sample ranges where the protocol adds noise."""
    out, t, on = [], int(round(learning_s * fs)), True
    step = int(round(period_s * fs))
    while t < n:
        if on:
            out.append((t, min(t + step, n)))
        t += step
        on = not on
    return out


def add_noise(x: np.ndarray, noise: np.ndarray, gain: float,
              segments: list[tuple[int, int]]) -> np.ndarray:
    """``x`` (n,) plus ``gain * noise`` (n,) inside ``segments``, with an offset carried at
    every switch so the output never steps."""
    g = np.zeros(len(x))
    for a, b in segments:
        g[a:b] = gain
    return add_noise_gains(x, noise, g)


def add_noise_gains(x: np.ndarray, noise: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``x`` (n,) plus ``g * noise`` for a per-sample gain ``g`` (n,), piecewise constant;
    at every change of gain an offset is carried so the output never steps."""
    raw = x + g * noise
    out = np.empty_like(raw)
    switches = np.flatnonzero(np.diff(g) != 0) + 1
    start, z = 0, 0.0
    for s in [*switches, len(x)]:
        out[start:s] = raw[start:s] - z
        if s < len(x):
            z = raw[s - 1] + (g[s] - g[s - 1]) * noise[s - 1] - out[s - 1]
            # the next sample continues from out[s-1] as if the new gain had held already
        start = s
    return out


def noise_stretch(noise: np.ndarray, n: int, start: int) -> np.ndarray:
    """``n`` samples of the noise channel ``noise`` from ``start``, wrapping around its end
    with an offset carried at each wrap so the noise does not step there."""
    idx = (start + np.arange(n)) % len(noise)
    stretch = noise[idx]
    for w in np.flatnonzero(np.diff(idx) < 0) + 1:
        stretch[w:] += stretch[w - 1] - stretch[w]
    return stretch


def read_noise(path: str | Path, fs: float) -> np.ndarray:
    """(n, channels) samples of the noise record ``path``, resampled to ``fs`` with the
    device's polyphase resampler; a one-line :class:`RecordError` for what cannot be used."""
    path = Path(path)
    nrec = _read_all(path)
    nz = nrec.p_signal.astype(np.float64)
    check_finite(nz, path)
    if abs(float(nrec.fs) - fs) > 1e-6:
        nz = np.stack([resample(nz[:, j], float(nrec.fs), fs) for j in range(nz.shape[1])],
                      axis=1)
    return nz


def snr_tag(snr_db: float) -> str:
    """The SNR as a record's name carries it: ``6``, ``-6``; a fractional one with ``p``
    for its point (``6p5``, ``-0p5``), since wfdb refuses a '.' in a record name."""
    return f"{snr_db:g}".replace(".", "p")


def nst_name(clean: str, noise: str, snr_db: float) -> str:
    """The name ``make_nst`` gives a record by default: ``118_ma12``, ``118_bw-6``,
    ``118_ma6p5``."""
    return f"{clean}_{noise}{snr_tag(snr_db)}"


def nst_files(out_dir: str | Path, name: str) -> list[Path]:
    """The files ``make_nst`` writes for the record ``name`` in ``out_dir``."""
    return [Path(out_dir) / f"{name}{ext}" for ext in (".hea", ".dat", ".atr", ".nst.json")]


def make_out_dir(out_dir: str | Path) -> Path:
    """``out_dir``, created if need be; a one-line :class:`RecordError` when it cannot be."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RecordError(f"cannot create output directory {out_dir}: "
                          f"{exc.strerror or exc}") from exc
    return out_dir


@dataclass
class NstResult:
    record: str
    snr_db: float
    gains: list[float]
    signal_pp: list[float]
    noise_rms: list[float]
    noise_record: str
    offset_s: float
    segments: list[tuple[int, int]]
    fs: float
    clipped_samples: int
    clean_record: str = ""
    #: sha256 over the clean and noise records' files (:func:`inputs_digest`): what a
    #: work directory's record was made from, so a bench reuses it only for the same inputs
    inputs_sha256: str = ""
    #: the SNR each channel holds as written (measured on the clipped, rounded record): the
    #: level asked for within SNR_TOLERANCE_DB, except on a channel whose noise is finer
    #: than its resolution (a nearly isoelectric lead: MIT-BIH 101's V1 at 24 dB holds
    #: 23.2); None where no noise is left at all
    snr_held_db: list = field(default_factory=list)


def inputs_digest(clean: str | Path, noise: str | Path) -> str:
    """sha256 of the clean record's .hea, .dat and .atr and the noise record's .hea and
    .dat (their bytes, in that order); a file that is missing counts as empty."""
    h = hashlib.sha256()
    for path in [*nst_inputs(clean, (".hea", ".dat", ".atr")), *nst_inputs(noise,
                                                                           (".hea", ".dat"))]:
        h.update(path.name.encode() + b"\0")
        if path.is_file():
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def nst_inputs(record: str | Path, exts: tuple[str, ...]) -> list[Path]:
    """The files of ``record`` with extensions ``exts``; for ``.dat``, the signal files its
    header names (MIT-BIH's are ``NAME.dat``; ``NAME.dat`` when the header cannot be read)."""
    path = record_path(record)
    out = []
    for ext in exts:
        if ext == ".dat":
            out += signal_files(path)
        else:
            out.append(path.with_suffix(ext))
    return out


def whole_format16(record: str | Path) -> bool:
    """The record (as :func:`write_nst` writes them: one format-16 signal file) holds every
    sample its header announces: a file cut short is not whole."""
    path = record_path(record)
    try:
        head = wfdb_module().rdheader(str(path))
        size = path.with_suffix(".dat").stat().st_size
    except Exception:
        return False
    return set(head.fmt or []) == {"16"} and size == 2 * int(head.n_sig) * int(head.sig_len)


#: The MIT-BIH Noise Stress Test Database's record names: clean record, ``e``, SNR as two
#: digits or ``_`` and one for a negative SNR (118e24 ... 118e00, 118e_6); noise ``em``.
NSTDB_NAME = re.compile(r"^(?P<clean>\d{3})e(?P<snr>\d\d|_\d)$")
NSTDB_NOISE = "em"


@dataclass(frozen=True)
class NstLabel:
    """What a ready-made noise-stress record is, in the names the bench's rows use."""

    clean: str
    noise: str
    snr: str  # as ``f"{snr_db:g}"``: "12", "-6"


def nst_label(path: str | Path) -> NstLabel:
    """The clean record, noise and SNR of the noise-stress record ``path``: from its
    ``.nst.json`` sidecar (``vitaledge data nst``), else from the NST database's naming;
    a RecordError or ValueError naming the record when it is missing or neither tells."""
    path = record_path(path)
    if not path.with_suffix(".hea").exists():
        raise RecordError(f"{path}.hea: no such WFDB header")
    sidecar = path.with_name(f"{path.name}.nst.json")
    if sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text())
        except UnicodeDecodeError as exc:
            raise ValueError(f"{sidecar}: not a noise-stress sidecar (not UTF-8 text)") from exc
        except ValueError as exc:
            raise ValueError(f"{sidecar}: not a noise-stress sidecar (not JSON: {exc})") \
                from exc
        if not isinstance(meta, dict):
            raise ValueError(f"{sidecar}: not a noise-stress sidecar (a JSON "
                             f"{type(meta).__name__}, not an object)")
        snr, noise, clean = (meta.get(k) for k in ("snr_db", "noise_record", "clean_record"))
        if "snr_db" not in meta or "noise_record" not in meta:
            missing = [k for k in ("snr_db", "noise_record") if k not in meta]
            raise ValueError(f"{sidecar}: not a noise-stress sidecar (no "
                             f"{' or '.join(missing)})")
        if isinstance(snr, bool) or not isinstance(snr, int | float) or not math.isfinite(snr):
            raise ValueError(f"{sidecar}: snr_db is {snr!r}, not a level in dB")
        if not isinstance(noise, str) or not noise:
            raise ValueError(f"{sidecar}: noise_record is {noise!r}, not a record name")
        if clean is not None and not isinstance(clean, str):
            raise ValueError(f"{sidecar}: clean_record is {clean!r}, not a record name")
        snr, clean = float(snr), clean or ""
        if not clean:  # a sidecar written before it named the clean record
            suffix = f"_{noise}{snr_tag(snr)}"
            clean = path.name[:-len(suffix)] if path.name.endswith(suffix) else path.name
        return NstLabel(clean, noise, f"{snr:g}")
    m = NSTDB_NAME.match(path.name)
    if m is None:
        raise ValueError(f"{path.name}: not a noise-stress record this bench can label (no "
                         f"{sidecar.name} beside it, and not named as the NST database names "
                         "its records, e.g. 118e06); make it with `vitaledge data nst`")
    snr = -int(m["snr"][1]) if m["snr"].startswith("_") else int(m["snr"])
    return NstLabel(m["clean"], NSTDB_NOISE, f"{snr:g}")


def _checked(path: str | Path) -> Path:
    """The record path, its header there and sound (a one-line RecordError otherwise)."""
    path = record_path(path)
    check_header(path)
    return path


def _read_all(path: Path):
    path = _checked(path)
    try:
        return wfdb_module().rdrecord(str(path))
    except Exception as exc:
        raise RecordError(f"{path}: cannot read WFDB record: {exc}") from exc


def check_finite(x: np.ndarray, path: str | Path) -> None:
    """A one-line :class:`RecordError` naming the first non-finite sample of ``x``
    (samples x channels) of the record ``path``."""
    bad = ~np.isfinite(x)
    if bad.any():
        i, ch = map(int, np.argwhere(bad)[0])
        raise RecordError(f"{path}: {int(bad.sum())} non-finite samples (the first at sample "
                          f"{i}, channel {ch})")


def check_noise(noise: str | Path) -> None:
    """Refuse, before anything is made from it, a noise record that cannot give noise: shorter
    than one noisy period (:func:`check_noise_length`), unreadable, with a non-finite sample,
    or with a channel that holds no noise at all (RMS 0: its gain for any SNR is infinite)."""
    check_noise_length(noise)
    path = _checked(noise)
    nrec = _read_all(path)
    nz = nrec.p_signal.astype(np.float64)
    check_finite(nz, path)
    for j in range(nz.shape[1]):
        if rms_amplitude(nz[:, j], float(nrec.fs), max_windows=len(nz)) <= 0:
            raise RecordError(f"{path}: channel {j} ({nrec.sig_name[j]}) holds no noise (its "
                              "RMS is 0), so no gain gives an SNR")


def check_noise_length(noise: str | Path) -> None:
    """Refuse, from its header alone, a noise record shorter than one noisy period: its noise
    would repeat within the period. Callers making several records check every noise
    record first, so none is refused after others were written."""
    path = _checked(noise)
    try:
        head = wfdb_module().rdheader(str(path))
    except Exception as exc:
        raise RecordError(f"{path}: cannot read WFDB header: {exc}") from exc
    seconds = (head.sig_len or 0) / float(head.fs)
    if seconds < PERIOD_S:
        raise RecordError(f"{path}: {seconds:.1f} s of noise; a noise record needs at least "
                          f"one noisy period ({PERIOD_S:.0f} s), or the same noise would "
                          "repeat within it")


def check_unique_names(clean: list, noises: list) -> None:
    """Refuse (ValueError) two clean or two noise records of one name: the noise-stress
    records made from them are named by it, so one would replace another."""
    for kind, paths in (("clean", clean), ("noise", noises)):
        names = [record_path(p).name for p in paths]
        twice = next((n for n in names if names.count(n) > 1), None)
        if twice:
            raise ValueError(f"two {kind} records are named {twice!r}: each record's name "
                             "must be unique (copy or link one under another name)")


def check_distinct_records(clean: list, noises: list, levels) -> list[str]:
    """The names of the records made from every clean record x noise record x level, in that
    order; a ValueError when two would have one name (118 + ``ma`` at 12 dB and 118 +
    ``ma1`` at 2 dB are both ``118_ma12``), since the second would replace the first."""
    check_unique_names(clean, noises)
    names = [nst_name(record_path(c).name, record_path(n).name, float(v))
             for c in clean for n in noises for v in levels]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise ValueError(f"two of the records asked for would be named {twice!r} (a clean "
                         "record's name, the noise's and the SNR run together): rename a "
                         "noise record, or make them in two runs with different --out")
    return names


def read_clean(clean: str | Path):
    """(record, annotations, each channel's QRS amplitude) of the clean record ``clean``, checked
    as the protocol needs it: finite samples, reference annotations, longer than the
    learning period, normal beats to measure the QRS amplitude on in every channel; a
    one-line :class:`RecordError` naming the record otherwise. Callers making several
    records check every clean record first, so none is refused after others were written."""
    clean = record_path(clean)
    rec = _read_all(clean)
    fs = float(rec.fs)
    x = rec.p_signal.astype(np.float64)
    check_finite(x, clean)
    if not clean.with_suffix(".atr").exists():
        raise RecordError(f"{clean}.atr: reference annotations needed to measure the QRS "
                          "amplitude (no such file)")
    ann = read_annotations(clean, "atr", len(x))
    samples, classes = map_annotations(np.asarray(ann.sample), list(ann.symbol))
    normal = samples[classes == 0]
    if sum(b - a for a, b in noisy_segments(len(x), fs)) < MIN_NOISY_S * fs:
        raise RecordError(f"{clean}: {len(x) / fs:.1f} s long; the protocol adds noise only "
                          f"after a {LEARNING_S:.0f}-s noise-free learning period, and at "
                          f"least {MIN_NOISY_S:.0f} s of noisy time is needed")
    try:
        amplitudes = [qrs_amplitude(x[:, i], fs, normal) for i in range(x.shape[1])]
    except ValueError as exc:  # e.g. a paced record: no beat is labelled normal
        raise RecordError(f"{clean}: {exc}") from exc
    return rec, ann, amplitudes


@dataclass
class NstSignal:
    """A noise-stress record made in memory (:func:`build_nst`), not yet written."""

    result: NstResult
    signal: np.ndarray  # (n, channels) in physical units, clipped to format 16's range
    rec: object  # the clean wfdb Record (units, names, ADC gains)
    ann: object  # its reference annotations


def build_nst(clean: str | Path, noise: str | Path, snr_db: float, name: str | None = None,
              offset_s: float | None = None, seed: int | None = None) -> NstSignal:
    """The noise-stress record of ``clean`` + ``noise`` at ``snr_db``, in memory; a one-line
    :class:`RecordError` (naming the channel) when a channel would miss ``snr_db`` by more
    than ``SNR_TOLERANCE_DB``: clipped at format 16's range, or noise finer than the
    record's resolution."""
    if not np.isfinite(snr_db):
        raise ValueError(f"SNR {snr_db!r}: expected a finite number of dB")
    clean, noise = record_path(clean), record_path(noise)
    rec, ann, amplitudes = read_clean(clean)
    fs = float(rec.fs)
    x = rec.p_signal.astype(np.float64)
    check_noise_length(noise)
    nz = read_noise(noise, fs)
    if offset_s is None:
        offset_s = 0.0 if seed is None else float(
            np.random.default_rng(seed).integers(0, max(1, int(len(nz) / fs))))
    start = int(round(offset_s * fs)) % len(nz)
    segments = noisy_segments(len(x), fs)
    out = np.empty_like(x)
    gains, s_pp, n_rms = [], [], []
    for i in range(x.shape[1]):
        sp = amplitudes[i]
        stretch = noise_stretch(nz[:, i % nz.shape[1]], len(x), start)
        nr = rms_amplitude(np.concatenate([stretch[a:b] for a, b in segments]), fs,
                           max_windows=len(x))
        if nr <= 0:
            raise RecordError(f"{noise}: channel {i % nz.shape[1]} holds no noise over the "
                              f"noisy periods of {clean.name} (its RMS is 0)")
        g = noise_gain(snr_db, sp, nr)
        out[:, i] = add_noise(x[:, i], stretch, g, segments)
        gains.append(g)
        s_pp.append(sp)
        n_rms.append(nr)
    adc_gain = [float(g) for g in rec.adc_gain]
    limit = np.array([32767.0 / g for g in adc_gain])
    clipped = int((np.abs(out) > limit).sum())
    out = np.clip(out, -limit, limit)
    held = []  # the SNR each channel of the written record would hold
    for i in range(x.shape[1]):
        step = 1.0 / adc_gain[i]
        added = np.round(out[:, i] / step) * step - x[:, i]
        got = np.concatenate([added[a:b] for a, b in segments])
        rms = rms_amplitude(got, fs, max_windows=len(got))
        held.append(measured_snr(s_pp[i], rms) if rms > 1e-6 * step else math.inf)
    off = [i for i, h in enumerate(held) if not abs(h - snr_db) <= SNR_TOLERANCE_DB]
    clipping = [i for i in off if (np.abs(out[:, i]) >= limit[i]).any()]
    if clipping or (off and len(off) == len(held)):  # clipped, or too fine on every channel
        i = clipping[0] if clipping else off[-1]
        why = (f"{int((np.abs(out[:, i]) >= limit[i]).sum())} samples clip at format 16's "
               "range" if clipping else f"the noise is finer than the record's resolution, "
               f"{1.0 / adc_gain[i]:.3g} {rec.units[i]}, on every channel")
        level = f"{held[i]:.1f} dB" if math.isfinite(held[i]) else "no noise"
        raise RecordError(f"{clean.name} + {noise.name} at {snr_db:g} dB: channel {i} "
                          f"({rec.sig_name[i]}) would hold {level} ({why}); the record "
                          "cannot hold this level")
    res = NstResult(name or nst_name(clean.name, noise.name, snr_db), float(snr_db), gains,
                    s_pp, n_rms, noise.name, float(offset_s),
                    [(int(a), int(b)) for a, b in segments], fs, clipped, clean.name,
                    inputs_digest(clean, noise),
                    [round(h, 2) if math.isfinite(h) else None for h in held])
    return NstSignal(res, out, rec, ann)


def write_nst(made: NstSignal, out_dir: str | Path) -> NstResult:
    """Write a record :func:`build_nst` made into ``out_dir`` (its files replaced)."""
    wfdb = wfdb_module()
    res, rec, ann, out = made.result, made.rec, made.ann, made.signal
    out_dir = make_out_dir(out_dir)
    wfdb.wrsamp(res.record, fs=res.fs, units=list(rec.units), sig_name=list(rec.sig_name),
                p_signal=out, fmt=["16"] * out.shape[1],
                adc_gain=[float(g) for g in rec.adc_gain],
                baseline=[0] * out.shape[1], write_dir=str(out_dir),
                comments=[f"nst: {res.clean_record} + {res.noise_record} at "
                          f"{res.snr_db:g} dB"])
    wfdb.wrann(res.record, "atr", np.asarray(ann.sample), symbol=list(ann.symbol),
               aux_note=list(ann.aux_note) if ann.aux_note else None,
               write_dir=str(out_dir))
    (out_dir / f"{res.record}.nst.json").write_text(json.dumps(asdict(res), indent=2) + "\n")
    return res


def make_nst(clean: str | Path, noise: str | Path, snr_db: float, out_dir: str | Path,
             name: str | None = None, offset_s: float | None = None,
             seed: int | None = None) -> NstResult:
    """Write the noise-stress record ``out_dir/name`` (default :func:`nst_name`,
    e.g. ``118_ma12``, ``118_bw-6``, ``118_ma6p5``) and return what was done; files of the
    same names there are replaced (``data nst`` refuses them unless ``--overwrite``)."""
    return write_nst(build_nst(clean, noise, snr_db, name, offset_s, seed), out_dir)


def check_levels(clean: str | Path, noise: str | Path, levels, seed: int | None = None
                 ) -> None:
    """Refuse (one-line :class:`RecordError`) before anything is written a clean record,
    noise record or level the records of ``clean`` + ``noise`` at ``levels`` cannot be made
    from: both records checked, and the lowest and highest level built in memory (clipping
    grows as the SNR falls, the resolution's share of the noise as it rises)."""
    check_noise(noise)
    for snr in sorted({min(levels), max(levels)}):  # each build reads and checks ``clean``
        build_nst(clean, noise, float(snr), seed=seed)


def snr_of(noisy: np.ndarray, clean: np.ndarray, fs: float, normal_beats: np.ndarray,
           segments: list[tuple[int, int]]) -> float:
    """The SNR measured back on a noise-stress signal, independently of how the gain was
    set: the QRS amplitude of every normal beat inside the noisy segments (not the first
    300 of the record) against the RMS of what was added there."""
    added = np.concatenate([(noisy - clean)[a:b] for a, b in segments])
    inside = np.concatenate([normal_beats[(normal_beats >= a) & (normal_beats < b)]
                             for a, b in segments])
    return measured_snr(qrs_amplitude(clean, fs, inside, max_beats=len(inside)),
                        rms_amplitude(added, fs, max_windows=len(added)))
