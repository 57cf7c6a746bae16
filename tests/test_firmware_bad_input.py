"""Bad input to ``firmware mcu``, ``firmware export`` and ``data synth`` gets one ``Error:``
line naming the option at fault and a non-zero exit, never a traceback; an export into
the artifact's own directory is refused before a byte is written.

The options are checked before the artifact is read, so an empty directory stands in for
one: no model is trained or converted here."""

from __future__ import annotations

import pytest
from conftest import error_line, invoke


def snapshot(d) -> dict:
    """Every file under ``d`` with its bytes."""
    return {p.relative_to(d): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture
def fake_artifact(tmp_path):
    """A directory laid out like a micro artifact (convert writes model_data.cc and
    op_resolver.cc there too, the names export would overwrite)."""
    art = tmp_path / "micro-int8"
    art.mkdir()
    for name, text in {"manifest.json": "{}", "model.tflite": "not a model",
                       "model_data.cc": "// convert's own", "op_resolver.cc": "// ditto"}.items():
        (art / name).write_text(text)
    return art


# ---- firmware mcu: --beats, --fs, --delegate ---------------------------------------------

@pytest.mark.parametrize("beats", ["0", "-5"])
def test_mcu_refuses_fewer_than_one_beat(tmp_path, beats):
    line = error_line(invoke(["firmware", "mcu", tmp_path, "--data", tmp_path,
                              "--beats", beats]))
    assert "--beats" in line and beats in line, line


@pytest.mark.parametrize("fs", ["0", "-1", "nan", "inf", "-inf", "9.99", "10001", "1e9"])
def test_mcu_refuses_an_implausible_sensor_rate(tmp_path, fs):
    line = error_line(invoke(["firmware", "mcu", tmp_path, "--data", tmp_path, "--fs", fs]))
    assert "--fs" in line and "outside 10-10000 Hz" in line, line


@pytest.mark.parametrize("delegates, named", [("bogus", "'bogus'"), ("none,gpu", "'gpu'"),
                                              (",", "names no delegate")])
def test_mcu_delegate_error_names_what_mcu_accepts(tmp_path, delegates, named):
    line = error_line(invoke(["firmware", "mcu", tmp_path, "--data", tmp_path,
                              "--delegate", delegates]))
    assert "--delegate" in line and named in line, line
    assert "none, xnnpack" in line, line
    assert "--fallback" not in line, line  # mcu has no such option


def test_mcu_good_options_get_past_parsing(tmp_path):
    """Rates at the bounds and a spaced, repeated delegate list are accepted: what fails
    is the (empty) artifact, not an option."""
    for fs in ("10", "10000"):
        r = invoke(["firmware", "mcu", tmp_path, "--data", tmp_path, "--beats", "1",
                    "--fs", fs, "--delegate", " none , xnnpack,none"])
        line = error_line(r)
        assert r.exit_code == 1 and "manifest" in line, line


# ---- firmware export: --out = the artifact directory -------------------------------------

@pytest.mark.parametrize("how", ["same", "trailing slash", "dotdot", "symlink", "manifest"])
def test_export_into_the_artifact_directory_is_refused_before_writing(fake_artifact, how):
    art = fake_artifact
    before = snapshot(art.parent)
    artifact, out = {
        "same": (art, art),
        "trailing slash": (art, f"{art}/"),
        "dotdot": (art, art / ".." / art.name),
        "symlink": (art, art.parent / "link"),
        "manifest": (art / "manifest.json", art),
    }[how]
    if how == "symlink":
        (art.parent / "link").symlink_to(art, target_is_directory=True)
        before = snapshot(art.parent)
    line = error_line(invoke(["firmware", "export", artifact, "--out", out]))
    assert "--out" in line and "also an input" in line, line
    assert snapshot(art.parent) == before  # nothing written, nothing overwritten


def test_export_elsewhere_is_not_refused_as_the_artifact_directory(fake_artifact, tmp_path):
    line = error_line(invoke(["firmware", "export", fake_artifact, "--out", tmp_path / "fw"]))
    assert "also an input" not in line and "manifest" in line, line


def test_export_does_not_replace_a_projects_files_without_overwrite(fake_artifact, tmp_path):
    """A firmware project's own README.md in --out was replaced without a word."""
    fw = tmp_path / "proj"
    fw.mkdir()
    (fw / "README.md").write_text("MINE")
    line = error_line(invoke(["firmware", "export", fake_artifact, "--out", fw]))
    assert str(fw / "README.md") in line and "already exists" in line, line
    assert "--overwrite" in line and (fw / "README.md").read_text() == "MINE"
    # --overwrite lets it past that check (the fake artifact's manifest is refused next)
    line = error_line(invoke(["firmware", "export", fake_artifact, "--out", fw,
                              "--overwrite"]))
    assert "already exists" not in line and "manifest" in line, line


# ---- data synth: --fs, --minutes ---------------------------------------------------------

@pytest.mark.parametrize("fs", ["1", "0", "-1", "nan", "inf", "9.99", "10001"])
def test_synth_refuses_a_rate_the_readers_would_refuse(tmp_path, fs):
    line = error_line(invoke(["data", "synth", "--out", tmp_path / "s", "--fs", fs]))
    assert "--fs" in line and "outside 10-10000 Hz" in line, line
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("minutes", ["0", "-1", "nan", "inf", "-inf", "1e-9", "0.2", "1441",
                                     "1e308"])
def test_synth_refuses_a_length_that_is_no_record(tmp_path, minutes):
    line = error_line(invoke(["data", "synth", "--out", tmp_path / "s", "--minutes", minutes]))
    assert "--minutes" in line and ("0.25<=x<=1440" in line or "not a finite" in line), line
    assert not (tmp_path / "s").exists()


def test_synth_refuses_a_day_at_a_high_rate(tmp_path):
    line = error_line(invoke(["data", "synth", "--out", tmp_path / "s", "--minutes", "1440",
                              "--fs", "1000"]))
    assert "--minutes 1440" in line and "--fs 1000" in line and "samples" in line, line
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("fs", ["10", "10000"])
def test_synth_at_the_bounds_writes_a_record_the_readers_accept(tmp_path, fs):
    from vitaledge.device.io.records import read_record

    r = invoke(["data", "synth", "--out", tmp_path, "--n-records", "1", "--minutes", "0.25",
                "--fs", fs])
    assert r.exit_code == 0, r.output
    rec = read_record(tmp_path / "s000")
    assert rec.fs == float(fs) and len(rec.signal) == round(0.25 * 60 * float(fs))


def test_a_sensor_whose_bytes_all_dropped_fails():
    """--wait 0 over TCP with nobody listening dropped every byte and exited 0."""
    from conftest import free_port, invoke

    r = invoke(["firmware", "sensor", "--synth", "--minutes", "0.05", "--speed", "100",
                "--port", f"tcp:127.0.0.1:{free_port()}", "--wait", "0"])
    assert r.exit_code == 1, r.output
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("Error: nothing reached tcp:127.0.0.1:") and "dropped" in last
