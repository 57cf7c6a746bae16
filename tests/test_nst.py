"""Noise-stress records (vitaledge data nst): the SNR asked for is the SNR delivered, the
output is an ordinary WFDB record, and a seed reproduces it."""

import json

import numpy as np
import pytest

from vitaledge.device.io.nst import NST_SNRS, add_noise, make_nst, noisy_segments, snr_of


def test_protocol_and_offsets_leave_no_step():
    fs = 100.0
    n = int(20 * 60 * fs)
    segs = noisy_segments(n, fs)
    assert segs[0] == (30000, 42000) and segs[1] == (54000, 66000)  # 5:00-7:00, 9:00-11:00
    rng = np.random.default_rng(0)
    x = np.sin(np.arange(n) / fs * 2 * np.pi)
    noise = np.cumsum(rng.normal(0, 0.05, n)) + 3.0  # a wandering baseline far from 0
    y = add_noise(x, noise, 2.0, segs)
    assert np.array_equal(y[:30000], x[:30000])
    jumps = np.abs(np.diff(y - x))
    # at each switch the output continues from the previous sample instead of jumping 6 mV
    assert jumps.max() < 0.5
    inside = (y - x)[30010:41990]
    np.testing.assert_allclose(inside - inside.mean(), 2.0 * (noise[30010:41990]
                                                              - noise[30010:41990].mean()))


@pytest.fixture(scope="module")
def nst_sources(data_dir):
    from conftest import mitdb_records

    clean = mitdb_records(data_dir / "mitdb", ["118", "119"])
    noise = [data_dir / "nstdb-noise" / n for n in ("ma", "bw")]
    if not all(p.with_suffix(".hea").exists() for p in noise):
        pytest.skip("nstdb-noise records ma and bw not found")
    return clean, noise


def test_snr_measured_back_agrees_within_half_a_db(nst_sources, tmp_path):
    import wfdb

    from vitaledge.device.io.aami import map_annotations

    clean, noise = nst_sources
    for c in clean:
        rec = wfdb.rdrecord(str(c))
        a = wfdb.rdann(str(c), "atr")
        s, cls = map_annotations(np.asarray(a.sample), list(a.symbol))
        for nz in noise:
            for snr in NST_SNRS:
                r = make_nst(c, nz, snr, tmp_path)
                out = wfdb.rdrecord(str(tmp_path / r.record))
                assert r.clipped_samples == 0
                for ch in range(2):
                    got = snr_of(out.p_signal[:, ch], rec.p_signal[:, ch], rec.fs, s[cls == 0],
                                 r.segments)
                    assert abs(got - snr) <= 0.5, (r.record, ch, got)


def test_output_is_a_record_every_loader_reads_and_a_seed_reproduces_it(nst_sources, tmp_path):
    import wfdb

    from vitaledge.device.io.records import read_record
    from vitaledge.device.io.wfdb_signals import read_signals

    (c, _), (ma, _) = nst_sources
    a = make_nst(c, ma, 6, tmp_path / "a", seed=7)
    b = make_nst(c, ma, 6, tmp_path / "b", seed=7)
    other = make_nst(c, ma, 6, tmp_path / "c", seed=8)
    assert a.record == "118_ma6" and a.offset_s == b.offset_s != other.offset_s
    assert (tmp_path / "a/118_ma6.dat").read_bytes() == (tmp_path / "b/118_ma6.dat").read_bytes()
    rec = read_record(tmp_path / "a/118_ma6")
    ref = read_record(c)
    assert rec.fs == ref.fs and len(rec.signal) == len(ref.signal)
    np.testing.assert_array_equal(rec.ann_samples, ref.ann_samples)
    assert rec.ann_symbols == ref.ann_symbols
    np.testing.assert_allclose(rec.signal[:300 * 360], ref.signal[:300 * 360], atol=0.006)
    light = read_signals(tmp_path / "a/118_ma6")
    np.testing.assert_allclose(light.physical, wfdb.rdrecord(str(tmp_path / "a/118_ma6")).p_signal)
    meta = json.loads((tmp_path / "a/118_ma6.nst.json").read_text())
    assert meta["snr_db"] == 6 and meta["segments"][0][0] == 300 * 360


def test_cli_makes_records_and_names_a_missing_one(nst_sources, tmp_path):
    from click.testing import CliRunner

    from vitaledge.cli import main

    (c, _), (ma, _) = nst_sources
    r = CliRunner().invoke(main, ["data", "nst", "--record", str(c), "--noise", str(ma),
                                  "--snr", "12", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "118_ma12.hea").exists() and "118_ma12: 118 + ma at 12 dB" in r.output
    r = CliRunner().invoke(main, ["data", "nst", "--record", str(c), "--noise", "nope",
                                  "--out", str(tmp_path)])
    assert r.exit_code == 1 and "nope.hea: no such WFDB header" in r.output
    assert "Traceback" not in r.output


def test_a_noise_record_shorter_than_a_noisy_period_is_refused(nst_sources, tmp_path):
    """Noise shorter than one 2-minute noisy period would repeat within it (a 0.5-s record
    used to be looped silently, 240 times a period); the message names the record, its
    length and the least one; nothing is written."""
    import wfdb
    from click.testing import CliRunner

    from vitaledge.cli import main

    (c, _), (ma, _) = nst_sources
    rec = wfdb.rdrecord(str(ma))
    for seconds in (0.5, 60.0):
        name = f"ma{int(seconds * 1000)}ms"
        wfdb.wrsamp(name, fs=rec.fs, units=rec.units, sig_name=rec.sig_name,
                    p_signal=rec.p_signal[:int(seconds * rec.fs)], fmt=["16"] * 2,
                    adc_gain=rec.adc_gain, baseline=rec.baseline, write_dir=str(tmp_path))
        out = tmp_path / f"out-{name}"
        # the good noise record first: the short one is refused before anything is written
        r = CliRunner().invoke(main, ["data", "nst", "--record", str(c), "--noise", str(ma),
                                      "--noise", str(tmp_path / name), "--snr", "12", "--out",
                                      str(out)])
        line = r.output.strip().splitlines()[-1]
        assert r.exit_code == 1 and "Traceback" not in r.output, r.output
        assert name in line and f"{seconds:.1f} s of noise" in line and "120 s" in line, line
        assert not out.exists() or not list(out.iterdir())
