"""One progress line on a terminal: rewritten in place with ``\\r``, on stderr, and silent
when stderr is not a terminal (a log file or a pipe gets no progress noise).

The library functions that take long (replays, benches) accept a ``progress`` callback;
the CLI passes a :class:`ProgressLine`'s :meth:`~ProgressLine.update` as that callback.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressLine:
    """``update(text)`` shows ``text`` as the current line (at most every ``interval``
    seconds); ``close()`` clears it. ``enabled=None``: only when ``stream`` is a terminal.
    Use it as a context manager so the line is cleared on errors too."""

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None,
                 interval: float = 0.25):
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.interval = interval
        self._last = 0.0
        self._shown = False

    def update(self, text: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        self.stream.write("\r" + text + "\x1b[K")  # \x1b[K: erase what a longer line left
        self.stream.flush()
        self._shown = True

    def counter(self, what: str):
        """A ``progress(done, total, name)`` callback showing ``what name: k of n``, or
        None when the line is off (the library then skips the calls)."""
        if not self.enabled:
            return None
        return lambda i, n, name: self.update(f"{what} {name}: {i + 1} of {n}", force=True)

    def close(self) -> None:
        if self.enabled and self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False

    def __enter__(self) -> ProgressLine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
