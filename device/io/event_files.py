"""The files of a JSON Lines events sink on disk: ``PATH``, and once the sink has rotated
(at its size limit), ``PATH.1`` (the newest full file) to ``PATH.N`` (the oldest kept).
The sink writes them (:mod:`vitaledge.device.stream.sinks`); scoring, the review page and
the reliability bench read them back, oldest first, as one stream of events."""

from __future__ import annotations

import glob
from pathlib import Path


def rotated(path: str | Path, i: int) -> Path:
    """The ``i``-th rotated file of the sink writing ``path`` (1 the newest)."""
    path = Path(path)
    return path.with_name(f"{path.name}.{i}")


def written_files(path: str | Path) -> list[Path]:
    """The files of the sink writing ``path`` in the order they were written: its rotated
    files that are there (``PATH.N`` ... ``PATH.1``; a crash inside a rotation can leave a
    number missing, so every ``PATH.<number>`` counts), then ``PATH`` itself."""
    path = Path(path)
    tails = (p.name[len(path.name) + 1:] for p in
             path.parent.glob(f"{glob.escape(path.name)}.*") if p.is_file())
    numbers = sorted((int(n) for n in tails if n.isdigit()), reverse=True)
    return [rotated(path, i) for i in numbers] + [path]
