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

from vitaledge.device.dsp.spec_fields import FS_RANGE
from vitaledge.device.io.wfdb_signals import leading_number, read_signals

log = logging.getLogger(__name__)


class RecordError(ValueError):
    """A record is missing, malformed or unusable; the message names the file."""


class LeadMissing(RecordError):
    """The record has no lead of the name asked for."""



#: ADC gains (ADC units per physical unit, the sign the lead's polarity) a recording can
#: have. Outside, the physical signal is not a signal: a gain of 1e300 (or infinity) made
#: every sample 0 in float32 and a record read as all lead-off, exit 0; 1e-320 made them
#: infinite. 0 is WFDB's "uncalibrated", read as its default gain of 200. Wide: wfdb.wrsamp
#: writes a gain that fills the ADC's range, 9.4e9 for a channel of a microvolt in mV.
GAIN_RANGE = (1e-12, 1e15)

#: Signal formats WFDB defines (the WFDB format specification, signal files).
WFDB_FORMATS = {"0", "8", "16", "24", "32", "61", "80", "160", "212", "310", "311",
                "508", "516", "524"}

#: Bytes per sample of the formats whose file size follows from the sample count.
_BYTES_PER_SAMPLE = {"8": 1.0, "16": 2.0, "24": 3.0, "32": 4.0, "61": 2.0, "80": 1.0,
                     "160": 2.0, "212": 1.5}


def check_header(path: Path) -> None:
    """Refuse a header that cannot describe a recording, naming the file and the field:
    missing, empty, a first line without sample rate, a signal count that does not match
    its signal lines, an unknown format, a rate outside :data:`FS_RANGE`, an ADC gain that
    is not a recording's (:func:`check_gain`), or a signal file shorter than the samples
    the header declares."""
    hea = path.with_suffix(".hea")
    if not hea.exists():
        raise RecordError(f"{hea}: no such WFDB header")
    try:
        text = hea.read_text()
    except UnicodeDecodeError as exc:
        raise RecordError(f"{hea}: not a WFDB header (not text: {exc.reason})") from exc
    lines = [ln.split() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines:
        raise RecordError(f"{hea}: empty header (expected 'NAME NSIG FS NSAMP' on line 1)")
    head = lines[0]
    if len(head) < 2 or not head[1].isdigit():
        raise RecordError(f"{hea}: line 1 {' '.join(head)!r} is not 'NAME NSIG [FS [NSAMP]]'")
    if "/" in head[0]:
        return  # a multi-segment record: wfdb checks its segments
    nsig = int(head[1])
    sig_lines = lines[1:]
    if len(sig_lines) < nsig:
        raise RecordError(f"{hea}: declares {nsig} signals but has {len(sig_lines)} signal "
                          "lines")
    try:
        fs = float(leading_number(head[2])) if len(head) > 2 else 250.0
    except ValueError:
        raise RecordError(f"{hea}: sample rate {head[2]!r} is not a number") from None
    if not FS_RANGE[0] <= fs <= FS_RANGE[1]:
        raise RecordError(f"{hea}: sample rate {fs:g} Hz is outside {FS_RANGE[0]:g}-"
                          f"{FS_RANGE[1]:g} Hz")
    fmts = [ln[1].split("x")[0].split(":")[0].split("+")[0] for ln in sig_lines[:nsig]
            if len(ln) > 1]
    for f in fmts:
        if f not in WFDB_FORMATS:
            raise RecordError(f"{hea}: signal format {f!r} is not a WFDB format (expected one "
                              f"of {', '.join(sorted(WFDB_FORMATS, key=int))})")
    for i, ln in enumerate(sig_lines[:nsig]):
        check_gain(hea, i, ln[2] if len(ln) > 2 else None)
    if len(head) > 3 and not head[3].isdigit():
        raise RecordError(f"{hea}: sample count {head[3]!r} is not a whole number of samples")
    nsamp = int(head[3]) if len(head) > 3 else None
    files = {ln[0] for ln in sig_lines[:nsig]}
    if nsamp and len(files) == 1 and len(set(fmts)) == 1 and fmts[0] in _BYTES_PER_SAMPLE \
            and all(len(ln) > 1 and ln[1] == fmts[0] for ln in sig_lines[:nsig]):
        dat = path.parent / files.pop()
        if dat.exists():
            if not dat.is_file():  # its size was taken for samples
                raise RecordError(f"{dat}: a directory (or not a regular file), not a signal "
                                  "file")
            held = int(dat.stat().st_size / (_BYTES_PER_SAMPLE[fmts[0]] * nsig))
            if held < nsamp:
                raise RecordError(f"{dat}: holds {held} samples per signal; the header "
                                  f"declares {nsamp} (a truncated file?)")


def check_gain(hea: Path, i: int, field: str | None) -> None:
    """Signal ``i``'s ADC gain field (``GAIN[(BASELINE)][/UNITS]``, absent: WFDB's default)
    must be a number, 0 (uncalibrated) or of a size in :data:`GAIN_RANGE`."""
    if field is None:
        return
    text = leading_number(field)
    try:
        gain = float(text)
    except ValueError:
        raise RecordError(f"{hea}: signal {i}'s ADC gain {text!r} is not a number") from None
    if gain != 0 and not GAIN_RANGE[0] <= abs(gain) <= GAIN_RANGE[1]:
        raise RecordError(f"{hea}: signal {i}'s ADC gain {gain:g} is not a recording's (expected "
                          f"{GAIN_RANGE[0]:g} to {GAIN_RANGE[1]:g} ADC units per unit, or 0)")


def check_annotations(ann_path: Path, samples: np.ndarray, n_signal: int) -> None:
    """Annotations must lie inside the signal and in time order: a truncated or foreign
    ``.atr`` that wfdb still decodes shows up here."""
    if len(samples) == 0:
        return
    outside = (samples < 0) | (samples >= n_signal)
    if outside.any():
        i = int(np.argmax(outside))
        raise RecordError(f"{ann_path}: annotation {i} at sample {int(samples[i])} is outside "
                          f"the record's {n_signal} samples (not this record's annotations?)")
    back = np.diff(samples) < 0
    if back.any():
        i = int(np.argmax(back)) + 1
        raise RecordError(f"{ann_path}: annotation {i} at sample {int(samples[i])} comes "
                          f"before the one ahead of it (not a WFDB annotation file?)")


def check_annotation_end(ann_path: Path) -> None:
    """Refuse an annotation file that does not end with the MIT format's end marker (a
    word of two zero bytes, where an annotation would begin): wfdb decodes a file cut at
    an even byte count without complaint, dropping the annotations cut off. The walk over
    the annotation words is wfdb's own (SKIP, NUM/SUB/CHN and AUX words)."""
    data = np.fromfile(ann_path, dtype="<u2") if ann_path.stat().st_size % 2 == 0 else None
    if data is None:
        raise RecordError(f"{ann_path}: {ann_path.stat().st_size} bytes, not whole 2-byte "
                          "annotation words: truncated or not a WFDB annotation file")
    if not len(data):
        raise RecordError(f"{ann_path}: empty annotation file (not even its end marker): "
                          "truncated?")
    words, n, i = data.tolist(), len(data), 0
    while i < n - 1:
        while i < n and words[i] >> 10 == 59:  # SKIP: two more words of interval
            i += 3
        i += 1  # the annotation's own word
        while i < n and words[i] >> 10 > 59:  # NUM, SUB, CHN; AUX with its text
            i += 1 + ((words[i] & 0x3FF) + 1) // 2 if words[i] >> 10 == 63 else 1
    if i != n - 1 or words[-1] != 0:
        raise RecordError(f"{ann_path}: annotation file ends without its end marker: "
                          "truncated?")


def read_annotations(path: str | Path, annotator: str = "atr", n_signal: int | None = None):
    """The wfdb Annotation of record ``path`` (``NAME.<annotator>``), a whole file: a
    :class:`RecordError` naming the file when it is missing, truncated or not a WFDB
    annotation file, or (given the signal's length ``n_signal``) its annotations lie
    outside the signal or out of time order."""
    path = record_path(path)
    ann_path = path.with_suffix("." + annotator)
    if not ann_path.is_file():
        raise RecordError(f"{ann_path}: no such annotation file")
    try:
        ann = wfdb_module().rdann(str(path), annotator)
    except Exception as exc:
        raise RecordError(f"{ann_path}: truncated or not a WFDB annotation file "
                          f"(wfdb: {exc})") from exc
    check_annotation_end(ann_path)
    if n_signal is not None:
        check_annotations(ann_path, np.asarray(ann.sample, dtype=np.int64), n_signal)
    return ann


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


def record_path(path: str | Path) -> Path:
    """A WFDB record's path without the extension it may be given with (``.hea``, ``.dat``,
    ``.atr``): ``mitdb/100.hea`` -> ``mitdb/100``; its ``name`` is the record's name."""
    path = Path(path)
    return path.with_suffix("") if path.suffix in {".hea", ".dat", ".atr"} else path


def signal_files(record: str | Path) -> list[Path]:
    """The signal files the header of ``record`` names, in order, each once (``NAME.dat``
    when the header cannot be read or names none)."""
    path = record_path(record)
    try:
        names = wfdb_module().rdheader(str(path)).file_name or []
    except Exception:  # an unreadable header: the record's checks name it elsewhere
        names = []
    names = list(dict.fromkeys(n for n in names if n))
    return [path.with_name(n) for n in names] or [path.with_suffix(".dat")]


def read_record(path: str | Path, lead: str = "MLII", annotator: str | None = "atr") -> Record:
    """Read one lead of a WFDB record and (if present) its annotations.

    ``path`` is the record path without extension (``data/mitdb/100``) or with ``.hea``.
    When ``lead`` is not in the record (MIT-BIH 102 and 104 have no MLII), the first channel
    is used and a warning is logged; ``Record.lead`` says which lead was read.
    """
    path = record_path(path)
    check_header(path)
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
    if p_signal is None or p_signal.ndim != 2 or p_signal.shape[1] == 0:
        raise RecordError(f"{path}.hea: declares no signal (0 channels)")
    if lead in names:
        ch = names.index(lead)
    elif lead != "MLII":  # a lead asked for by name must exist; the default falls back
        raise LeadMissing(f"{path}.hea: no lead {lead!r} (leads: {', '.join(names)})")
    else:
        ch = 0
        log.warning("%s: lead %s not found (leads %s); using %s", path.name, lead, names,
                    names[0] if names else "channel 0")
    if p_signal is None or p_signal.ndim != 2 or p_signal.shape[1] <= ch:
        raise RecordError(f"{path}: record has no signal channel {ch}")
    sig = np.asarray(p_signal[:, ch], dtype=np.float64)
    if not len(sig):
        raise RecordError(f"{path}: no samples (the header declares none, or the signal "
                          "file is empty)")
    bad = ~np.isfinite(sig)
    if bad.any():
        raise RecordError(f"{path}: lead {names[ch] if names else ch} has {int(bad.sum())} "
                          f"non-finite samples (first at sample {int(np.argmax(bad))})")
    out = Record(name=path.name, fs=float(fs), signal=sig,
                 lead=names[ch] if names else f"ch{ch}")
    if annotator:
        ann_path = path.with_suffix("." + annotator)
        if ann_path.exists():
            ann = read_annotations(path, annotator, len(sig))
            out.ann_samples = np.asarray(ann.sample, dtype=np.int64)
            out.ann_symbols = list(ann.symbol)
    return out


def list_records(directory: str | Path, annotator: str = "atr",
                 warn: bool = True) -> list[Path]:
    """Record paths (without extension) in ``directory`` that have a header and annotations;
    ``warn``: say which headers were left out for want of annotations (once per command:
    a caller that lists the folder again first passes False)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RecordError(f"{directory}: not a directory")
    heads = sorted(p.with_suffix("") for p in directory.glob("*.hea"))
    paths = [p for p in heads if p.with_suffix("." + annotator).exists()]
    bare = [p.name for p in heads if p not in paths]
    if warn and bare and paths:  # left out: nothing to score them against
        log.warning("%s: %d record(s) without .%s annotations left out: %s%s", directory,
                    len(bare), annotator, ", ".join(bare[:8]), " ..." if len(bare) > 8 else "")
    if not paths:
        raise RecordError(f"{directory}: no WFDB records with .{annotator} annotations "
                          f"(expected NAME.hea, NAME.dat and NAME.{annotator} files)")
    return paths


def select_records(paths: list[Path], names: list[str] | None) -> list[Path]:
    """``paths`` (from :func:`list_records`) restricted to ``names`` in the order given;
    a name with no such record is a :class:`RecordError` naming it and the folder."""
    if not names:
        return paths
    by_name = {p.name: p for p in paths}
    missing = [n for n in names if n not in by_name]
    if missing:
        where = paths[0].parent if paths else "the record directory"
        bare = [n for n in missing if paths and (where / f"{n}.hea").exists()]
        why = (f"; {', '.join(bare)} {'has' if len(bare) == 1 else 'have'} a header but no "
               "reference annotations (.atr)" if bare else "")
        raise RecordError(f"{where}: no annotated record {', '.join(missing)} (it has "
                          f"{', '.join(list(by_name)[:8])}{' ...' if len(by_name) > 8 else ''})"
                          + why)
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:  # its beats would count twice
        raise RecordError(f"record {twice} named twice")
    return [by_name[n] for n in names]
