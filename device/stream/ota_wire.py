"""The over-the-air deployment messages: what ``vitaledge fleet deploy`` publishes and the
daemon reassembles (topics: :mod:`.mqtt`; the daemon's side: :mod:`.ota`).

A deployment is one header, then its files in chunks, each one JSON message (QoS 1) on
``PREFIX/v1/<site>/<device>/deploy`` (or ``.../<site>/all/deploy``)::

    {"schema": 1, "kind": "deploy", "deployment": ID, "sent": ISO time,
     "manifest": {...manifest.json...}, "signature": {...manifest.sig...} or null,
     "files": {NAME: {"size": BYTES, "sha256": HEX, "chunks": N}, ...},
     "chunk_bytes": B, "total_bytes": T}
    {"schema": 1, "kind": "chunk", "deployment": ID, "file": NAME, "index": I,
     "count": N, "data": BASE64}

``files`` are the files the manifest names (the model and the self-test vectors); their
sha256 here only guards the transport — what a device trusts is the signed manifest.
``ID`` is 1-64 letters, digits, ``.``, ``_`` or ``-`` (it names a directory).

:class:`Assembler` takes messages in any number, any order after their header and with
duplicates (QoS 1 is at least once), holds one deployment at a time (a new header
supersedes the one being received), bounds its size (``max_bytes``) and its silence
(``timeout_s``), and never raises on what it is given: whatever it cannot use becomes a
refusal saying why.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

SCHEMA = 1
CHUNK_BYTES = 256 * 1024
MAX_FILES = 8
ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


def header(deployment: str, manifest: dict, signature: dict | None, files: dict[str, bytes],
           chunk_bytes: int = CHUNK_BYTES, sent: str = "") -> dict:
    """The first message of a deployment."""
    return {"schema": SCHEMA, "kind": "deploy", "deployment": deployment, "sent": sent,
            "manifest": manifest, "signature": signature,
            "files": {name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                             "chunks": max(1, math.ceil(len(data) / chunk_bytes))}
                      for name, data in files.items()},
            "chunk_bytes": chunk_bytes, "total_bytes": sum(len(d) for d in files.values())}


def chunks(deployment: str, files: dict[str, bytes],
           chunk_bytes: int = CHUNK_BYTES) -> Iterator[dict]:
    """The chunk messages of a deployment's files, in order."""
    for name, data in files.items():
        count = max(1, math.ceil(len(data) / chunk_bytes))
        for i in range(count):
            part = data[i * chunk_bytes:(i + 1) * chunk_bytes]
            yield {"schema": SCHEMA, "kind": "chunk", "deployment": deployment, "file": name,
                   "index": i, "count": count, "data": base64.b64encode(part).decode()}


@dataclass
class Deployment:
    """A deployment received whole: the manifest and signature objects as sent, and the
    files' bytes."""

    id: str
    manifest: dict
    signature: dict | None
    files: dict[str, bytes]
    received_t: float  # monotonic time its header arrived
    total_bytes: int = 0


@dataclass
class Outcome:
    """What one message did: ``received`` (a header was taken), ``complete`` (the
    deployment is whole: ``deployment``), ``refused`` (``reason``) or ``ignored``."""

    kind: str
    deployment_id: str | None
    reason: str = ""
    deployment: Deployment | None = None
    info: dict = field(default_factory=dict)


class MessageError(ValueError):
    pass


def _need(d: dict, key: str, kind: type | tuple, where: str):
    v = d.get(key)
    if isinstance(v, bool) and kind is not bool or not isinstance(v, kind):
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise MessageError(f"{where}.{key}: expected {name}, got {v!r}"[:200])
    return v


class _Assembly:
    def __init__(self, msg: dict, now: float):
        self.id: str = msg["deployment"]
        self.manifest: dict = msg["manifest"]
        self.signature: dict | None = msg["signature"]
        self.files: dict[str, dict] = msg["files"]
        self.chunk_bytes: int = msg["chunk_bytes"]
        self.parts: dict[str, dict[int, bytes]] = {n: {} for n in self.files}
        self.received_t = self.last_t = now
        self.total = sum(f["size"] for f in self.files.values())

    @property
    def missing(self) -> int:
        return sum(f["chunks"] - len(self.parts[n]) for n, f in self.files.items())

    @property
    def expected(self) -> int:
        return sum(f["chunks"] for f in self.files.values())


class Assembler:
    """Deployments out of messages (see the module docstring)."""

    def __init__(self, max_bytes: int, timeout_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self.max_bytes, self.timeout_s, self._clock = max_bytes, timeout_s, clock
        self._current: _Assembly | None = None
        self._done: OrderedDict[str, None] = OrderedDict()  # ids finished or refused

    def _finish(self, deployment_id: str) -> None:
        self._done[deployment_id] = None
        while len(self._done) > 64:
            self._done.popitem(last=False)
        if self._current is not None and self._current.id == deployment_id:
            self._current = None

    def feed(self, payload: bytes) -> list[Outcome]:
        """What ``payload`` (one message) does; never raises."""
        try:
            msg = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return [Outcome("refused", None, "not a deployment message: not JSON")]
        if not isinstance(msg, dict):
            return [Outcome("refused", None, "not a deployment message: not a JSON object")]
        dep = msg.get("deployment")
        dep = dep if isinstance(dep, str) and ID_RE.match(dep) else None
        if msg.get("schema") != SCHEMA:
            return self._refuse(dep, f"deployment message schema {msg.get('schema')!r}: "
                                f"this device reads {SCHEMA}")
        if dep is None:
            return [Outcome("refused", None, "deployment id: expected 1-64 letters, digits, "
                            f"'.', '_' or '-', got {msg.get('deployment')!r}"[:200])]
        if dep in self._done:
            return [Outcome("ignored", dep, "already finished")]
        kind = msg.get("kind")
        try:
            if kind == "deploy":
                return self._header(msg)
            if kind == "chunk":
                return self._chunk(msg)
        except MessageError as exc:
            return self._refuse(dep, f"malformed deployment message: {exc}")
        return self._refuse(dep, f"deployment message kind {kind!r}: expected deploy or chunk")

    def _refuse(self, dep: str | None, reason: str) -> list[Outcome]:
        if dep is not None:
            self._finish(dep)
        return [Outcome("refused", dep, reason)]

    def _header(self, msg: dict) -> list[Outcome]:
        dep = msg["deployment"]
        if self._current is not None and self._current.id == dep:
            return [Outcome("ignored", dep, "header again")]
        _need(msg, "manifest", dict, "header")
        if msg.get("signature") is not None:
            _need(msg, "signature", dict, "header")
        files = _need(msg, "files", dict, "header")
        cb = _need(msg, "chunk_bytes", int, "header")
        if not 0 < cb <= 16 * CHUNK_BYTES:
            raise MessageError(f"header.chunk_bytes: {cb} outside 1-{16 * CHUNK_BYTES}")
        if not 0 < len(files) <= MAX_FILES:
            raise MessageError(f"header.files: expected 1-{MAX_FILES} files, got {len(files)}")
        total = 0
        for name, f in files.items():
            if not NAME_RE.match(name):
                raise MessageError(f"header.files: {name!r} is not a plain file name"[:200])
            if not isinstance(f, dict):
                raise MessageError(f"header.files.{name}: expected an object")
            size = _need(f, "size", int, f"header.files.{name}")
            sha = _need(f, "sha256", str, f"header.files.{name}")
            count = _need(f, "chunks", int, f"header.files.{name}")
            if size < 0 or len(sha) != 64 or count != max(1, math.ceil(size / cb)):
                raise MessageError(f"header.files.{name}: size {size}, sha256 or chunks "
                                   f"{count} inconsistent")
            total += size
        out = []
        if self._current is not None:
            old = self._current.id
            self._finish(old)
            out.append(Outcome("refused", old, f"superseded by deployment {dep} before it "
                               "was received whole"))
        if total > self.max_bytes:
            self._finish(dep)
            return out + [Outcome("refused", dep, f"deployment of {total} bytes is larger than "
                                  f"this device takes (ota max_bytes {self.max_bytes})")]
        self._current = _Assembly(msg, self._clock())
        out.append(Outcome("received", dep, info={"total_bytes": total,
                                                  "chunks": self._current.expected}))
        return out + self._complete_if_whole()

    def _chunk(self, msg: dict) -> list[Outcome]:
        dep = msg["deployment"]
        a = self._current
        if a is None or a.id != dep:
            return [Outcome("ignored", dep, "chunk of a deployment not being received")]
        name = _need(msg, "file", str, "chunk")
        if name not in a.files:
            raise MessageError(f"chunk.file: {name!r} is not in the header's files"[:200])
        index = _need(msg, "index", int, "chunk")
        if not 0 <= index < a.files[name]["chunks"]:
            raise MessageError(f"chunk.index: {index} outside 0-{a.files[name]['chunks'] - 1}")
        data = _need(msg, "data", str, "chunk")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MessageError("chunk.data: not base64") from exc
        if len(raw) > a.chunk_bytes:
            raise MessageError(f"chunk.data: {len(raw)} bytes, more than chunk_bytes "
                               f"{a.chunk_bytes}")
        a.parts[name].setdefault(index, raw)  # a duplicate (QoS 1 resend) changes nothing
        a.last_t = self._clock()
        return self._complete_if_whole()

    def _complete_if_whole(self) -> list[Outcome]:
        a = self._current
        if a is None or a.missing:
            return []
        files = {}
        for name, f in a.files.items():
            data = b"".join(a.parts[name][i] for i in range(f["chunks"]))
            if len(data) != f["size"] or hashlib.sha256(data).hexdigest() != f["sha256"]:
                return self._refuse(a.id, f"file {name}: the bytes received do not match the "
                                    "header's size and sha256 (corrupted in transit)")
            files[name] = data
        self._finish(a.id)
        return [Outcome("complete", a.id, deployment=Deployment(
            a.id, a.manifest, a.signature, files, a.received_t, a.total))]

    def expire(self) -> list[Outcome]:
        """A deployment silent for ``timeout_s`` with chunks missing is refused."""
        a = self._current
        if a is None or self._clock() - a.last_t < self.timeout_s:
            return []
        missing, expected = a.missing, a.expected
        return self._refuse(a.id, f"incomplete: {expected - missing} of {expected} chunks "
                            f"received, none for {self.timeout_s:g} s")
