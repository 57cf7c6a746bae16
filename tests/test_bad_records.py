"""Malformed records and event files get one-line errors naming the file and the field
(issue 13: each of these printed a traceback or a message that named nothing)."""

import json
import shutil

import numpy as np
import pytest

from vitaledge.device.eval.score_events import EventsError, load_events, score_events
from vitaledge.device.io.records import RecordError, read_record


@pytest.fixture
def rec(tmp_path, synth_dir):
    """A copy of one synthetic record (s000: .hea/.dat/.atr) in tmp_path."""
    for ext in (".hea", ".dat", ".atr"):
        shutil.copy(synth_dir / f"s000{ext}", tmp_path / f"s000{ext}")
    return tmp_path / "s000"


def header(rec) -> list[str]:
    return rec.with_suffix(".hea").read_text().splitlines()


def write_header(rec, lines):
    rec.with_suffix(".hea").write_text("\n".join(lines) + "\n")


def gain(line: str, field: str) -> str:
    """A header signal line with its gain field (the third) replaced."""
    f = line.split()
    return " ".join(f[:2] + [field] + f[3:])


def test_the_copy_reads(rec, synth_dir):
    r, src = read_record(rec), read_record(synth_dir / "s000")
    assert r.fs == src.fs and len(r.signal) == len(src.signal) > 0
    assert np.array_equal(r.ann_samples, src.ann_samples) and len(r.ann_samples) > 100


def test_truncated_dat_says_how_many_samples_it_holds(rec):
    dat = rec.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:3000])
    with pytest.raises(RecordError, match=r"s000\.dat: holds 1000 samples per signal; the "
                                          r"header declares \d+"):
        read_record(rec)


def test_a_folder_in_place_of_the_dat_is_named(rec):
    """A directory called s000.dat was measured as a truncated file of 1365 samples."""
    dat = rec.with_suffix(".dat")
    dat.unlink()
    dat.mkdir()
    with pytest.raises(RecordError, match=r"s000\.dat: a directory \(or not a regular file\), "
                                          r"not a signal file"):
        read_record(rec)


@pytest.mark.parametrize("edit, message", [
    (lambda h: [], r"s000\.hea: empty header"),
    (lambda h: [h[0].replace(" 2 ", " 3 ", 1)] + h[1:], r"declares 3 signals but has 2"),
    (lambda h: [h[0]] + [ln.replace(" 212 ", " 999 ").replace(" 16 ", " 999 ") for ln in h[1:]],
     r"signal format '999' is not a WFDB format"),
    (lambda h: [h[0].replace(" 360 ", " 360000000 ", 1)] + h[1:],
     r"sample rate 3\.6e\+08 Hz is outside 10-10000 Hz"),
    (lambda h: [h[0].replace(" 360 ", " fast ", 1)] + h[1:], r"sample rate 'fast' is not"),
    # a negative count replayed the whole record, exit 0; 0 read nothing, exit 0, no word
    (lambda h: [" ".join(h[0].split()[:3] + ["-5"])] + h[1:],
     r"sample count '-5' is not a whole number"),
    (lambda h: [" ".join(h[0].split()[:3] + ["0"])] + h[1:], r"s000: no samples"),
    # an infinite or huge gain read as all zeros (lead off), exit 0; a tiny one as inf; a
    # field that is not one gave a lead named "(1024)/mV 16 ..." in units "nan"
    (lambda h: [h[0]] + [gain(ln, "1e400(0)/mV") for ln in h[1:]],
     r"s000\.hea: signal 0's ADC gain inf is not a recording's \(expected 1e-12 to 1e\+15"),
    (lambda h: [h[0]] + [gain(ln, "1e300/mV") for ln in h[1:]], r"signal 0's ADC gain 1e\+300"),
    (lambda h: [h[0]] + [gain(ln, "1e16/mV") for ln in h[1:]], r"signal 0's ADC gain 1e\+16"),
    (lambda h: [h[0]] + [gain(ln, "1e-320/mV") for ln in h[1:]],
     r"signal 0's ADC gain \S+e-32\d is not a recording's"),
    (lambda h: [h[0], h[1], gain(h[2], "nan(1024)/mV")], r"signal 1's ADC gain nan"),
    (lambda h: [h[0]] + [gain(ln, "two") for ln in h[1:]], r"ADC gain 'two' is not a number"),
    # a warning that lead MLII was not found in "leads []", then "no signal channel 0"
    (lambda h: [h[0].replace(" 2 ", " 0 ", 1)], r"^\S*s000\.hea: declares no signal \(0 "
                                               r"channels\)$"),
])
def test_malformed_headers_are_named(rec, edit, message):
    write_header(rec, edit(header(rec)))
    with pytest.raises(RecordError, match=message):
        read_record(rec)


def test_garbage_and_truncated_annotations_are_named(rec):
    atr = rec.with_suffix(".atr")
    good = atr.read_bytes()
    atr.write_bytes(good[:len(good) // 2 + 1])  # odd length: not whole annotation words
    with pytest.raises(RecordError, match=r"s000\.atr: truncated or not a WFDB annotation"):
        read_record(rec)
    rng = np.random.default_rng(0)
    atr.write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    with pytest.raises(RecordError, match=r"s000\.atr: (annotation \d+|truncated or not|"
                                          r"annotation file ends without)"):
        read_record(rec)


def test_an_unknown_lead_is_refused_not_replaced(rec):
    with pytest.raises(RecordError, match=r"no lead 'V9' \(leads: "):
        read_record(rec, lead="V9")


def test_empty_annotations_cannot_be_scored(rec, tmp_path):
    rec.with_suffix(".atr").write_bytes(b"\x00\x00")  # the end-of-file marker alone
    events = tmp_path / "ev.jsonl"
    events.write_text('{"seq": 1, "type": "beat", "sample": 100, "class": "N"}\n')
    with pytest.raises(EventsError, match="no reference beat annotations"):
        score_events(load_events(events), rec)


def test_event_files_that_are_not_events(tmp_path):
    import sqlite3

    db = tmp_path / "x.sqlite"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE t (a)")
    with pytest.raises(EventsError, match=r"x\.sqlite: not a vitaledge SQLite events"):
        load_events(db)
    garbage = tmp_path / "g.jsonl"
    garbage.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(EventsError, match=r"g\.jsonl: not a JSON Lines events file"):
        load_events(garbage)


def test_an_emotion_models_events_are_not_scored_as_no_beats(tmp_path):
    """device score printed a 0-of-N beat report, exit 0, for an emotion model's events;
    a beat run that emitted no beat (all unreadable) still scores, as Se 0."""
    import json

    ev = tmp_path / "emo.jsonl"
    ev.write_text("".join(json.dumps({"seq": i + 1, "type": "emotion", "class": "happy"}) + "\n"
                          for i in range(3)))
    with pytest.raises(EventsError, match=r"emo\.jsonl: no beat events but 3 emotion events"):
        load_events(ev)
    quiet = tmp_path / "quiet.jsonl"
    quiet.write_text(json.dumps({"seq": 1, "type": "status", "status": "unreadable"}) + "\n")
    assert load_events(quiet) == []
    # events of no type the daemon writes scored as "0 events, Se 0.00 %", exit 0
    odd = tmp_path / "odd.jsonl"
    odd.write_text("".join(json.dumps({"seq": i + 1, "type": "bleat", "sample": 9}) + "\n"
                           for i in range(3)))
    with pytest.raises(EventsError, match=r"odd\.jsonl: no beat or status events \(types: "
                                          r"bleat\): not a daemon events file"):
        load_events(odd)


def test_a_sample_that_is_not_an_integer_is_refused(rec, tmp_path):
    """JSON true is a Python int: a beat at "sample": true was scored at sample 1."""
    from vitaledge.device.eval.score_events import check_beat_events

    for sample in (True, 1.5, "7", None):
        with pytest.raises(EventsError, match="needs an integer 'sample'"):
            check_beat_events([{"seq": 1, "type": "beat", "sample": sample, "class": "N"}])
    check_beat_events([{"seq": 1, "type": "beat", "sample": 7, "class": "N"}])


def test_a_file_of_runs_that_found_no_beat_is_read_as_its_last_run(rec, tmp_path):
    """Two appended runs that found no beat (all unreadable): device score and review read
    the last one, as they read the last run that has beats. Taking every run's status
    events, device score said "200.0% of the record flagged"."""
    import json

    from vitaledge.device.eval.score_events import quality_segments, read_run, score_gated

    n = len(read_record(rec).signal)
    ev = tmp_path / "lo.jsonl"
    ev.write_text("".join(json.dumps({"seq": i + 1, "type": "status", "run": run,
                                      "status": "unreadable", "start": 0.0, "end": n / 360,
                                      "start_sample": 0, "end_sample": n}) + "\n"
                          for i, run in enumerate(("r1", "r2"))))
    beats, status, run = read_run(ev)
    assert (beats, run, [e["run"] for e in status]) == ([], "r2", ["r2"])
    segs = quality_segments(ev)
    assert [e["seq"] for e in segs] == [2]
    assert score_gated([], segs, rec)["flagged_fraction"] == 1.0


def test_the_sqlite_sink_is_scored_like_jsonl(tmp_path):
    from vitaledge.device.stream.sinks import SqliteSink

    events = [{"seq": i + 1, "type": "beat", "time": i * 0.8, "sample": 288 * i, "class": "N"}
              for i in range(5)] + [{"seq": 6, "type": "status", "status": "ready"}]
    sink = SqliteSink(tmp_path / "ev.sqlite")
    sink.write(events)
    sink.close()
    jl = tmp_path / "ev.jsonl"
    jl.write_text("".join(__import__("json").dumps(e) + "\n" for e in events))
    assert load_events(tmp_path / "ev.sqlite") == load_events(jl) == events[:5]


def test_a_run_across_rotated_jsonl_files_is_scored_whole(rec, tmp_path):
    """A JSON Lines sink rotates at its size limit (PATH.1 newest, then PATH.2, ...), so a
    long run spans several files. device score and device review read them all, oldest
    first; they read only the live file, and scored this run's last third (Se 0.33)."""
    import json

    from click.testing import CliRunner

    from vitaledge.cli import main
    from vitaledge.device.eval.score_events import read_run
    from vitaledge.device.io.aami import CLASSES, map_annotations
    from vitaledge.device.io.event_files import rotated
    from vitaledge.device.stream.sinks import JsonlSink

    r = read_record(rec)
    samples, classes = map_annotations(r.ann_samples, r.ann_symbols)
    events = [{"seq": i + 1, "type": "beat", "run": "r1", "time": int(s) / r.fs,
               "sample": int(s), "class": CLASSES[int(c)]}
              for i, (s, c) in enumerate(zip(samples, classes, strict=True))]
    size = sum(len(json.dumps(e, separators=(",", ":"))) + 1 for e in events)
    live = tmp_path / "ev.jsonl"
    sink = JsonlSink(live, max_bytes=size // 3 + 200)
    for i in range(0, len(events), 10):
        sink.write(events[i:i + 10])
    sink.close()
    assert rotated(live, 2).is_file() and not rotated(live, 3).is_file()
    assert load_events(live) == events
    assert read_run(live)[0] == events
    res = CliRunner().invoke(main, ["device", "score", str(live), "--record", str(rec),
                                    "--json", str(tmp_path / "s.json")])
    assert res.exit_code == 0, res.output
    scored = json.loads((tmp_path / "s.json").read_text())
    assert scored["events"] == len(events) and scored["sensitivity"] == 1.0, scored
    # killed inside a rotation, after .1 -> .2 and before PATH -> .1: a number is missing
    rotated(live, 2).rename(rotated(live, 3))
    rotated(live, 1).rename(rotated(live, 2))
    assert load_events(live) == events and read_run(live)[0] == events
    lines = rotated(live, 3).read_bytes().splitlines()
    rotated(live, 3).write_bytes(b"\n".join(lines[:3] + [b"garbage"] + lines[3:]) + b"\n")
    with pytest.raises(EventsError, match=r"ev\.jsonl\.3: 1 lines are not JSON \(first: "
                                          r"line 4"):
        load_events(live)


def test_annotations_outside_the_signal_are_refused(rec):
    import wfdb

    n = len(read_record(rec).signal)
    wfdb.wrann("s000", "atr", np.array([100, 200, n + 5]), symbol=["N", "N", "N"],
               write_dir=str(rec.parent))
    with pytest.raises(RecordError, match=rf"s000\.atr: annotation 2 at sample {n + 5} is "
                                          rf"outside the record's {n} samples"):
        read_record(rec)


def test_annotations_cut_at_an_even_byte_count_are_refused(rec):
    """A cut at an even byte count leaves whole annotation words that wfdb decodes without
    complaint, only without the end marker (two zero bytes): every such cut is named."""
    atr = rec.with_suffix(".atr")
    good = atr.read_bytes()
    assert good[-2:] == b"\x00\x00"
    for cut in (len(good) // 2 & ~1, len(good) - 2, 2):
        atr.write_bytes(good[:cut])
        with pytest.raises(RecordError, match=r"s000\.atr: annotation file ends without its "
                                              r"end marker: truncated\?"):
            read_record(rec)
    atr.write_bytes(b"")
    with pytest.raises(RecordError, match=r"s000\.atr: empty annotation file"):
        read_record(rec)


def test_annotation_files_wfdb_writes_are_whole(rec):
    """What wfdb.wrann writes (``data synth``, ``data nst``, these tests) passes the end
    check: with long gaps (SKIP words), aux notes of odd and even length, channel, number
    and subtype fields, and the sample rate."""
    import wfdb

    n = len(read_record(rec).signal)
    samples = np.array([5, 6, 1500, 1600, 1700, 40_000, 40_001, n - 1])
    wfdb.wrann("s000", "atr", samples, symbol=["+", "N", "N", "V", "N", "~", "N", "N"],
               aux_note=["(N", "", "odd", "even", "", "(VT", "", "x" * 255],
               chan=np.array([0, 0, 1, 0, 0, 1, 0, 0]), num=np.array([0, 1, 0, 2, 0, 0, 0, 3]),
               subtype=np.array([0, 0, 0, 1, 0, 2, 0, 0]), fs=360, write_dir=str(rec.parent))
    got = read_record(rec)
    np.testing.assert_array_equal(got.ann_samples, samples)
    good = rec.with_suffix(".atr").read_bytes()
    for cut in range(0, len(good) - 1, 2):  # and no cut of it passes
        rec.with_suffix(".atr").write_bytes(good[:cut])
        with pytest.raises(RecordError, match=r"s000\.atr: "):
            read_record(rec)


@pytest.mark.parametrize("atr", [b"", b"\x00\x00", "half"])
def test_bench_detector_refuses_a_record_without_beats(rec, atr):
    """An empty, end-marker-only or truncated .atr: one line naming it, exit 1 (it was
    "0 beats" or +P 49.89 %, exit 0)."""
    from click.testing import CliRunner

    from vitaledge.cli import main

    path = rec.with_suffix(".atr")
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2 & ~1] if atr == "half"
                     else atr)
    r = CliRunner().invoke(main, ["bench", "detector", "--data", str(rec.parent),
                                  "--records", "s000", "--no-xqrs"])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert r.output.startswith(f"Error: {path}: ") and len(r.output.splitlines()) == 1


def test_a_record_without_beat_annotations_gives_no_beats_in_words(rec):
    """Rhythm marks only (no beat symbol): cutting its beats says so, naming the record;
    train beat said "need at least one array to concatenate"."""
    import wfdb

    from vitaledge.device.dsp.windows import WindowSpec
    from vitaledge.device.io.beats import beats_from_record

    wfdb.wrann("s000", "atr", np.array([100, 5000]), symbol=["+", "+"],
               aux_note=["(N", "(AFIB"], write_dir=str(rec.parent))
    with pytest.raises(RecordError, match=r"^s000: its \.atr holds no beat annotations"):
        beats_from_record(read_record(rec), WindowSpec.centered())


def test_a_folder_with_one_record_without_beats_reads_the_others(rec, synth_dir, caplog):
    """Beside a record of rhythm marks only, the folder's other records are read (it is left
    out with a warning, as a record without .atr); named, it is refused."""
    import shutil

    import wfdb

    from vitaledge.device.dsp.windows import WindowSpec
    from vitaledge.device.io.beats import beats_from_dir

    for ext in (".hea", ".dat", ".atr"):
        shutil.copy(synth_dir / f"s001{ext}", rec.parent / f"s001{ext}")
    wfdb.wrann("s000", "atr", np.array([100, 5000]), symbol=["+", "+"],
               aux_note=["(N", "(AFIB"], write_dir=str(rec.parent))
    b = beats_from_dir(rec.parent, WindowSpec.centered())
    assert set(b.record) == {"s001"} and len(b.y) > 100
    assert "without beat annotations left out: s000" in caplog.text
    with pytest.raises(RecordError, match=r"^s000: its \.atr holds no beat annotations"):
        beats_from_dir(rec.parent, WindowSpec.centered(), ["s000", "s001"])


def test_bench_detector_names_a_record_it_cannot_run_on(tmp_path):
    """A 10-Hz record (data synth makes one) was "filter high edge 15.0 Hz is not below
    Nyquist", a 100-sample one XQRS's "must be greater than padlen", neither naming the
    record, the second after the others were scored."""
    import wfdb
    from click.testing import CliRunner

    from vitaledge.cli import main

    for name, fs, n in (("slow", 10, 3000), ("tiny", 360, 100)):
        d = tmp_path / name
        d.mkdir()
        x = np.sin(np.arange(n) / fs * 2 * np.pi)[:, None]
        wfdb.wrsamp(name, fs=fs, units=["mV"], sig_name=["MLII"], p_signal=x, fmt=["16"],
                    adc_gain=[200.0], baseline=[0], write_dir=str(d))
        wfdb.wrann(name, "atr", np.array([n // 2]), symbol=["N"], write_dir=str(d))
        r = CliRunner().invoke(main, ["bench", "detector", "--data", str(d)])
        assert r.exit_code == 1 and len(r.output.splitlines()) == 1, r.output
        assert r.output.startswith(f"Error: {d / name}: "), r.output
    assert "10 Hz; the detector takes 50 to 10000 Hz" in CliRunner().invoke(
        main, ["bench", "detector", "--data", str(tmp_path / "slow")]).output


def test_scoring_and_the_crash_campaign_read_a_sink_file_alike(tmp_path):
    """One reader of a JSON Lines sink (device/io/event_files.py): the crash campaign
    counts a torn last line as corruption, scoring skips it; both get the same events,
    blank lines left out. Garbage inside the file is corruption to one, an error to the
    other."""
    from vitaledge.device.bench.reliability.events import read_jsonl_events
    from vitaledge.device.eval.score_events import read_rows

    p = tmp_path / "ev.jsonl"
    rows = [{"seq": k, "type": "beat", "sample": 100 * k, "class": "N"} for k in (1, 2, 3)]
    lines = [json.dumps(r) for r in rows]
    p.write_text(lines[0] + "\n\n" + "\n".join(lines[1:]) + '\n{"seq": 4, "ty')
    events, bad = read_jsonl_events(p)
    assert read_rows(p) == events == rows and len(bad) == 1 and "seq\": 4" in bad[0]
    p.write_text(json.dumps(rows[0]) + "\ngarbage\n" + json.dumps(rows[1]) + "\n")
    events, bad = read_jsonl_events(p)
    assert events == rows[:2] and bad == ["ev.jsonl: b'garbage'"]
    with pytest.raises(EventsError, match=r"ev\.jsonl: 1 lines are not JSON \(first: line 2"):
        read_rows(p)


@pytest.mark.parametrize("folder", ["x#1", "x?y", "p%41q"])
def test_a_sqlite_sink_file_is_read_whatever_its_path_holds(tmp_path, folder, monkeypatch):
    """The database was opened as the URI file:PATH?mode=ro unescaped: under a folder
    named x#1 it read nothing and made an empty file x; x?y lost mode=ro."""
    from vitaledge.device.bench.reliability.events import read_sqlite_events
    from vitaledge.device.eval.score_events import read_rows
    from vitaledge.device.stream.sinks import SqliteSink

    monkeypatch.chdir(tmp_path)
    db = tmp_path / folder / "e.db"
    rows = [{"seq": k, "type": "beat", "sample": 10 * k, "class": "N"} for k in (1, 2)]
    sink = SqliteSink(db)
    sink.write(rows)
    sink.close()
    assert read_rows(db) == rows and read_sqlite_events(db) == (rows, "ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder]
