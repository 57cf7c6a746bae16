"""Damaged .npz inputs (held-out beats, replay sessions, self-test vectors): a truncated,
empty or corrupt file, NaN inputs and labels outside the model's classes each get an
error naming the file and what was wrong, never numpy's or zipfile's exception.

Every file is made here from tiny arrays; no model is trained or converted."""

from __future__ import annotations

import hashlib
import io
from types import SimpleNamespace

import numpy as np
import pytest

from vitaledge.device.dsp.windows import WindowSpec
from vitaledge.device.io.heldout import HeldoutError, read_heldout, write_heldout

SPEC = WindowSpec.kachuee()


def heldout(path, n: int = 6, classes: int = 3, **change):
    """A small heldout.npz in convert's layout (one beat input), with ``change`` applied
    to its arrays: ``x`` the windows, ``y`` the labels."""
    rng = np.random.default_rng(0)
    x = change.get("x", rng.normal(size=(n, SPEC.length, 1)).astype(np.float32))
    y = change.get("y", np.arange(n) % classes)
    write_heldout(path, x, y, {"kind": "beat", "window": SPEC.to_dict()})
    return path


def truncated(path):
    """The first half of ``path``'s bytes, as an interrupted copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def corrupt_member(path):
    """An archive whose directory is intact but whose compressed array is not."""
    data = bytearray(path.read_bytes())
    data[200:260] = bytes(60)
    path.write_bytes(bytes(data))
    return path


# ---- heldout.npz ---------------------------------------------------------------------------

def test_a_good_heldout_file_reads(tmp_path):
    h = read_heldout(heldout(tmp_path / "h.npz"), n_labels=3)
    assert len(h.y) == 6 and h.inputs[0].shape == (6, SPEC.length, 1)


@pytest.mark.parametrize("damage, said", [
    (truncated, "not a valid .npz (truncated or corrupt"),
    (lambda p: p.write_bytes(b"") or p, "empty file (0 bytes), not a valid .npz"),
    (corrupt_member, "truncated or corrupt"),
    # numpy's own words named allow_pickle, and of random bytes advised loading them
    # "unsafely using the allow_pickle= keyword argument"
    (lambda p: np.savez(p, X_0=np.array([{"a": 1}], dtype=object)) or p,
     "not a readable .npz (it holds object arrays: pickled Python objects, which are never "
     "loaded)"),
    (lambda p: (p.write_bytes(np.random.default_rng(0).bytes(600)), p)[1],
     "not a valid .npz (not a zip archive of arrays)"),
])
def test_a_damaged_heldout_file_is_a_heldout_error_naming_it(tmp_path, damage, said):
    p = damage(heldout(tmp_path / "held.npz"))
    with pytest.raises(HeldoutError) as err:
        read_heldout(p)
    assert str(err.value).startswith(f"{p}: ") and said in str(err.value), err.value
    assert "allow_pickle" not in str(err.value)


@pytest.mark.parametrize("change, said", [
    ({"x": np.full((6, SPEC.length, 1), np.nan, np.float32)},
     "X_0 holds NaN or infinite values"),
    ({"y": np.arange(6) + 100}, "labels 'y' run from 100 to 105, expected class indices "
                                "0..2 (the model has 3 classes)"),
    ({"y": -np.ones(6, np.int64)}, "labels 'y' run from -1"),
])
def test_nan_inputs_and_labels_outside_the_classes_are_refused(tmp_path, change, said):
    p = heldout(tmp_path / "held.npz", **change)
    with pytest.raises(HeldoutError, match=rf"^{p}: ") as err:
        read_heldout(p, n_labels=3)
    assert said in str(err.value), err.value


@pytest.mark.parametrize("arrays, said", [
    ({"y": np.float64(1.0)}, "labels 'y' are float64[]"),
    ({"y": np.ones(6) * 0.5}, "expected (n,) integer class indices"),
    ({"X_0": np.array("x")}, "X_0 is <U1[]"),
])
def test_labels_and_inputs_of_the_wrong_kind_are_refused(tmp_path, arrays, said):
    good = {"X_0": np.zeros((6, 4), np.float32), "y": np.zeros(6, np.int64),
            "signal": '{"kind": "beat"}'}
    p = tmp_path / "held.npz"
    np.savez(p, **{**good, **arrays})
    with pytest.raises(HeldoutError) as err:
        read_heldout(p)
    assert str(err.value).startswith(f"{p}: ") and said in str(err.value), err.value


# ---- the commands that read it: firmware mcu, bench run --------------------------------

def fake_beat_model(monkeypatch, module, tmp_path, labels=("N", "S", "V")):
    """``module.load_manifest`` answers with a one-input beat model's manifest: the data
    is read (and refused) before the model file is."""
    from vitaledge.device.inputs.beat import BeatSignal

    tmp_path.mkdir()
    model = tmp_path / "model.tflite"
    model.write_bytes(b"not read before the data")
    m = SimpleNamespace(task="beat", inputs=[SimpleNamespace(name="beat")],
                        labels=list(labels), signal=BeatSignal(window=SPEC))
    monkeypatch.setattr(module, "load_manifest", lambda *a, **k: (m, model))
    return tmp_path


BAD_FILES = {
    "truncated": (lambda p: truncated(heldout(p)), "truncated or corrupt"),
    "empty": (lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
    "all NaN": (lambda p: heldout(p, x=np.full((6, SPEC.length, 1), np.nan, np.float32)),
                "X_0 holds NaN"),
    "labels + 100": (lambda p: heldout(p, y=np.arange(6) % 3 + 100),
                     "the model has 3 classes"),
}


@pytest.mark.parametrize("bad", list(BAD_FILES))
def test_firmware_mcu_refuses_a_bad_heldout_file_in_one_line(tmp_path, monkeypatch, bad):
    from conftest import error_line, invoke

    from vitaledge.firmware_sim import mcu

    make, said = BAD_FILES[bad]
    art = fake_beat_model(monkeypatch, mcu, tmp_path / "art")
    data = tmp_path / "held.npz"
    make(data)
    line = error_line(invoke(["firmware", "mcu", art, "--data", data, "--beats", "4"]))
    assert f"{data}: " in line and said in line, line


@pytest.mark.parametrize("bad", list(BAD_FILES))
def test_bench_run_fails_the_row_naming_the_bad_heldout_file(tmp_path, monkeypatch, bad):
    from conftest import invoke

    from vitaledge.device.bench import latency

    make, said = BAD_FILES[bad]
    art = fake_beat_model(monkeypatch, latency, tmp_path / "art")
    data = tmp_path / "held.npz"
    make(data)
    r = invoke(["bench", "run", art, "--data", data, "--runs", "1", "--warmup", "0"])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
    assert "Traceback" not in r.output and "Aborted" not in r.output, r.output
    assert f"{data}: " in r.output and said in r.output, r.output


def test_bench_of_a_multi_input_model_names_the_truncated_heldout_beside_it(tmp_path):
    """``bench run ARTIFACT`` of an RR model reads the heldout.npz convert left beside
    the artifact directory."""
    from vitaledge.device.bench.latency import task_inputs

    manifest = SimpleNamespace(task="beat", labels=["N", "S", "V"],
                               inputs=[SimpleNamespace(name="beat"), SimpleNamespace(name="rr")])
    held = truncated(heldout(tmp_path / "heldout.npz"))
    with pytest.raises(HeldoutError, match=rf"^{held}: not a valid \.npz \(truncated"):
        task_inputs(manifest, None, tmp_path / "cpu-int8")


# ---- replay sessions -----------------------------------------------------------------------

def session(path, **change):
    from vitaledge.device.io.sessions import Session, write_session

    s = Session(np.zeros(100), np.zeros(100), 50.0, np.zeros((2, 4, 4), np.uint8),
                np.array([0.1, 1.0]))
    write_session(path, s)
    if change:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        np.savez(path, **{**arrays, **change})
    return path


@pytest.mark.parametrize("damage, said", [
    (truncated, "cannot read session: not a valid .npz (truncated or corrupt"),
    (lambda p: p.write_bytes(b"") or p, "cannot read session: empty file (0 bytes)"),
    (lambda p: session(p, fs=np.array([50.0, 60.0])), "got fs float64[2]"),
    (lambda p: session(p, ecg=np.array(["a"] * 100)), "got ecg <U1[100]"),
    (lambda p: session(p, face_times=np.float64(1.0)), "got face_times float64[]"),
])
def test_a_damaged_session_is_a_session_error_naming_it(tmp_path, damage, said):
    """What ``device run --source replay:FILE.npz`` reads (its message is the CLI's)."""
    from vitaledge.device.io.sessions import SessionError, read_session

    p = tmp_path / "s.npz"
    session(p)
    p = damage(p) or p
    with pytest.raises(SessionError) as err:
        read_session(p)
    assert str(err.value).startswith(f"{p}: ") and said in str(err.value), err.value


# ---- self-test vectors ---------------------------------------------------------------------

@pytest.mark.parametrize("damage, said", [
    (lambda b: b[: len(b) // 2], "File is not a zip file"),
    (lambda b: b"", "empty file (0 bytes)"),
])
def test_truncated_selftest_vectors_that_match_their_manifest_are_refused(tmp_path, damage,
                                                                          said):
    """A manifest rewritten to describe the damaged file (sha256 and size match)."""
    from vitaledge.device.model.manifest import SelfTestRef
    from vitaledge.device.model.selftest import SelfTestError, read_vectors

    buf = io.BytesIO()
    np.savez_compressed(buf, expected=np.zeros((2, 3), np.float32),
                        input_beat=np.zeros((2, 8), np.float32))
    data = damage(buf.getvalue())
    (tmp_path / "selftest.npz").write_bytes(data)
    ref = SelfTestRef(file="selftest.npz", sha256=hashlib.sha256(data).hexdigest(),
                      size_bytes=len(data), vectors=2, atol=0.01)
    m = SimpleNamespace(selftest=ref, schema_version=3)
    with pytest.raises(SelfTestError) as err:
        read_vectors(tmp_path, m)
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path / 'selftest.npz'}: not a self-test vectors file")
    assert said in msg, msg
