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


@pytest.mark.parametrize("database, records, unknown", [
    ("mitdb", "100,999", "999"), ("nstdb", "bw,xx", "xx"), ("mitdb", "../etc", "../etc"),
    ("mitdb", "110", "110"),  # MIT-BIH skips 110 and 120
])
def test_a_record_the_database_has_not_is_refused_before_any_download(tmp_path, monkeypatch,
                                                                      database, records,
                                                                      unknown):
    """Each was sent to PhysioNet and came back as a network failure ('check the network
    connection') on an offline machine, though no such record exists."""
    import wfdb

    def no_network(*args, **kwargs):
        raise AssertionError("downloaded")

    monkeypatch.setattr(wfdb, "dl_database", no_network)
    r = CliRunner().invoke(main, ["data", "fetch", database, "--out", str(tmp_path / "d"),
                                  "--records", records])
    assert r.exit_code == 1, r.output
    assert r.output.startswith(f"Error: {database} has no record {unknown}; its records: ")
    assert not (tmp_path / "d").exists()


def test_the_record_lists_are_the_databases_own():
    from vitaledge.device.io.fetch import RECORDS
    from vitaledge.train.splits import DS1, DS2

    assert len(RECORDS["mitdb"]) == 48 and set(DS1) | set(DS2) < set(RECORDS["mitdb"])
    assert {"102", "104", "107", "217"} < set(RECORDS["mitdb"])  # the paced records
    assert len(RECORDS["nstdb"]) == 15 and {"118e_6", "119e24", "em"} < set(RECORDS["nstdb"])
