"""Files written whole or not at all: what a device reads back after a crash (a manifest,
its signature, the self-test vectors, the held-out inputs, the probation marker, a review
page) is either the earlier file or the new one, never half of one.

A temporary file is made beside the target (a unique name: two writers never share one),
filled, optionally flushed to the disk, given the permissions a new file gets under the
umask (``mkstemp``'s 0600 would hide it from the other users a plain write lets read it),
then renamed over the target. On any failure, Ctrl-C included, the temporary file is
removed and the target is as it was.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: str | Path, data: bytes | str, fsync: bool = False) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; ``fsync``: on the disk before
    the rename (the probation marker a restart reads). Returns ``path``."""
    path = Path(path)
    body = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(body)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
