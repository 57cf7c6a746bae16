"""What travels on the daemon's queue from the source thread to the worker.

A source yields sample chunks, :class:`~.protocol.Gap` and :class:`~.protocol.StatusEvent`
items (framed sources) and :class:`~vitaledge.device.io.sessions.FaceFrame` items (session
replays); :func:`from_source` wraps each in its item type here. The daemon adds its own
kinds: :class:`Dropped` (chunks it had to drop on a full queue) and :class:`EndOfStream`.

``lost_samples`` is what dropping the item costs in samples (counted as dropped);
``span`` is how far it moves the stream's time axis (a dropped one becomes part of a gap).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitaledge.device.io.sessions import FaceFrame
from vitaledge.device.stream.protocol import Gap, StatusEvent


@dataclass(frozen=True, eq=False)
class Samples:
    """A chunk of samples (one column, or one row per sample for multi-channel streams)."""

    chunk: np.ndarray

    @property
    def lost_samples(self) -> int:
        return len(self.chunk)

    @property
    def span(self) -> int:
        return len(self.chunk)


@dataclass(frozen=True, eq=False)
class WireGap:
    """Samples the source reported lost on the wire or withheld (``gap.fill`` may hold
    interpolated values for a short hole)."""

    gap: Gap
    lost_samples = 0

    @property
    def span(self) -> int:
        return self.gap.missing


@dataclass(frozen=True, eq=False)
class FaceItem:
    """A camera frame, for the stages that use faces."""

    frame: FaceFrame
    lost_samples = 0
    span = 0


@dataclass(frozen=True)
class DeviceStatus:
    """Something the board reported (``info`` holds its ``status`` kind and fields)."""

    info: dict
    lost_samples = 0
    span = 0


@dataclass(frozen=True)
class Dropped:
    """``missing`` samples the daemon dropped on a full queue (live sources only)."""

    missing: int


@dataclass(frozen=True)
class EndOfStream:
    """The source is done and the queue is drained: flush what is pending."""


QueueItem = Samples | WireGap | FaceItem | DeviceStatus | Dropped | EndOfStream


def from_source(x: np.ndarray | Gap | StatusEvent | FaceFrame) -> QueueItem:
    """The queue item for one thing a source yielded."""
    match x:
        case Gap():
            return WireGap(x)
        case StatusEvent(info=info):
            return DeviceStatus(info)
        case FaceFrame():
            return FaceItem(x)
        case _:
            return Samples(x)
