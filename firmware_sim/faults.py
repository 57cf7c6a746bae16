"""Fault injection for the simulated sensor board, reproducible from one seed.

A spec is ``name=value`` pairs joined by commas, e.g. ``corrupt=0.01,drop=0.002,drift=50``:

==============  =====================================================================
``drop=P``      each frame is lost on the wire with probability P
``corrupt=P``   each frame has one byte XORed with a random non-zero value (prob. P)
``truncate=P``  each frame is cut short at a random byte (prob. P)
``dup=P``       each frame is sent twice (prob. P)
``garbage=P``   a burst of 1-64 random bytes goes out before a frame (prob. P)
``drift=PPM``   the ADC clock runs PPM parts per million fast (negative: slow) against
                the board's timestamp clock
``leadoff=N``   N lead-off episodes of 1-5 s: the signal goes flat or to a rail and the
                lead-off flag and frames are sent
``noise=N``     N muscle-noise bursts of 1-4 s (20-150 Hz, 0.1-0.4 mV RMS)
``disconnect=N`` N link drops of 1-3 s: nothing is sent (TCP: the socket is closed), then
                the board reconnects and says hello again
==============  =====================================================================

Every fault draws from its own random stream (seed, fault), so adding one fault never moves
another; episodes are placed over the record before it starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
from scipy import signal as sps

_RATES = ("drop", "corrupt", "truncate", "dup", "garbage")
_COUNTS = ("leadoff", "noise", "disconnect")
_STREAM = {name: i for i, name in enumerate(_RATES + _COUNTS + ("drift",), start=1)}


@dataclass(frozen=True)
class FaultSpec:
    drop: float = 0.0
    corrupt: float = 0.0
    truncate: float = 0.0
    dup: float = 0.0
    garbage: float = 0.0
    drift: float = 0.0
    leadoff: int = 0
    noise: int = 0
    disconnect: int = 0

    @classmethod
    def parse(cls, spec: str | None) -> FaultSpec:
        """``"corrupt=0.01,leadoff=2"`` -> FaultSpec; unknown names and bad values are
        errors that say what is expected."""
        if not spec or spec == "none":
            return cls()
        known = {f.name for f in fields(cls)}
        kw: dict = {}
        for part in spec.split(","):
            name, eq, value = part.strip().partition("=")
            if name not in known or not eq:
                raise ValueError(f"fault {part!r}: expected NAME=VALUE with NAME one of "
                                 f"{', '.join(sorted(known))}")
            if name in kw:  # the last one won, without a word
                raise ValueError(f"fault {name} given twice")
            try:
                v = int(value) if name in _COUNTS else float(value)
            except ValueError:
                raise ValueError(f"fault {name}: {value!r} is not a "
                                 f"{'whole number' if name in _COUNTS else 'number'}") from None
            if not math.isfinite(v):  # NaN was "cannot convert float NaN to integer"
                raise ValueError(f"fault {name}: {value!r} is not a finite number")
            if name in _RATES and not 0.0 <= v <= 1.0:
                raise ValueError(f"fault {name}={v}: a probability must be within 0..1")
            if name in _COUNTS and v < 0:
                raise ValueError(f"fault {name}={v}: a count cannot be negative")
            if name == "drift" and abs(v) > 10_000:
                raise ValueError(f"fault drift={v} ppm: beyond +/-10000 ppm is no crystal")
            kw[name] = v
        return cls(**kw)

    def __str__(self) -> str:
        parts = [f"{f.name}={getattr(self, f.name)}" for f in fields(self)
                 if getattr(self, f.name)]
        return ",".join(parts) or "none"


def rng_for(seed: int, fault: str) -> np.random.Generator:
    """The random stream of one fault."""
    return np.random.default_rng([int(seed), _STREAM[fault]])


def episodes(rng: np.random.Generator, n: int, total_s: float, min_s: float, max_s: float,
             margin_s: float = 5.0) -> list[tuple[float, float]]:
    """``n`` non-overlapping (start, stop) intervals in seconds, inside the record with
    ``margin_s`` free at both ends, sorted."""
    if n <= 0:
        return []
    span = total_s - 2 * margin_s
    if span < n * (max_s + 1.0):
        raise ValueError(f"{n} episodes of up to {max_s} s do not fit in {total_s:.0f} s")
    slots = span / n  # one episode per slot keeps them apart
    out = []
    for k in range(n):
        dur = float(rng.uniform(min_s, max_s))
        start = margin_s + k * slots + float(rng.uniform(0, slots - dur))
        out.append((start, start + dur))
    return out


def muscle_noise(rng: np.random.Generator, n: int, fs: float, rms_mv: float) -> np.ndarray:
    """Band-limited (20-150 Hz, capped below Nyquist) Gaussian noise with ``rms_mv`` RMS,
    tapered at both ends so a burst does not start with a step."""
    hi = min(150.0, 0.45 * fs)
    sos = sps.butter(4, [20.0, hi], btype="bandpass", fs=fs, output="sos")
    e = sps.sosfilt(sos, rng.standard_normal(n + 256))[256:]
    e *= rms_mv / (np.sqrt(np.mean(e * e)) or 1.0)
    taper = min(n // 2, int(0.05 * fs))
    if taper:
        ramp = np.linspace(0.0, 1.0, taper)
        e[:taper] *= ramp
        e[-taper:] *= ramp[::-1]
    return e


class LinkFaults:
    """Per-frame wire faults; ``apply(frame)`` returns the bytes that go out (maybe none)."""

    def __init__(self, spec: FaultSpec, seed: int):
        self.spec = spec
        self.rng = {name: rng_for(seed, name) for name in _RATES}
        self.counts = {"frames_dropped": 0, "frames_corrupted": 0, "frames_truncated": 0,
                       "frames_damaged": 0, "frames_duplicated": 0, "garbage_bursts": 0,
                       "garbage_bytes": 0}

    def apply(self, frame: bytes) -> bytes:
        s, r, c = self.spec, self.rng, self.counts
        # draw every stream on every frame so each fault's pattern is independent
        drop = r["drop"].random() < s.drop
        corrupt = r["corrupt"].random() < s.corrupt
        at, xor = int(r["corrupt"].integers(0, len(frame))), int(r["corrupt"].integers(1, 256))
        trunc = r["truncate"].random() < s.truncate
        cut = int(r["truncate"].integers(1, len(frame)))
        dup = r["dup"].random() < s.dup
        garbage = r["garbage"].random() < s.garbage
        junk = r["garbage"].integers(0, 256, int(r["garbage"].integers(1, 65)),
                                     dtype=np.uint8).tobytes()
        if drop:
            c["frames_dropped"] += 1
            return b""
        out = frame
        if corrupt:
            b = bytearray(out)
            b[at] ^= xor
            out = bytes(b)
            c["frames_corrupted"] += 1
        if trunc:
            out = out[:cut]
            c["frames_truncated"] += 1
        c["frames_damaged"] += corrupt or trunc  # once per frame, even if both
        if dup and not (corrupt or trunc):
            out = out + out
            c["frames_duplicated"] += 1
        if garbage:
            out = junk + out
            c["garbage_bursts"] += 1
            c["garbage_bytes"] += len(junk)
        return out
