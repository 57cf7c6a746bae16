import numpy as np
import pytest

from vitaledge.device.records import RecordError, list_records, read_record


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
    with pytest.raises(RecordError, match="bad"):
        read_record(tmp_path / "bad")
    with pytest.raises(RecordError, match="no WFDB records"):
        list_records(tmp_path)
    assert [p.name for p in list_records(mitdb_dir)] == ["100", "104", "106", "108", "113",
                                                         "208", "232"]


def test_nan_samples_are_refused(tmp_path):
    import wfdb

    sig = np.sin(np.linspace(0, 20, 2000))[:, None]
    sig[500] = np.nan
    wfdb.wrsamp("nanrec", fs=360, units=["mV"], sig_name=["MLII"], p_signal=sig, fmt=["16"],
                adc_gain=[200], baseline=[0], write_dir=str(tmp_path))
    with pytest.raises(RecordError, match="non-finite samples.*sample 500"):
        read_record(tmp_path / "nanrec")
