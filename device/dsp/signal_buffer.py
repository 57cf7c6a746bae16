"""A growing-and-trimming window onto an unbounded sample stream, indexed by absolute
sample number, so streaming stages can look back (and wait for look-ahead) exactly as a
whole-signal computation indexes its array."""

from __future__ import annotations

import numpy as np


class SignalBuffer:
    """Keeps samples [start, end) of a stream; ``trim(keep_from)`` drops older ones."""

    def __init__(self, dtype=np.float64):
        self._data = np.zeros(0, dtype=dtype)
        self.start = 0

    @property
    def end(self) -> int:
        return self.start + len(self._data)

    def append(self, chunk: np.ndarray) -> None:
        self._data = np.concatenate([self._data, np.asarray(chunk, dtype=self._data.dtype)])

    def get(self, a: int, b: int) -> np.ndarray:
        """Samples [a, b) by absolute index; raises if any are no longer (or not yet) held."""
        if a < self.start or b > self.end or a > b:
            raise IndexError(f"samples [{a}, {b}) not in buffer [{self.start}, {self.end})")
        return self._data[a - self.start: b - self.start]

    def trim(self, keep_from: int) -> None:
        drop = min(max(0, keep_from - self.start), len(self._data))
        if drop > 4096 or drop > len(self._data) // 2:
            self._data = self._data[drop:].copy()
            self.start += drop
