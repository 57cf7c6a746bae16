"""The simulated ECG sensor board: a record (or synthetic ECG) through an ADC model and
the wire protocol, paced at its sample rate x speed, with faults injected from a seed.

Signal faults (clock drift, muscle noise, lead-off) are applied to the whole signal before
streaming; link faults (drop, corrupt, truncate, duplicate, garbage, disconnect) to each
frame on its way out. The summary says exactly what was injected, so a test or the
must-show run can check the daemon counted every fault.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitaledge.device.io.records import read_record
from vitaledge.device.stream.protocol import FLAG_LEAD_OFF, FLAG_SATURATED, FrameEncoder, Hello

from .adc import AdcModel
from .faults import FaultSpec, LinkFaults, episodes, muscle_noise, rng_for

FRAME, HELLO_FRAME, DISCONNECT, RECONNECT = 0, 1, 2, 3


@dataclass
class BoardConfig:
    faults: FaultSpec = field(default_factory=FaultSpec)
    seed: int = 0
    speed: float = 1.0
    adc: AdcModel = field(default_factory=AdcModel)
    frame_samples: int = 10
    status_every_s: float = 1.0
    hello_every_s: float = 10.0
    battery_mv: int = 3700


def load_signal(record: str | None, synth_minutes: float = 2.0, seed: int = 0,
                lead: str = "MLII") -> tuple[np.ndarray, float, str]:
    """(mV samples, fs, name) of a WFDB record, or of a synthetic record when ``record``
    is None."""
    if record:
        rec = read_record(Path(record), lead=lead, annotator=None)
        return rec.signal, rec.fs, rec.name
    from vitaledge.firmware_sim.patients.ecg import synth_record

    s = synth_record(minutes=synth_minutes, seed=seed)
    return s.signal[:, 0], s.fs, s.name


@dataclass
class BoardSignal:
    """What the ADC produces over the whole session, faults included."""

    counts: np.ndarray  # int16
    lead_off: np.ndarray  # bool per sample
    fs_true: float  # the drifted ADC rate (timestamps follow true time)
    episodes: dict


def board_signal(x_mv: np.ndarray, fs: float, cfg: BoardConfig) -> BoardSignal:
    """Apply clock drift, muscle-noise bursts and lead-off, then the ADC."""
    f = cfg.faults
    total_s = len(x_mv) / fs
    d = f.drift * 1e-6
    if d:
        # sample k is taken at true time k / (fs (1 + d)): the record is read k / (1 + d)
        n_out = int((len(x_mv) - 1) * (1 + d)) + 1
        x_mv = np.interp(np.arange(n_out) / (1 + d), np.arange(len(x_mv)), x_mv)
    x = np.array(x_mv, np.float64)
    eps: dict = {}
    rng = rng_for(cfg.seed, "noise")
    eps["noise"] = []
    for a, b in episodes(rng, f.noise, total_s, 1.0, 4.0):
        i, j = int(a * fs), int(b * fs)
        rms = float(rng.uniform(0.1, 0.4))
        x[i:j] += muscle_noise(rng, j - i, fs, rms)
        eps["noise"].append({"start_s": round(a, 3), "stop_s": round(b, 3),
                             "rms_mv": round(rms, 3)})
    counts = cfg.adc.convert(x)
    lead_off = np.zeros(len(counts), bool)
    rng = rng_for(cfg.seed, "leadoff")
    eps["leadoff"] = []
    for a, b in episodes(rng, f.leadoff, total_s, 1.0, 5.0):
        i, j = int(a * fs), int(b * fs)
        mode = "rail" if rng.random() < 0.5 else "flat"
        counts[i:j] = cfg.adc.hi if mode == "rail" else cfg.adc.baseline
        lead_off[i:j] = True
        eps["leadoff"].append({"start_s": round(a, 3), "stop_s": round(b, 3), "mode": mode,
                               "first_sample": i, "samples": j - i})
    eps["disconnect"] = [{"start_s": round(a, 3), "stop_s": round(b, 3)} for a, b in
                         episodes(rng_for(cfg.seed, "disconnect"), f.disconnect, total_s,
                                  1.0, 3.0)]
    return BoardSignal(counts, lead_off, fs * (1 + d), eps)


class SensorBoard:
    """Streams a :class:`BoardSignal` as frames to a port (anything with ``write``,
    ``disconnect`` and ``reconnect``)."""

    def __init__(self, x_mv: np.ndarray, fs: float, cfg: BoardConfig):
        if cfg.speed <= 0:
            raise ValueError(f"speed {cfg.speed}: must be positive")
        self.fs, self.cfg = fs, cfg
        self.sig = board_signal(x_mv, fs, cfg)
        self.enc = FrameEncoder()
        self.link = LinkFaults(cfg.faults, cfg.seed)
        self.hello = Hello(fs, 1, cfg.adc.bits, cfg.adc.gain, cfg.adc.baseline,
                           cfg.frame_samples)
        self.stats = {"frames": 0, "sample_frames": 0, "bytes": 0, "frames_lost_disconnected": 0,
                      "hellos": 0}

    def frames(self) -> Iterator[tuple[float, bytes, int]]:
        """Every frame of the session in order: (true time s, bytes, kind); kind is
        ``FRAME``, ``HELLO_FRAME``, or ``DISCONNECT``/``RECONNECT`` (no bytes) where the
        link drops and comes back. The board goes on making (numbered) frames while the
        link is down; they are lost."""
        cfg, sig = self.cfg, self.sig
        n, fs_true = len(sig.counts), sig.fs_true
        down = [(e["start_s"], e["stop_s"]) for e in sig.episodes["disconnect"]]
        link_down = False
        next_hello = next_status = 0.0
        lead_state = False
        for first in range(0, n, cfg.frame_samples):
            t = first / fs_true
            us = int(round(t * 1e6))
            if any(a <= t < b for a, b in down) != link_down:
                link_down = not link_down
                yield (t, b"", DISCONNECT if link_down else RECONNECT)
                if not link_down:  # a board says hello on every new connection
                    yield (t, self.enc.hello(self.hello, us), HELLO_FRAME)
            if t >= next_hello:
                yield (t, self.enc.hello(self.hello, us), HELLO_FRAME)
                next_hello += cfg.hello_every_s
            block = sig.counts[first:first + cfg.frame_samples]
            off = bool(sig.lead_off[first:first + cfg.frame_samples].any())
            sat = bool(cfg.adc.saturated(block).any())
            flags = (FLAG_LEAD_OFF if off else 0) | (FLAG_SATURATED if sat else 0)
            if off != lead_state:
                yield (t, self.enc.lead_off(first, int(off), us), FRAME)
                lead_state = off
            if t >= next_status:
                yield (t, self.enc.status(first, flags, cfg.battery_mv, us), FRAME)
                next_status += cfg.status_every_s
            yield (t, self.enc.samples(first, block, flags, us), FRAME)

    def run(self, port, stopped: Callable[[], bool] = lambda: False,
            progress: Callable[[float, float], None] | None = None) -> dict:
        """Send the session paced at real time x speed; returns the summary.
        ``progress`` is called with (signal seconds sent, signal seconds in all)."""
        cfg, st = self.cfg, self.stats
        link_up = True
        pending: list[bytes] = []
        total_s = len(self.sig.counts) / self.fs
        t0 = time.monotonic()
        for t, data, kind in self.frames():
            if stopped():
                break
            if progress is not None:
                progress(t, total_s)
            if kind == DISCONNECT:
                self._flush(port, pending)
                port.disconnect()
                link_up = False
                continue
            if kind == RECONNECT:
                port.reconnect()
                link_up = True
                continue
            st["frames"] += 1
            st["hellos"] += kind == HELLO_FRAME
            if not link_up:
                st["frames_lost_disconnected"] += 1
                continue
            pending.append(self.link.apply(data))
            due = t0 + t / cfg.speed
            if due - time.monotonic() > 0.005:
                self._flush(port, pending)
                time.sleep(max(0.0, due - time.monotonic()))
        self._flush(port, pending)
        st["sample_frames"] = -(-len(self.sig.counts) // cfg.frame_samples)
        return self.summary(time.monotonic() - t0, getattr(port, "dropped_bytes", 0))

    def _flush(self, port, pending: list[bytes]) -> None:
        if pending:
            data = b"".join(pending)
            pending.clear()
            self.stats["bytes"] += len(data)
            port.write(data)

    def summary(self, wall_s: float, tx_dropped_bytes: int) -> dict:
        return {"fs": self.fs, "samples": int(len(self.sig.counts)),
                "faults": str(self.cfg.faults), "seed": self.cfg.seed,
                "speed": self.cfg.speed, **self.stats, **self.link.counts,
                "tx_dropped_bytes": int(tx_dropped_bytes),
                "episodes": self.sig.episodes, "wall_seconds": round(wall_s, 3)}
