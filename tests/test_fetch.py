"""``vitaledge data fetch``: a real download where PhysioNet is reachable, a clear error
naming the cause where it is not (CI reaches only package registries)."""

from click.testing import CliRunner

from vitaledge.cli import main


def test_fetch_downloads_or_explains(tmp_path):
    r = CliRunner().invoke(main, ["data", "fetch", "mitdb", "--out", str(tmp_path),
                                  "--records", "100"])
    if r.exit_code == 0:
        assert (tmp_path / "100.hea").exists() and (tmp_path / "100.atr").exists()
    else:
        assert "could not download mitdb from PhysioNet" in r.output
        assert "check the network connection" in r.output
        assert "Traceback" not in r.output
