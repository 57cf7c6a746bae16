"""device/io/atomic.py: the one way files a device reads back are written."""

from __future__ import annotations

import os
import stat

import pytest

from vitaledge.device.io.atomic import write_atomic


def test_a_file_is_replaced_whole_with_the_umasks_permissions(tmp_path):
    target = tmp_path / "manifest.json"
    target.write_text("earlier")
    old = os.umask(0o027)
    try:
        write_atomic(target, "new text ✓")
    finally:
        os.umask(old)
    assert target.read_text(encoding="utf-8") == "new text ✓"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # 0666 less the umask, not 0600
    write_atomic(target, b"\x00bytes", fsync=True)
    assert target.read_bytes() == b"\x00bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]  # no temp left


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_earlier_file_and_no_temporary_one(tmp_path, monkeypatch,
                                                                   exc):
    target = tmp_path / "selftest.npz"
    target.write_bytes(b"earlier")

    def fails(*args, **kwargs):
        raise exc
    monkeypatch.setattr(os, "replace", fails)
    with pytest.raises(type(exc)):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["selftest.npz"]
