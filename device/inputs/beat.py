"""The beat classifier's signal spec: which lead, and how a beat window is cut from it.

In the manifest: ``{"kind": "beat", "window": <WindowSpec dict>, "lead": "MLII"}``. The
window convention, rate, length, filter and normalization are :class:`WindowSpec`'s
(:mod:`vitaledge.device.dsp.windows`, the one implementation training uses too).
"""

from __future__ import annotations

from dataclasses import dataclass

from vitaledge.device.dsp.spec_fields import construct, read_fields, require
from vitaledge.device.dsp.windows import WindowSpec

KIND = "beat"


@dataclass(frozen=True)
class BeatSignal:
    """How the beat model's input windows are made from one ECG lead."""

    window: WindowSpec
    lead: str = "MLII"
    kind: str = KIND

    def __post_init__(self) -> None:
        require(self.kind == KIND, "kind", f"{self.kind!r} is not {KIND!r}")

    def to_dict(self) -> dict:
        return {"kind": self.kind, "window": self.window.to_dict(), "lead": self.lead}

    @classmethod
    def from_dict(cls, d: dict | BeatSignal, where: str = "signal") -> BeatSignal:
        """From a manifest's ``signal`` dict; unknown or missing fields are errors."""
        if isinstance(d, BeatSignal):
            return d
        return construct(cls, read_fields(cls, d, where, {"window": WindowSpec.from_dict}),
                         where)
