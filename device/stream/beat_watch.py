"""Pauses without beats while the signal is present: ``no_beats`` and ``beats_resumed``.

A stretch of present signal (what the signal monitor lets through, not a gap) longer than
``limit_s`` with no beat event is reported once as ``no_beats`` (at the stream time the
limit was reached), and ``beats_resumed`` comes with the next beat, saying how long the
pause lasted. Gaps (lead-off, faults, lost samples) are not present signal: the count
starts again after one. The default, :data:`NO_BEATS_S`, is longer than any RR interval
at 30 bpm or more plus the beat window's latency (about 1.2 RR after the R peak), so a
slow but regular rhythm is not reported.
"""

from __future__ import annotations

from vitaledge.device.stream import events as event

NO_BEATS_S = 6.0


class BeatWatch:
    """Follows the beat events of one stream at ``fs`` Hz (sample indices as the beat
    stage numbers them)."""

    def __init__(self, fs: float, limit_s: float = NO_BEATS_S):
        self.fs, self.limit_s = float(fs), float(limit_s)
        self.limit = int(round(self.limit_s * self.fs))
        self.ref = 0                 # where the present-signal count starts: beat or gap end
        self.last_beat: tuple[float, int] | None = None  # (time, sample) of the last beat
        self.active = False          # in a reported pause
        self._since = 0.0            # stream time the reported pause started

    def gap(self, samples_in: int) -> None:
        """The stream skipped to ``samples_in`` (nothing present in between)."""
        self.ref = max(self.ref, samples_in)

    def seconds_since_last_beat(self, samples_in: int) -> float:
        """Stream seconds since the last beat (since the start when none yet)."""
        return (samples_in - (self.last_beat[1] if self.last_beat else 0)) / self.fs

    def update(self, new_events: list[dict], samples_in: int) -> list[dict]:
        """``new_events`` (what present samples up to ``samples_in`` made) with the status
        events of pauses starting or ending put in among them, in stream order. A pause
        is judged beat by beat, so the result does not depend on the chunk size."""
        out: list[dict] = []
        for e in new_events:
            if e.get("type") == "beat":
                if not self.active and e["sample"] - self.ref >= self.limit:
                    out.append(self._start())
                if self.active:
                    self.active = False
                    out.append(event.beats_resumed(e["time"], round(e["time"] - self._since,
                                                                    1)))
                self.last_beat = (e["time"], e["sample"])
                self.ref = max(self.ref, e["sample"])
            out.append(e)
        if not self.active and samples_in - self.ref >= self.limit:
            out.append(self._start())
        return out

    def _start(self) -> dict:
        self.active, self._since = True, self.ref / self.fs
        return event.no_beats(round((self.ref + self.limit) / self.fs, 3), self.limit_s,
                              self.last_beat[0] if self.last_beat else None)
