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
