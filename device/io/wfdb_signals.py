"""A small reader for the common WFDB signal layouts (single segment, formats 212 and 16).

The daemon replays records on a Raspberry Pi; importing ``wfdb`` pulls in pandas (about
70 MB of resident memory and half a second at start), so signal files in the layouts
MIT-BIH and most PhysioNet ECG databases use are decoded here with numpy. Anything else
(multi-segment records, skew, byte offsets, other formats) returns None and the caller uses
``wfdb``. A test checks that both give identical samples on the real records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_SIG = re.compile(r"^(?P<file>\S+)\s+(?P<fmt>\d+)(?P<mods>[x:+]\S*)?"
                  r"(?:\s+(?P<gain>[-\d.eE]+)(?:\((?P<base>-?\d+)\))?(?:/(?P<units>\S+))?"
                  r"(?:\s+(?P<res>\d+)(?:\s+(?P<zero>-?\d+)(?:\s+\S+(?:\s+\S+(?:\s+\S+"
                  r"(?:\s+(?P<desc>.*))?)?)?)?)?)?)?\s*$")


def leading_number(field: str) -> str:
    """The number a header field starts with, before a ``/`` or ``(``: the sample rate of
    ``FS[/COUNTER[(BASE)]]`` on the first line, the gain of ``GAIN[(BASELINE)][/UNITS]`` on
    a signal line."""
    return field.split("/")[0].split("(")[0]


@dataclass
class Signals:
    fs: float
    names: list[str]
    physical: np.ndarray  # (n, nsig) float64, NaN where the sample is marked invalid


def read_signals(record: str | Path) -> Signals | None:
    """Decode ``record``'s signals, or None when the layout is not one handled here."""
    record = Path(record)
    try:
        lines = [ln.strip() for ln in record.with_suffix(".hea").read_text().splitlines()
                 if ln.strip() and not ln.lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError):
        return None
    if not lines:
        return None
    head = lines[0].split()
    if len(head) < 3 or "/" in head[0] or not head[1].isdigit():
        return None
    nsig = int(head[1])
    try:
        fs = float(leading_number(head[2]))
        nsamp = int(head[3]) if len(head) > 3 else None
    except ValueError:
        return None
    sigs = [_SIG.match(ln) for ln in lines[1:1 + nsig]]
    if nsig == 0 or len(sigs) != nsig or not all(sigs):
        return None
    files = {m["file"] for m in sigs}
    fmts = {m["fmt"] for m in sigs}
    if len(files) != 1 or len(fmts) != 1 or fmts - {"212", "16"} or any(m["mods"] for m in sigs):
        return None
    path = record.parent / files.pop()
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    fmt = fmts.pop()
    if fmt == "16":
        digital = np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2").astype(np.int32)
        invalid = -32768
    else:
        b = np.frombuffer(raw[: len(raw) // 3 * 3], dtype=np.uint8).reshape(-1, 3).astype(
            np.int32)
        s0 = b[:, 0] | ((b[:, 1] & 0x0F) << 8)
        s1 = b[:, 2] | ((b[:, 1] & 0xF0) << 4)
        digital = np.empty(2 * len(b), dtype=np.int32)
        digital[0::2], digital[1::2] = s0, s1
        digital = np.where(digital >= 2048, digital - 4096, digital)
        invalid = -2048
    n = len(digital) // nsig if nsamp is None else nsamp
    if n < 0 or n * nsig > len(digital):  # a negative count: found by fuzzing
        return None
    digital = digital[: n * nsig].reshape(n, nsig)
    try:  # the pattern admits strings such as "200-0" that are not numbers (fuzzing)
        gains = [float(m["gain"]) if m["gain"] else 0.0 for m in sigs]
    except ValueError:
        return None  # not a layout read here; wfdb says what is wrong with it
    phys = np.empty((n, nsig), dtype=np.float64)
    for ch, m in enumerate(sigs):
        gain = gains[ch] if gains[ch] != 0 else 200.0
        zero = int(m["zero"]) if m["zero"] else 0
        base = int(m["base"]) if m["base"] is not None else zero
        col = digital[:, ch]
        phys[:, ch] = (col - base) / gain
        phys[col == invalid, ch] = np.nan
    names = [(m["desc"] or f"ch{i}").strip() for i, m in enumerate(sigs)]
    return Signals(fs, names, phys)
