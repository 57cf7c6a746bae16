"""The files of a JSON Lines events sink on disk: ``PATH``, and once the sink has rotated
(at its size limit), ``PATH.1`` (the newest full file) to ``PATH.N`` (the oldest kept).
The sink writes them (:mod:`vitaledge.device.stream.sinks`); scoring, the review page and
the reliability bench read them back, oldest first, as one stream of events."""

from __future__ import annotations

from pathlib import Path


def rotated(path: str | Path, i: int) -> Path:
    """The ``i``-th rotated file of the sink writing ``path`` (1 the newest)."""
    path = Path(path)
    return path.with_name(f"{path.name}.{i}")


def written_files(path: str | Path) -> list[Path]:
    """The files of the sink writing ``path`` in the order they were written: its rotated
    files that exist (``PATH.N`` ... ``PATH.1``; rotation keeps them numbered from 1 without
    a gap) and then ``PATH`` itself."""
    path = Path(path)
    n = 0
    while rotated(path, n + 1).is_file():
        n += 1
    return [rotated(path, i) for i in range(n, 0, -1)] + [path]
