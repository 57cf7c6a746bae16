"""``vitaledge data fetch``: a real download where PhysioNet is reachable, a clear error
naming the cause where it is not (CI reaches only package registries)."""

import pytest
from click.testing import CliRunner

from vitaledge.cli import main


@pytest.mark.parametrize("database, record, files", [
    ("mitdb", "100", ["100.hea", "100.dat", "100.atr"]),
    ("nstdb", "ma", ["ma.hea", "ma.dat"]),  # a noise record: no annotations to fetch
])
def test_fetch_downloads_or_explains(tmp_path, database, record, files):
    r = CliRunner().invoke(main, ["data", "fetch", database, "--out", str(tmp_path),
                                  "--records", record])
    if r.exit_code == 0:
        assert all((tmp_path / f).exists() for f in files), list(tmp_path.iterdir())
    else:
        assert f"could not download {database} from PhysioNet" in r.output
        assert "check the network connection" in r.output
        assert "Traceback" not in r.output


def test_fetch_names_the_databases_it_knows(tmp_path):
    r = CliRunner().invoke(main, ["data", "fetch", "nstdbx", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "'mitdb'" in r.output and "'nstdb'" in r.output
    assert not any(tmp_path.iterdir())


def test_an_output_directory_that_cannot_be_made_is_one_line(tmp_path):
    """Refused before any download (it was a NotADirectoryError traceback)."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    r = CliRunner().invoke(main, ["data", "fetch", "nstdb", "--out", str(afile / "sub"),
                                  "--records", "ma"])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert r.output == f"Error: cannot create output directory {afile / 'sub'}: Not a directory\n"


def test_a_failed_fetch_leaves_no_empty_folder_it_made(tmp_path, monkeypatch):
    """The download fails (here: wfdb raises as it does offline): the --out folder the
    fetch made is gone again, and one that was there before stays."""
    import wfdb

    def offline(*args, **kwargs):
        raise ConnectionError("no route to physionet.org")

    monkeypatch.setattr(wfdb, "dl_database", offline)
    new = tmp_path / "new" / "mitdb"
    r = CliRunner().invoke(main, ["data", "fetch", "mitdb", "--out", str(new),
                                  "--records", "100"])
    assert r.exit_code == 1 and "could not download mitdb" in r.output, r.output
    assert not new.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    r = CliRunner().invoke(main, ["data", "fetch", "mitdb", "--out", str(kept),
                                  "--records", "100"])
    assert r.exit_code == 1 and kept.is_dir()
