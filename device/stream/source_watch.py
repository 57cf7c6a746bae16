"""A live source that goes quiet or sends at the wrong rate: ``no_signal`` /
``signal_resumed`` and ``rate_mismatch`` / ``rate_ok``.

A live source (a serial line, a socket, stdin; not a replayed file, which is read as fast
as the pipeline takes it) that sends nothing for ``no_signal_s`` is reported once as
``no_signal``, and ``signal_resumed`` comes with its next samples, saying how long it was
silent; a source that never sends (no client connects, every sample refused) is silent
from the start. Its samples' arrival rate is measured over ``rate_window_s`` of wall time
(counting the samples dropped on a full queue, which did arrive): more than 25 % away
from the configured rate gets ``rate_mismatch`` (once), back within 10 % gets
``rate_ok``, since the stream's time axis and beat intervals assume that rate. A silence
is not a slow rate: the rate window starts again after one.

The wall clock is the caller's (``now``, :func:`time.monotonic` in the daemon), so the
rules can be checked with any clock.
"""

from __future__ import annotations

from vitaledge.device.stream import events as event

NO_SIGNAL_S = 5.0  # a live source silent this long gets a no_signal status event
RATE_WINDOW_S = 30.0  # a live source's arrival rate is measured over this much wall time


class SourceWatch:
    """Follows the arrivals of one source configured at ``fs`` Hz (``live``: only a live
    source is watched; a replayed one never reports)."""

    def __init__(self, fs: float, live: bool, no_signal_s: float = NO_SIGNAL_S,
                 rate_window_s: float = RATE_WINDOW_S):
        self.fs, self.live = float(fs), bool(live)
        self.no_signal_s, self.rate_window_s = float(no_signal_s), float(rate_window_s)
        self.last_data: float | None = None  # wall time of the last samples
        self.silent = False                  # in a reported silence
        self.rate_bad = False                # in a reported rate mismatch
        self.received = 0                    # samples that reached the worker
        self._t0: float | None = None        # start of the rate window
        self._n0 = 0                         # samples counted at its start

    def arrived(self, n: int, dropped: int, now: float, t_stream: float) -> list[dict]:
        """``n`` samples reached the worker at wall time ``now`` (``dropped``: the samples
        dropped on a full queue so far, which did arrive; ``t_stream``: the stream time for
        a status event): ``signal_resumed`` after a reported silence, and a rate change
        when the window closes."""
        self.received += n
        events = []
        if self.silent:
            self.silent = False
            self._t0 = None  # a silence is not a slow rate
            events.append(event.signal_resumed(t_stream,
                                               round(now - (self.last_data or now), 1)))
        self.last_data = now
        if self.live:
            events += self._check_rate(self.received + dropped, now, t_stream)
        return events

    def check_silence(self, now: float, t_stream: float) -> list[dict]:
        """``no_signal`` (once) when a live source has sent nothing for ``no_signal_s``:
        since its last samples, or since the first check when none came yet (a socket no
        client connects to, a board whose every sample is refused: they were never
        reported, and /health said ok)."""
        if self.live and self.last_data is None:
            self.last_data = now  # watching starts: a silence is counted from here
        if (self.live and not self.silent and self.last_data is not None
                and now - self.last_data > self.no_signal_s):
            self.silent = True
            return [event.no_signal(t_stream, round(now - self.last_data, 1))]
        return []

    def _check_rate(self, counted: int, now: float, t_stream: float) -> list[dict]:
        """A rate change when the window that started earlier closes at ``now`` with
        ``counted`` samples arrived in all (see the module docstring); else nothing."""
        if self._t0 is None:
            self._t0, self._n0 = now, counted
            return []
        dt = now - self._t0
        if dt < self.rate_window_s:
            return []
        rate = (counted - self._n0) / dt
        self._t0, self._n0 = now, counted
        off = abs(rate / self.fs - 1.0)
        if off > 0.25 and not self.rate_bad:
            self.rate_bad, status = True, "rate_mismatch"
        elif off < 0.1 and self.rate_bad:
            self.rate_bad, status = False, "rate_ok"
        else:
            return []
        return [event.rate_change(status, t_stream, round(rate, 1), self.fs)]
