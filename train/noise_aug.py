"""Noise augmentation for beat training: noisy copies of the training patients' records.

A wearable's ECG carries baseline wander and muscle artifact; a model that has only seen
clean windows mistakes noisy normal beats for ectopic ones. Each training record gets
``copies`` noisy copies made from real noise records (``../shared/data/nstdb-noise``: the
noise stress test's ``bw`` and ``ma``), scaled the way ``vitaledge data nst`` scales them
(nst(1)'s SNR: the QRS peak-to-peak amplitude of the record's normal beats over the noise's
RMS, :mod:`vitaledge.device.io.nst`). Unlike the stress test's fixed protocol, the SNR is
drawn anew, uniformly in ``snr_db``, every ``segment_s`` seconds, so one copy holds many
levels; each copy takes its own noise record and starting point. The copies then go through
exactly what the clean records go through (the device's detector, detections matched to
the reference beats, windows, RR features and the running template), so the model learns
the beats the device cuts from noisy signal, detector mistakes included.

Only the training patients are copied (:func:`vitaledge.train.data.prepare` asks for the
records of the training part, and refuses a split that is not by patient: copying a whole
record would copy its held-out beats too), never validation or test patients; the copies
are built from a seed derived from the run's seed, the record and the copy, so a run
rebuilds the same beats. They add to what the network is fitted on; the reports, the
premature-beat rule and the calibration data use the clean beats only.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vitaledge.device.dsp.rr import RRSpec
from vitaledge.device.dsp.template import TemplateSpec
from vitaledge.device.dsp.windows import WindowSpec
from vitaledge.device.io.aami import map_annotations
from vitaledge.device.io.beats import BeatSet, beats_from_record
from vitaledge.device.io.nst import (
    add_noise_gains,
    noise_gain,
    noise_stretch,
    qrs_amplitude,
    read_noise,
    rms_amplitude,
)
from vitaledge.device.io.records import Record, RecordError, list_records, read_record

from .splits import BY_PATIENT

#: The SNRs noisy copies may be made at: nst's range (-6..24 dB) with room either side;
#: beyond it a copy is pure noise or the clean record (1e308 overflowed the noise gain).
SNR_DB = (-30.0, 60.0)


@dataclass(frozen=True)
class NoiseAug:
    """How noisy copies are made; saved in the run's ``config.json`` as ``noise_aug``."""

    noise: str                    # a directory of WFDB noise records (or one record path)
    copies: int = 1               # noisy copies per training record
    snr_db: list[float] = field(default_factory=lambda: [6.0, 24.0])  # uniform range
    segment_s: float = 60.0       # the SNR is drawn anew this often

    def __post_init__(self):
        if not (isinstance(self.copies, int) and self.copies >= 1):
            raise ValueError(f"noise_aug.copies: expected an int >= 1, got {self.copies!r}")
        try:
            lo_hi = [float(v) for v in self.snr_db]
        except (TypeError, ValueError):
            lo_hi = []
        if (len(lo_hi) != 2 or not all(np.isfinite(lo_hi)) or lo_hi[0] > lo_hi[1]
                or lo_hi[0] < SNR_DB[0] or lo_hi[1] > SNR_DB[1]):
            raise ValueError(f"noise_aug.snr_db: expected [low, high] in dB, low <= high, "
                             f"within {SNR_DB[0]:g}..{SNR_DB[1]:g}, got {self.snr_db!r}")
        if not (isinstance(self.segment_s, int | float) and np.isfinite(self.segment_s)
                and self.segment_s > 0):
            raise ValueError(f"noise_aug.segment_s: expected a positive number of seconds, "
                             f"got {self.segment_s!r}")

    @classmethod
    def from_dict(cls, d: dict) -> NoiseAug:
        unknown = set(d) - {"noise", "copies", "snr_db", "segment_s"}
        if unknown:
            raise ValueError(f"noise_aug: unknown keys {sorted(unknown)}")
        if "noise" not in d:
            raise ValueError("noise_aug.noise: the noise record directory is missing")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    def noise_paths(self) -> list[Path]:
        """The noise records, in name order (a directory's records, or the one given)."""
        p = Path(self.noise)
        if p.is_dir():
            paths = [q.with_suffix("") for q in sorted(p.glob("*.hea"))]
        else:
            paths = [p.with_suffix("")] if p.with_suffix(".hea").exists() else []
        if not paths:
            raise RecordError(f"{self.noise}: no WFDB noise records (*.hea)")
        return paths


def require_patient_split(split: str) -> None:
    """Refuse a split that is not by patient: a whole record is copied, so under a split by
    beat the copies would carry that record's held-out beats into training."""
    if split not in BY_PATIENT:
        raise ValueError(f"noise augmentation copies whole records, so it needs a split by "
                         f"patient ({', '.join(BY_PATIENT)}), not {split!r}: the copies "
                         "would hold the held-out beats of those records")


def _seed(*parts) -> int:
    """A stable seed from the run's seed, a record name and a copy number."""
    return zlib.crc32(":".join(str(p) for p in parts).encode())


def noisy_record(rec: Record, noise: np.ndarray, aug: NoiseAug,
                 rng: np.random.Generator) -> tuple[Record, list[float]]:
    """``rec`` with ``noise`` (one channel, at the record's rate) added from a random
    start, its SNR drawn from ``aug.snr_db`` every ``aug.segment_s``; and those SNRs."""
    n, fs = len(rec.signal), rec.fs
    samples, classes = map_annotations(rec.ann_samples, rec.ann_symbols)
    normal = samples[classes == 0]
    signal_pp = qrs_amplitude(rec.signal, fs, normal if len(normal) else samples)
    stretch = noise_stretch(noise, n, int(rng.integers(0, len(noise))))
    noise_rms = rms_amplitude(stretch, fs, max_windows=n)
    if not noise_rms > 0:
        raise RecordError(f"{rec.name}: the noise channel is flat (RMS 0); no SNR can be set")
    seg = max(1, int(round(aug.segment_s * fs)))
    snrs = rng.uniform(aug.snr_db[0], aug.snr_db[1], size=-(-n // seg))
    g = np.repeat([noise_gain(s, signal_pp, noise_rms) for s in snrs], seg)[:n]
    noisy = Record(rec.name, fs, add_noise_gains(rec.signal, stretch, g), rec.lead,
                   rec.ann_samples, rec.ann_symbols)
    return noisy, [float(s) for s in snrs]


#: Built copies, keyed by everything that makes them (patient-wise folds reuse each record's
#: copies in every fold where it is a training patient).
_BUILT: dict[tuple, BeatSet] = {}


def forget_built() -> None:
    """Drop the copies built so far (the next call builds them afresh)."""
    _BUILT.clear()


def noisy_beats(aug: NoiseAug, directory: str | Path, records: list[str], seed: int,
                window: WindowSpec, lead: str = "MLII", anchor: str = "detected",
                rr: RRSpec | None = None, template: TemplateSpec | None = None) -> BeatSet:
    """The beats of ``aug.copies`` noisy copies of each of ``records`` (names in the WFDB
    ``directory``), cut as the clean beats are (same ``window``, ``anchor``, ``rr`` and
    ``template`` specs); ``seed`` (the run's) picks the noise, its start and its SNRs."""
    noise_paths = aug.noise_paths()
    by_name = {p.name: p for p in list_records(directory)}
    noises: dict[tuple[str, float], np.ndarray] = {}
    sets = []
    for name in records:
        key = (str(directory), name, lead, seed, repr(aug.to_dict()), repr(window.to_dict()),
               anchor, repr(rr), repr(template))
        if key not in _BUILT:
            rec = read_record(by_name[name], lead=lead)
            copies = []
            for k in range(aug.copies):
                rng = np.random.default_rng(_seed(seed, name, k))
                path = noise_paths[(k + _seed(name)) % len(noise_paths)]
                if (str(path), rec.fs) not in noises:
                    noises[(str(path), rec.fs)] = read_noise(path, rec.fs)
                nz = noises[(str(path), rec.fs)]
                channel = nz[:, int(rng.integers(0, nz.shape[1]))]
                noisy, _ = noisy_record(rec, channel, aug, rng)
                copies.append(beats_from_record(noisy, window, anchor, rr, template))
            _BUILT[key] = BeatSet.concat(copies)
        sets.append(_BUILT[key])
    return BeatSet.concat(sets)
