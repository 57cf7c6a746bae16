"""Reading MIT-BIH style WFDB records (signal + reference beat annotations).

Signals in the common layouts are decoded by :mod:`.wfdb_signals` (no pandas, which the
daemon cannot afford on a Pi); other layouts and all annotations go through ``wfdb``,
imported only when needed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitaledge.device.io.wfdb_signals import read_signals

log = logging.getLogger(__name__)


class RecordError(ValueError):
    """A record is missing, malformed or unusable; the message names the file."""


@dataclass
class Record:
    """One lead of a record, in physical units, with its reference annotations."""

    name: str
    fs: float
    signal: np.ndarray  # float64, 1-D
    lead: str
    ann_samples: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ann_symbols: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return len(self.signal) / self.fs


def wfdb_module():
    """The wfdb package, or a clear error naming the extra that installs it."""
    try:
        import wfdb
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RecordError("reading or writing WFDB records needs the 'wfdb' package "
                          "(pip install 'vitaledge[device]')") from exc
    return wfdb


def read_record(path: str | Path, lead: str = "MLII", annotator: str | None = "atr") -> Record:
    """Read one lead of a WFDB record and (if present) its annotations.

    ``path`` is the record path without extension (``data/mitdb/100``) or with ``.hea``.
    When ``lead`` is not in the record (MIT-BIH 102 and 104 have no MLII), the first channel
    is used and a warning is logged; ``Record.lead`` says which lead was read.
    """
    path = Path(path)
    if path.suffix in {".hea", ".dat", ".atr"}:
        path = path.with_suffix("")
    if not path.with_suffix(".hea").exists():
        raise RecordError(f"{path}.hea: no such WFDB header")
    light = read_signals(path)
    if light is not None:
        fs, names, p_signal = light.fs, light.names, light.physical
    else:
        wfdb = wfdb_module()
        try:
            rec = wfdb.rdrecord(str(path))
        except Exception as exc:
            raise RecordError(f"{path}: cannot read WFDB record: {exc}") from exc
        fs, names, p_signal = rec.fs, list(rec.sig_name or []), rec.p_signal
    if not np.isfinite(fs) or fs <= 0:
        raise RecordError(f"{path}.hea: sample rate {fs!r} is not a positive number")
    if lead in names:
        ch = names.index(lead)
    else:
        ch = 0
        log.warning("%s: lead %s not found (leads %s); using %s", path.name, lead, names,
                    names[0] if names else "channel 0")
    if p_signal is None or p_signal.ndim != 2 or p_signal.shape[1] <= ch:
        raise RecordError(f"{path}: record has no signal channel {ch}")
    sig = np.asarray(p_signal[:, ch], dtype=np.float64)
    bad = ~np.isfinite(sig)
    if bad.any():
        raise RecordError(f"{path}: lead {names[ch] if names else ch} has {int(bad.sum())} "
                          f"non-finite samples (first at sample {int(np.argmax(bad))})")
    out = Record(name=path.name, fs=float(fs), signal=sig,
                 lead=names[ch] if names else f"ch{ch}")
    if annotator:
        ann_path = path.with_suffix("." + annotator)
        if ann_path.exists():
            try:
                ann = wfdb_module().rdann(str(path), annotator)
            except Exception as exc:
                raise RecordError(f"{ann_path}: cannot read annotations: {exc}") from exc
            out.ann_samples = np.asarray(ann.sample, dtype=np.int64)
            out.ann_symbols = list(ann.symbol)
    return out


def list_records(directory: str | Path, annotator: str = "atr") -> list[Path]:
    """Record paths (without extension) in ``directory`` that have a header and annotations."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RecordError(f"{directory}: not a directory")
    paths = sorted(p.with_suffix("") for p in directory.glob("*.hea")
                   if p.with_suffix("." + annotator).exists())
    if not paths:
        raise RecordError(f"{directory}: no WFDB records with .{annotator} annotations")
    return paths
