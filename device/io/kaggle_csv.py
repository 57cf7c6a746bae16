"""Loader for the Kaggle "ECG Heartbeat Categorization" CSV files.

``mitbih_train.csv`` / ``mitbih_test.csv``: one beat per row, 187 samples at 125 Hz in
[0, 1] (zero-padded), then the AAMI class as a float (0 N, 1 S, 2 V, 3 F, 4 Q); no header.
A header row and/or a leading index column (as pandas ``to_csv`` writes) are accepted.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from vitaledge.device.dsp.windows import WindowSpec
from vitaledge.device.io.aami import CLASSES
from vitaledge.device.io.beats import BeatSet

#: The Kaggle rows are kachuee windows cut from the unfiltered signal.
KAGGLE_WINDOW = WindowSpec.kachuee(filter=None)

WIDTH = 187


class CsvFormatError(ValueError):
    """The file is not in the Kaggle beat layout; the message says where and why."""


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _is_header(row: list[str]) -> bool:
    """A header row: every cell that is a number is its own column's position (after an
    index column's name, or none): names (``c0,...,label``), the column numbers pandas
    writes for a frame read without a header (``0,1,...,187``, ``,0,...,187``), and both
    mixed (``0,...,186,label``). A row of sample values with one bad cell is a row, refused
    for that cell, not a header dropped unseen."""
    cells = [c.strip() for c in row]
    if cells and not _is_number(cells[0]):  # the index column's name (pandas: none)
        cells = cells[1:]
    return all(c == str(i) for i, c in enumerate(cells) if _is_number(c))


def _csv_rows(fh, path: Path):
    """(line number, row) pairs; undecodable bytes or csv-level damage become a
    CsvFormatError naming the file (found by fuzzing)."""
    try:
        yield from enumerate(csv.reader(fh), start=1)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CsvFormatError(f"{path}: not a readable UTF-8 CSV file: {exc}") from exc


def load_kaggle_csv(path: str | Path) -> BeatSet:
    """Read a Kaggle-layout beat CSV into a :class:`BeatSet` (record = file stem)."""
    path = Path(path)
    if not path.is_file():
        raise CsvFormatError(f"{path}: no such file")
    rows: list[list[float]] = []
    labels: list[int] = []
    index_col: bool | None = None
    with path.open(newline="", encoding="utf-8-sig") as fh:  # a BOM, as Excel writes, dropped
        for lineno, row in _csv_rows(fh, path):
            if not row or all(not c.strip() for c in row):
                continue
            if lineno == 1 and _is_header(row):
                continue
            if index_col is None:
                if len(row) == WIDTH + 2:
                    index_col = True
                elif len(row) == WIDTH + 1:
                    index_col = False
                else:
                    raise CsvFormatError(
                        f"{path}:{lineno}: {len(row)} columns; expected {WIDTH} samples + "
                        f"label ({WIDTH + 1}), optionally after an index column")
            cells = row[1:] if index_col else row
            if len(cells) != WIDTH + 1:
                raise CsvFormatError(f"{path}:{lineno}: {len(row)} columns; expected "
                                     f"{WIDTH + 1 + int(bool(index_col))} like the rows above")
            try:
                vals = [float(c) for c in cells]
            except ValueError as exc:
                raise CsvFormatError(f"{path}:{lineno}: not a number ({exc})") from exc
            if not np.all(np.abs(vals) <= np.finfo(np.float32).max):  # False for NaN too
                raise CsvFormatError(f"{path}:{lineno}: NaN, infinite or beyond-float32 sample")
            lab = vals[-1]
            if lab != int(lab) or not 0 <= int(lab) < len(CLASSES):
                raise CsvFormatError(f"{path}:{lineno}: label {cells[-1]!r}; expected an "
                                     f"integer class 0-{len(CLASSES) - 1} ({'/'.join(CLASSES)})")
            rows.append(vals[:-1])
            labels.append(int(lab))
    if not rows:
        raise CsvFormatError(f"{path}: no data rows")
    n = len(rows)
    return BeatSet(np.asarray(rows, dtype=np.float32), np.asarray(labels, dtype=np.int64),
                   np.full(n, path.stem, dtype=object), np.arange(n, dtype=np.int64),
                   {"source": "kaggle-csv", "file": str(path), "records": [path.stem],
                    "window": KAGGLE_WINDOW.to_dict()})
