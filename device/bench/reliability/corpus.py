"""The seed corpus: one small valid input per fuzz target, built here so a run needs no
files. Protocol frames come from the device's own encoder (device/stream/protocol.py)."""

from __future__ import annotations

import json
import struct

import numpy as np

from vitaledge.device.stream.protocol import FrameEncoder, Hello


def protocol_seed(n_frames: int = 6, fs: float = 360.0, per: int = 16) -> bytes:
    """A valid byte stream: hello, sample frames (one lead-off), a status and a lead-off
    frame, numbered 0, 1, 2, ... by :class:`FrameEncoder`."""
    enc = FrameEncoder()
    out = [enc.hello(Hello(fs, 1, 12, 200.0, 0, per), 0)]
    for i in range(n_frames):
        counts = (np.sin(np.arange(per) + i) * 300).astype("<i2")
        flags = 1 if i == 3 else 0
        out.append(enc.samples(i * per, counts, flags, int(i * per / fs * 1e6)))
    out.append(enc.status(n_frames * per, 2, 3700, 0))
    out.append(enc.lead_off(n_frames * per, 1, 0))
    return b"".join(out)


def wfdb_seed(fmt: str = "212", n: int = 64) -> bytes:
    """A two-signal record as one blob: header text, a NUL byte, then the .dat bytes."""
    x = (np.sin(np.arange(2 * n) / 5.0) * 400).astype(np.int32)
    if fmt == "16":
        dat = x.astype("<i2").tobytes()
    else:
        u = (x & 0xFFF).reshape(-1, 2)
        dat = np.stack([u[:, 0] & 0xFF, ((u[:, 0] >> 8) & 0x0F) | ((u[:, 1] >> 4) & 0xF0),
                        u[:, 1] & 0xFF], axis=1).astype(np.uint8).tobytes()
    hea = (f"r 2 360 {n}\nr.dat {fmt} 200 11 1024 0 0 0 MLII\n"
           f"r.dat {fmt} 200 11 1024 0 0 0 V5\n# comment\n")
    return hea.encode() + b"\x00" + dat


def csv_seed() -> bytes:
    """A one-column replay CSV with a header line."""
    return b"ecg\n" + b"".join(f"{v:.3f}\n".encode() for v in np.sin(np.arange(40) / 3))


def kaggle_seed() -> bytes:
    """Four rows of the Kaggle beat CSV: 187 values and a class."""
    rows = []
    for k in range(4):
        rows.append(",".join(f"{v:.4f}" for v in np.linspace(0, 1, 187) ** (k + 1))
                    + f",{k}.0")
    return ("\n".join(rows) + "\n").encode()


def wav_seed(n: int = 200, fs: int = 8000) -> bytes:
    """A 16-bit mono PCM wav file."""
    data = (np.sin(np.arange(n) / 4.0) * 8000).astype("<i2").tobytes()
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, fs, fs * 2, 2, 16) + b"data" +
            struct.pack("<I", len(data)) + data)


def manifest_seed() -> bytes:
    """A complete beat-model manifest.json."""
    m = {"schema_version": 2, "task": "beat", "labels": ["N", "S", "V", "F", "Q"],
         "model_file": "model.tflite", "sha256": "0" * 64, "size_bytes": 10,
         "target": "cpu", "quantization": "int8",
         "input": {"name": "x", "shape": [1, 187, 1], "dtype": "int8",
                   "quantization": {"scale": 0.0039, "zero_point": -128}},
         "output": {"name": "y", "shape": [1, 5], "dtype": "int8",
                    "quantization": {"scale": 0.0039, "zero_point": -128}},
         "signal": {"kind": "beat", "lead": "MLII",
                    "window": {"convention": "kachuee", "fs": 125.0, "length": 187}},
         "pruning": None, "source_run": {"dir": "runs/x"}, "metrics": {"accuracy": 0.9},
         "created": "2026-01-01T00:00:00Z", "vitaledge_version": "0.1", "extra": {},
         "extra_inputs": []}
    return json.dumps(m).encode()
