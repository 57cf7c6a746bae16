"""Files written whole or not at all: what a device reads back after a crash (a manifest,
its signature, the self-test vectors, the held-out inputs, the probation marker, a review
page) is either the earlier file or the new one, never half of one.

A temporary file is made beside the target (a unique name: two writers never share one)
with the permissions any new file gets (0666 less the umask, applied by the kernel: the
process's umask is never changed, since the daemon has other threads making files),
filled, optionally flushed to the disk, then renamed over the target. On any failure,
Ctrl-C included, the temporary file is removed and the target is as it was. Without
``fsync`` that holds for a crashed process, not for a power loss.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomic(path: str | Path, data: bytes | str, fsync: bool = False) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; ``fsync``: on the disk before
    the rename (the probation marker a restart reads). Returns ``path``."""
    path = Path(path)
    body = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(body)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
