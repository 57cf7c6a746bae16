"""Noise-stress records (vitaledge data nst): the SNR asked for is the SNR delivered, the
output is an ordinary WFDB record, and a seed reproduces it."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import error_line, unavailable

from vitaledge.device.io.nst import (
    NST_SNRS,
    add_noise,
    make_nst,
    noisy_segments,
    nst_files,
    snr_of,
)


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
        unavailable("nstdb-noise records ma and bw not found")
    return clean, noise


def test_snr_measured_back_agrees_within_half_a_db(nst_sources, tmp_path):
    """Measured back with nst(1)'s definitions, the module's own functions: an error shared
    by the gain and the measure would pass here, and fails the known-answer test below
    (sines and triangle pulses of known amplitude)."""
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


def test_snr_is_nsts_definition_on_a_signal_of_known_sizes(tmp_path):
    """A known answer, measured without the module's estimators: QRS-like pulses 1.5 mV
    peak to peak, and a 10-Hz sinusoid as the noise. nst(1) sizes noise by its RMS times
    sqrt(8), which for a sinusoid is its peak-to-peak: at SNR s the sinusoid added must be
    1.5 mV x 10^(-s/20) peak to peak (0 dB: as large as the QRS)."""
    import wfdb

    fs, n = 360, int(5.5 * 60 * 360)
    beats = np.arange(180, n - 180, 288)  # 75 bpm
    clean = np.zeros(n)
    tri = np.concatenate([np.linspace(0, 1.0, 10), np.linspace(1.0, -0.5, 15),
                          np.linspace(-0.5, 0, 10)])
    for b in beats:
        clean[b - 10:b + 25] = tri
    wfdb.wrsamp("pulses", fs=fs, units=["mV"], sig_name=["MLII"], p_signal=clean[:, None],
                fmt=["16"], adc_gain=[2000.0], baseline=[0], write_dir=str(tmp_path))
    wfdb.wrann("pulses", "atr", beats, symbol=["N"] * len(beats), write_dir=str(tmp_path))
    t = np.arange(130 * fs) / fs
    wfdb.wrsamp("sine", fs=fs, units=["mV"], sig_name=["n0"],
                p_signal=np.sin(2 * np.pi * 10 * t)[:, None], fmt=["16"], adc_gain=[2000.0],
                baseline=[0], write_dir=str(tmp_path))
    for snr in (12, 6, 0):
        r = make_nst(tmp_path / "pulses", tmp_path / "sine", snr, tmp_path / "out", seed=1)
        out = wfdb.rdrecord(str(tmp_path / "out" / r.record)).p_signal[:, 0]
        (a, b), = r.segments
        added = out[a + fs:b - fs] - clean[a + fs:b - fs]
        got_db = 20 * np.log10(1.5 / np.ptp(added))
        assert abs(got_db - snr) < 0.1, (snr, got_db)
        assert np.array_equal(out[:a], np.round(clean[:a] * 2000) / 2000)  # clean before


def reproducible_and_readable(clean: Path, noise: Path, tmp_path: Path) -> None:
    """``make_nst`` at 6 dB: the same seed writes the same bytes, another seed another
    offset; read_record, read_signals and wfdb read it; the reference labels are copied and
    the learning period is the clean record's."""
    import wfdb

    from vitaledge.device.io.records import read_record
    from vitaledge.device.io.wfdb_signals import read_signals

    a = make_nst(clean, noise, 6, tmp_path / "a", seed=7)
    b = make_nst(clean, noise, 6, tmp_path / "b", seed=7)
    other = make_nst(clean, noise, 6, tmp_path / "c", seed=8)
    name = f"{clean.name}_{noise.name}6"
    assert a.record == name and a.offset_s == b.offset_s != other.offset_s
    for fa in nst_files(tmp_path / "a", a.record):  # header, signal, labels and sidecar
        assert fa.read_bytes() == (tmp_path / "b" / fa.name).read_bytes(), fa.name
    rec = read_record(tmp_path / "a" / name)
    ref = read_record(clean)
    assert rec.fs == ref.fs and len(rec.signal) == len(ref.signal)
    np.testing.assert_array_equal(rec.ann_samples, ref.ann_samples)
    assert rec.ann_symbols == ref.ann_symbols
    learn = int(300 * rec.fs)
    np.testing.assert_allclose(rec.signal[:learn], ref.signal[:learn], atol=0.006)
    assert np.std(rec.signal[learn:] - ref.signal[learn:]) > 0.01  # the noise is there
    light = read_signals(tmp_path / "a" / name)
    np.testing.assert_allclose(light.physical, wfdb.rdrecord(str(tmp_path / "a" / name)).p_signal)
    meta = json.loads((tmp_path / "a" / f"{name}.nst.json").read_text())
    assert meta["snr_db"] == 6 and meta["segments"][0][0] == learn


def test_output_is_a_record_every_loader_reads_and_a_seed_reproduces_it(nst_sources, tmp_path):
    (c, _), (ma, _) = nst_sources
    reproducible_and_readable(c, ma, tmp_path)


def test_synthetic_output_is_read_by_every_loader_and_a_seed_reproduces_it(synth_nst, tmp_path):
    """The same on synthetic records: it holds without the real recordings."""
    clean, nz = synth_nst
    reproducible_and_readable(clean, nz, tmp_path)


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
    assert r.exit_code == 1 and "nope.hea: no such WFDB header" in error_line(r)


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
        line = error_line(r)
        assert r.exit_code == 1, r.output
        assert name in line and f"{seconds:.1f} s of noise" in line and "120 s" in line, line
        assert not out.exists() or not list(out.iterdir())


@pytest.fixture(scope="module")
def synth_nst(tmp_path_factory):
    """A 5.5-minute synthetic clean record (one noisy period after the learning period)
    and a 130-s synthetic noise record ``nz``: no real data needed."""
    import wfdb

    from vitaledge.firmware_sim.patients.ecg import synth_database

    d = tmp_path_factory.mktemp("synth_nst")
    [clean] = synth_database(d, n_records=1, minutes=5.5, seed=3)
    noise = np.random.default_rng(0).normal(0, 0.1, (130 * 360, 2))
    wfdb.wrsamp("nz", fs=360, units=["mV"] * 2, sig_name=["n0", "n1"], p_signal=noise,
                fmt=["16"] * 2, adc_gain=[200.0] * 2, baseline=[0] * 2, write_dir=str(d))
    return clean, d / "nz"


def nst_cli(*args):
    from click.testing import CliRunner

    from vitaledge.cli import main

    return CliRunner().invoke(main, ["data", "nst", *map(str, args)])


@pytest.mark.parametrize("command", ["data nst", "bench noise-stress", "device review"])
def test_a_clean_record_with_a_nan_is_named_by_each_command(synth_nst, tmp_path, command):
    """A missing sample (NaN) in the clean record: one line naming the record and the
    sample, before anything is written."""
    import wfdb

    from vitaledge.cli import main

    clean, nz = synth_nst
    rec = wfdb.rdrecord(str(clean))
    x = rec.p_signal.copy()
    x[5000, 0] = np.nan
    wfdb.wrsamp("gap", fs=rec.fs, units=rec.units, sig_name=rec.sig_name, p_signal=x,
                fmt=["16"] * x.shape[1], adc_gain=rec.adc_gain, baseline=rec.baseline,
                write_dir=str(tmp_path))
    ann = wfdb.rdann(str(clean), "atr")
    wfdb.wrann("gap", "atr", ann.sample, symbol=ann.symbol, write_dir=str(tmp_path))
    events = tmp_path / "ev.jsonl"
    events.write_text(json.dumps({"type": "beat", "sample": 500, "time": 1.39, "class": "N",
                                  "seq": 1}) + "\n")
    out = tmp_path / "out"
    args = {"data nst": ["--record", tmp_path / "gap", "--noise", nz, "--snr", "6", "--out", out],
            "bench noise-stress": ["--record", tmp_path / "gap", "--noise", nz, "--snr", "6",
                                   "--no-xqrs", "--out", out],
            "device review": [events, "--record", tmp_path / "gap", "--out", out / "r.html"]}
    r = CliRunner().invoke(main, [*command.split(), *map(str, args[command])])
    line = error_line(r)
    assert line.startswith(f"Error: {tmp_path / 'gap'}: ") and "non-finite" in line, line
    assert "sample 5000" in line, line
    assert not out.exists() or not list(out.iterdir())


def test_a_fractional_snr_names_its_record_with_a_p(synth_nst, tmp_path):
    """wfdb refuses a '.' in a record name (6.5 dB was a traceback); integer SNRs keep
    their names, and the noise-stress bench replays the record it names."""
    from vitaledge.device.bench.noise_stress import plan_jobs
    from vitaledge.device.io.nst import NstLabel, nst_label, nst_name
    from vitaledge.device.io.records import read_record

    clean, nz = synth_nst
    r = nst_cli("--record", clean, "--noise", nz, "--snr", "6.5,-0.5,6,-6", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    for name, snr in (("s000_nz6p5", "6.5"), ("s000_nz-0p5", "-0.5"), ("s000_nz6", "6"),
                      ("s000_nz-6", "-6")):
        assert f"{name}: s000 + nz at {snr} dB" in r.output
        assert len(read_record(tmp_path / name).ann_samples) > 100
        assert nst_label(tmp_path / name) == NstLabel("s000", "nz", snr)
        assert nst_name("s000", "nz", float(snr)) == name
        sidecar = tmp_path / f"{name}.nst.json"  # as written before it named the clean one
        meta = json.loads(sidecar.read_text())
        del meta["clean_record"]
        sidecar.write_text(json.dumps(meta))
        assert nst_label(tmp_path / name) == NstLabel("s000", "nz", snr)
    names = [j.name for j in plan_jobs([clean], [nz], (6.5, -0.5, 6.0), []) if j.make]
    assert names == ["s000_nz6p5", "s000_nz-0p5", "s000_nz6"]


def test_an_output_directory_that_cannot_be_made_is_one_line(synth_nst, tmp_path):
    from click.testing import CliRunner

    from vitaledge.cli import main

    clean, nz = synth_nst
    afile = tmp_path / "afile"
    afile.write_text("x")
    r = nst_cli("--record", clean, "--noise", nz, "--snr", "6", "--out", afile / "sub")
    assert r.exit_code == 1, r.output
    assert r.output == f"Error: cannot create output directory {afile / 'sub'}: Not a directory\n"
    assert isinstance(r.exception, SystemExit), repr(r.exception)
    r = CliRunner().invoke(main, ["data", "synth", "--out", str(afile / "sub"), "--minutes",
                                  "0.25", "--n-records", "1"])
    assert r.exit_code == 1 and "cannot create output directory" in r.output, r.output


def test_existing_records_are_not_replaced_without_overwrite(synth_nst, tmp_path):
    clean, nz = synth_nst
    assert nst_cli("--record", clean, "--noise", nz, "--snr", "6", "--out", tmp_path,
                   "--seed", "1").exit_code == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(before) == ["s000_nz6.atr", "s000_nz6.dat", "s000_nz6.hea",
                              "s000_nz6.nst.json"]
    r = nst_cli("--record", clean, "--noise", nz, "--snr", "12,6", "--out", tmp_path,
                "--seed", "1000")
    assert r.exit_code == 1, r.output
    line = error_line(r)
    assert f"{tmp_path / 's000_nz6'}." in line and "already exists" in line
    assert "--overwrite" in line
    # nothing was written, not even the record that did not exist yet
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    r = nst_cli("--record", clean, "--noise", nz, "--snr", "6", "--out", tmp_path,
                "--seed", "1000", "--overwrite")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s000_nz6.dat").read_bytes() != before["s000_nz6.dat"]


def test_a_truncated_clean_annotation_file_is_refused(synth_nst, tmp_path):
    import shutil

    clean, nz = synth_nst
    for ext in (".hea", ".dat", ".atr"):
        shutil.copy(clean.with_suffix(ext), tmp_path / f"s000{ext}")
    atr = tmp_path / "s000.atr"
    atr.write_bytes(atr.read_bytes()[:len(atr.read_bytes()) // 2 & ~1])
    r = nst_cli("--record", tmp_path / "s000", "--noise", nz, "--snr", "6", "--out",
                tmp_path / "out")
    assert r.exit_code == 1, r.output
    assert r.output == (f"Error: {atr}: annotation file ends without its end marker: "
                        "truncated?\n")
    assert isinstance(r.exception, SystemExit), repr(r.exception)


def test_an_snr_given_twice_is_refused_before_any_record_is_written(synth_nst, tmp_path):
    """--snr 12,12 (or 6.0,6) wrote the same record twice without a word."""
    clean, nz = synth_nst
    # 12.000000001 and 12 name one record (100_ma12): the second overwrote the first
    for snrs in ("12,12", "6.0,6,0", "12.000000001,12", "0,-0"):
        r = nst_cli("--record", clean, "--noise", nz, "--snr", snrs, "--out", tmp_path / "o")
        assert r.exit_code == 2 and "given twice" in r.output, r.output
    assert not (tmp_path / "o").exists()
    r = nst_cli("--record", clean, "--noise", nz, "--snr", "-0", "--out", tmp_path / "z")
    assert r.exit_code == 0 and (tmp_path / "z" / "s000_nz0.hea").exists(), r.output


def test_every_clean_record_is_checked_before_any_record_is_written(synth_nst, tmp_path):
    """A second --record that cannot be used (no samples file; no normal beat, as in a
    paced record) was refused after the first one's records were written, and the rerun
    was then refused for them; the message now names the record, and nothing is written."""
    import shutil

    import wfdb

    clean, nz = synth_nst
    nodat = tmp_path / "nodat"
    nodat.mkdir()
    for ext in (".hea", ".atr"):
        shutil.copy(clean.with_suffix(ext), nodat / f"s000{ext}")
    # two clean records of one name would write the same records: refused too
    r = nst_cli("--record", clean, "--record", nodat / "s000", "--noise", nz, "--snr", "6",
                "--out", tmp_path / "twice")
    assert r.exit_code == 1 and "two clean records are named 's000'" in r.output, r.output
    assert not (tmp_path / "twice").exists()
    (nodat / "s000.hea").rename(nodat / "n000.hea")
    (nodat / "s000.atr").rename(nodat / "n000.atr")
    paced = tmp_path / "paced"
    paced.mkdir()
    rec = wfdb.rdrecord(str(clean))
    ann = wfdb.rdann(str(clean), "atr")
    wfdb.wrsamp("p000", fs=rec.fs, units=rec.units, sig_name=rec.sig_name,
                p_signal=rec.p_signal, fmt=["16"] * rec.n_sig, adc_gain=rec.adc_gain,
                baseline=[0] * rec.n_sig, write_dir=str(paced))
    wfdb.wrann("p000", "atr", ann.sample, symbol=["/"] * len(ann.sample), write_dir=str(paced))
    for bad, said in ((nodat / "n000", "cannot read WFDB record"),
                      (paced / "p000", "no normal beats")):
        out = tmp_path / f"out-{bad.parent.name}"
        r = nst_cli("--record", clean, "--record", bad, "--noise", nz, "--snr", "6,12",
                    "--out", out)
        assert r.exit_code == 1 and str(bad) in r.output and said in r.output, r.output
        assert not out.exists()


def test_noise_at_another_rate_keeps_its_duration_and_frequency(synth_nst, tmp_path):
    """A 250-Hz noise record added to a 360-Hz ECG: the noise was resampled the wrong way
    round (250 -> 173.6 Hz, played at 360), so a 10-Hz noise came out at 20.7 Hz and lasted
    half as long. It must come out at 10 Hz."""
    import wfdb

    clean, _ = synth_nst
    fs = 250
    t = np.arange(130 * fs) / fs
    wfdb.wrsamp("sine250", fs=fs, units=["mV"], sig_name=["n"],
                p_signal=(0.1 * np.sin(2 * np.pi * 10 * t))[:, None], fmt=["16"],
                adc_gain=[10000.0], baseline=[0], write_dir=str(tmp_path))
    r = nst_cli("--record", clean, "--noise", tmp_path / "sine250", "--snr", "6", "--out",
                tmp_path / "out")
    assert r.exit_code == 0, r.output
    c = wfdb.rdrecord(str(clean)).p_signal[:, 0]
    n = wfdb.rdrecord(str(tmp_path / "out" / "s000_sine2506")).p_signal[:, 0]
    a, b = json.loads((tmp_path / "out" / "s000_sine2506.nst.json").read_text())["segments"][0]
    d = (n - c)[a:b] - (n - c)[a:b].mean()
    peak = np.fft.rfftfreq(len(d), 1 / 360)[np.argmax(np.abs(np.fft.rfft(d)))]
    assert abs(peak - 10.0) < 0.1, peak


def _noise_record(d, name, signal, gain=200.0):
    import wfdb

    wfdb.wrsamp(name, fs=360, units=["mV"] * signal.shape[1],
                sig_name=[f"n{i}" for i in range(signal.shape[1])], p_signal=signal,
                fmt=["16"] * signal.shape[1], adc_gain=[gain] * signal.shape[1],
                baseline=[0] * signal.shape[1], write_dir=str(d))
    return d / name


def test_noise_records_that_cannot_give_noise_are_refused_before_any_record(synth_nst,
                                                                           tmp_path):
    """A flat noise record gave an infinite gain and a record of NaN from 5:00, exit 0; a
    noise record with a NaN was refused after the good noise's record was written."""
    clean, nz = synth_nst
    flat = _noise_record(tmp_path, "flat", np.zeros((130 * 360, 2)))
    holed = np.random.default_rng(1).normal(0, 0.1, (130 * 360, 2))
    holed[1000, 1] = np.nan
    nan = _noise_record(tmp_path, "nan", holed)
    for bad, said in ((flat, "channel 0 (n0) holds no noise (its RMS is 0)"),
                      (nan, "1 non-finite samples (the first at sample 1000, channel 1)")):
        out = tmp_path / f"out-{bad.name}"
        r = nst_cli("--record", clean, "--noise", nz, "--noise", bad, "--snr", "6",
                    "--out", out)
        assert r.exit_code == 1 and said in r.output and str(bad) in r.output, r.output
        assert not out.exists()


def test_two_records_of_one_name_are_refused_before_any_is_written(synth_nst, tmp_path):
    """118 + ma at 12 dB and 118 + ma1 at 2 dB are both 118_ma12: the second replaced the
    first, and the run printed four records with three on disk."""
    import shutil

    clean, nz = synth_nst
    for ext in (".hea", ".dat"):
        shutil.copy(nz.with_suffix(ext), tmp_path / f"nz1{ext}")
    (tmp_path / "nz1.hea").write_text((tmp_path / "nz1.hea").read_text().replace("nz", "nz1"))
    r = nst_cli("--record", clean, "--noise", nz, "--noise", tmp_path / "nz1", "--snr", "12,2",
                "--out", tmp_path / "o")
    assert r.exit_code == 1 and "would be named 's000_nz12'" in r.output, r.output
    assert not (tmp_path / "o").exists()


def test_a_level_the_record_cannot_hold_is_refused_and_a_coarse_lead_is_named(synth_nst,
                                                                              tmp_path):
    """-17 dB clipped 27,264 samples of 119 and delivered -15.8 dB, 60 dB left a lead with no
    noise at all, both without a word; what the record would hold is measured on the
    clipped, rounded samples. A lead whose noise alone is finer than its resolution (101's
    V1 at 24 dB) is kept, and its level said."""
    import json

    import wfdb

    from vitaledge.device.io.nst import build_nst

    clean, nz = synth_nst
    rec, ann = wfdb.rdrecord(str(clean)), wfdb.rdann(str(clean), "atr")

    def copy(name, scale, gain):
        d = tmp_path / name
        d.mkdir()
        wfdb.wrsamp(name, fs=rec.fs, units=rec.units, sig_name=rec.sig_name,
                    p_signal=rec.p_signal * scale, fmt=["16"] * 2, adc_gain=[gain] * 2,
                    baseline=[0] * 2, write_dir=str(d))
        wfdb.wrann(name, "atr", ann.sample, symbol=ann.symbol, write_dir=str(d))
        return d / name

    fine = copy("g000", [1.0, 1.0], 4000.0)  # format 16 holds +/- 8.2 mV at this gain
    r = nst_cli("--record", fine, "--noise", nz, "--snr", "6,-20", "--out", tmp_path / "lo")
    assert r.exit_code == 1 and "g000 + nz at -20 dB: channel 0" in r.output, r.output
    assert "samples clip at format 16's range" in r.output
    assert not (tmp_path / "lo").exists()
    r = nst_cli("--record", clean, "--noise", nz, "--snr", "60", "--out", tmp_path / "hi")
    assert r.exit_code == 1 and "would hold no noise" in r.output, r.output
    assert "finer than the record's resolution" in r.output and not (tmp_path / "hi").exists()
    # the clean record's second lead fifty times smaller (QRS about 0.02 mV, 4 ADC steps):
    # at 24 dB its noise is under the step; the first lead's is not
    small = copy("t000", [1.0, 0.02], 200.0)
    held = build_nst(small, nz, 24.0).result.snr_held_db
    assert abs(held[0] - 24.0) <= 0.5 and (held[1] is None or abs(held[1] - 24.0) > 0.5)
    r = nst_cli("--record", small, "--noise", nz, "--snr", "24", "--out",
                tmp_path / "q")
    assert r.exit_code == 0, r.output
    assert "channel 1 holds" in r.output and "finer than its resolution" in r.output
    side = json.loads((tmp_path / "q" / "t000_nz24.nst.json").read_text())
    assert side["snr_held_db"] == held
