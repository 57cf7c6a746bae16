import numpy as np
import pytest
from conftest import mitdb_records

from vitaledge.device.io.records import RecordError, list_records, read_record


def test_reads_mlii_and_annotations(mitdb_dir):
    rec = read_record(mitdb_dir / "100")
    assert rec.lead == "MLII" and rec.fs == 360
    assert len(rec.signal) == 650000
    assert len(rec.ann_samples) == len(rec.ann_symbols) > 2000
    # R peaks sit on large deflections: the annotated sample is near a local extremum.
    x = rec.signal - np.median(rec.signal)
    peaks = [np.abs(x[s - 10: s + 10]).max() for s in rec.ann_samples[5:50]]
    assert np.median(peaks) > 0.5  # mV


def test_missing_lead_falls_back_to_first_channel(mitdb_dir, caplog):
    rec = read_record(mitdb_dir / "104")
    assert rec.lead == "V5"
    assert "MLII not found" in caplog.text


def test_missing_and_malformed_records_are_clear_errors(tmp_path, mitdb_dir):
    with pytest.raises(RecordError, match="no such WFDB header"):
        read_record(tmp_path / "nope")
    (tmp_path / "bad.hea").write_text("this is not a header\n")
    with pytest.raises(RecordError, match=r"bad\.hea: line 1 'this is not a header' is not "
                                          r"'NAME NSIG \[FS \[NSAMP\]\]'$"):
        read_record(tmp_path / "bad")
    with pytest.raises(RecordError, match="no WFDB records"):
        list_records(tmp_path)
    named = tmp_path / "named"
    named.mkdir()
    for p in mitdb_records(mitdb_dir, ["232", "100", "113"]):
        for ext in (".hea", ".dat", ".atr"):
            (named / (p.name + ext)).symlink_to(p.with_suffix(ext))
    (named / "notes.txt").write_text("not a record\n")
    assert [p.name for p in list_records(named)] == ["100", "113", "232"]


def test_nan_samples_are_refused(tmp_path):
    import wfdb

    sig = np.sin(np.linspace(0, 20, 2000))[:, None]
    sig[500] = np.nan
    wfdb.wrsamp("nanrec", fs=360, units=["mV"], sig_name=["MLII"], p_signal=sig, fmt=["16"],
                adc_gain=[200], baseline=[0], write_dir=str(tmp_path))
    with pytest.raises(RecordError, match="non-finite samples.*sample 500"):
        read_record(tmp_path / "nanrec")


def test_light_signal_reader_equals_wfdb(mitdb_dir, synth_dir):
    import wfdb

    from vitaledge.device.io.wfdb_signals import read_signals

    for p in [*list_records(mitdb_dir), synth_dir / "s000"]:
        ours, ref = read_signals(p), wfdb.rdrecord(str(p))
        assert ours is not None, p
        assert ours.names == ref.sig_name and ours.fs == ref.fs
        np.testing.assert_array_equal(ours.physical, ref.p_signal)


def test_light_reader_declines_layouts_it_does_not_handle(tmp_path):
    from vitaledge.device.io.wfdb_signals import read_signals

    (tmp_path / "multi.hea").write_text("multi/2 1 360 1000\nseg1 500\nseg2 500\n")
    assert read_signals(tmp_path / "multi") is None
    (tmp_path / "f80.hea").write_text("f80 1 360 10\nf80.dat 80 200 8 128 0 0 0 MLII\n")
    (tmp_path / "f80.dat").write_bytes(bytes(10))
    assert read_signals(tmp_path / "f80") is None


def test_replay_reading_does_not_import_wfdb(mitdb_dir):
    import subprocess
    import sys

    code = ("import sys\nfrom vitaledge.device.io.records import read_record\n"
            f"r = read_record({str(mitdb_dir / '100')!r}, annotator=None)\n"
            "print(len(r.signal), 'wfdb' in sys.modules, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd="/").stdout.split()
    assert out == ["650000", "False", "False"]


def test_data_synth_does_not_replace_records_without_overwrite(tmp_path):
    from click.testing import CliRunner

    from vitaledge.cli import main

    def synth(*extra):
        return CliRunner().invoke(main, ["data", "synth", "--out", str(tmp_path), "--minutes",
                                         "0.25", "--n-records", "2", *extra])

    assert synth("--seed", "1").exit_code == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert len(before) == 6
    r = synth("--seed", "5")
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert r.output == (f"Error: {tmp_path / 's000.hea'}: already exists (an earlier run?); "
                        "give a new --out, or --overwrite to replace it\n")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    # a folder where a file goes: refused before anything is written (s000 and s001.hea
    # were written over, then the run stopped on "[Errno 21] Is a directory")
    (tmp_path / "s001.dat").unlink()
    (tmp_path / "s001.dat").mkdir()
    del before["s001.dat"]
    r = synth("--seed", "5", "--overwrite")
    assert r.exit_code == 1 and r.output == (
        f"Error: {tmp_path / 's001.dat'}: a directory where a record file goes; not "
        "replaced\n"), r.output
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    (tmp_path / "s001.dat").rmdir()
    r = synth("--seed", "5", "--overwrite")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s000.dat").read_bytes() != before["s000.dat"]


def test_a_record_without_annotations_is_named_not_skipped_in_silence(tmp_path, caplog):
    """A record with a header and no .atr was skipped without a word by --data DIR, and
    asked for by name it was 'not found' although it is there."""
    import logging

    from vitaledge.device.io.records import RecordError, list_records, select_records

    for name, exts in (("100", ("hea", "dat", "atr")), ("101", ("hea", "dat"))):
        for ext in exts:
            (tmp_path / f"{name}.{ext}").write_text("")
    with caplog.at_level(logging.WARNING):
        paths = list_records(tmp_path)
    assert [p.name for p in paths] == ["100"]
    assert "1 record(s) without .atr annotations left out: 101" in caplog.text
    with pytest.raises(RecordError, match="101 has a header but no reference annotations"):
        select_records(paths, ["101"])
    with pytest.raises(RecordError, match="record 100 named twice"):
        select_records(paths, ["100", "100"])
