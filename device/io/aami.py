"""AAMI EC57 beat classes and the mapping from MIT-BIH annotation symbols."""

from __future__ import annotations

import numpy as np

#: Class order used by every beat model: index i is ``CLASSES[i]``.
CLASSES: tuple[str, ...] = ("N", "S", "V", "F", "Q")

#: MIT-BIH beat annotation symbol -> AAMI class letter. Non-beat annotations (rhythm
#: changes, noise, comments, ``+``, ``~``, ``|``, ``"`` ...) are absent and get dropped.
SYMBOL_TO_CLASS: dict[str, str] = {
    "N": "N", "L": "N", "R": "N", "e": "N", "j": "N",
    "A": "S", "a": "S", "J": "S", "S": "S",
    "V": "V", "E": "V",
    "F": "F",
    "/": "Q", "f": "Q", "Q": "Q",
}

CLASS_INDEX: dict[str, int] = {c: i for i, c in enumerate(CLASSES)}


def symbol_class(symbol: str) -> int | None:
    """AAMI class index of an annotation symbol, or None for a non-beat annotation."""
    cls = SYMBOL_TO_CLASS.get(symbol)
    return None if cls is None else CLASS_INDEX[cls]


def map_annotations(samples: np.ndarray, symbols: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Keep beat annotations only; return (samples, class indices) as int64 arrays."""
    keep = [(int(s), CLASS_INDEX[SYMBOL_TO_CLASS[sym]])
            for s, sym in zip(samples, symbols, strict=True) if sym in SYMBOL_TO_CLASS]
    if not keep:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    arr = np.asarray(keep, dtype=np.int64)
    return arr[:, 0], arr[:, 1]


#: Reference annotations that open and close an episode of ventricular flutter or
#: fibrillation (MIT-BIH ``[`` and ``]``).
VF_ON, VF_OFF = "[", "]"


def vf_episodes(samples: np.ndarray, symbols: list[str]) -> list[tuple[int, int]]:
    """[start, stop) of each reference-marked episode of ventricular flutter or
    fibrillation (``[`` to ``]`` inclusive; one still open at the end runs on to the end, a
    ``]`` before any ``[`` closes one that was running when the record began).

    EC57's beat-by-beat comparison leaves them out: its reference implementation, bxb,
    ignores the reference annotations between VFON and VFOFF and does not count the
    algorithm's beats during reference-marked VF. Beat detection is not what is asked of
    an analyzer there (flutter waves are not QRS complexes to count)."""
    out, start, seen = [], None, False
    for s, sym in zip(samples, symbols, strict=True):
        if sym == VF_ON and start is None:
            start, seen = int(s), True
        elif sym == VF_OFF and start is not None:
            out.append((start, int(s) + 1))
            start = None
        elif sym == VF_OFF and not seen:  # the record began inside an episode
            out.append((0, int(s) + 1))
            seen = True
    if start is not None:
        out.append((start, np.iinfo(np.int64).max))
    return out
