"""Issue 15: ``vitaledge bench noise-stress`` on a short record — the report's shape,
numbers that make sense (24 dB detection as good as the clean record's; 0 dB flagged), and
the review pages it names for its rows with the most errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import chromium, error_line, mitdb_records, review_data, run_chromium, unavailable

FS = 360.0


@pytest.fixture(scope="module")
def short118(mitdb_dir, tmp_path_factory):
    """The first 9 minutes of MIT-BIH 118 as a record of its own (5 min learning, then one
    2-min noisy and one 2-min clean stretch of the NST protocol)."""
    import wfdb

    path = mitdb_records(mitdb_dir, ["118"])[0]
    n = int(9 * 60 * FS)
    rec = wfdb.rdrecord(str(path), sampto=n)
    ann = wfdb.rdann(str(path), "atr", sampto=n)
    d = tmp_path_factory.mktemp("short")
    wfdb.wrsamp("s118", fs=rec.fs, units=rec.units, sig_name=rec.sig_name,
                p_signal=rec.p_signal, fmt=["16"] * rec.n_sig, adc_gain=rec.adc_gain,
                baseline=[0] * rec.n_sig, write_dir=str(d))
    wfdb.wrann("s118", "atr", ann.sample, symbol=ann.symbol, write_dir=str(d))
    return d / "s118"


@pytest.fixture(scope="module")
def report(short118, data_dir, tmp_path_factory):
    from vitaledge.device.bench.noise_stress import bench_noise_stress

    ma = data_dir / "nstdb-noise" / "ma"
    if not ma.with_suffix(".hea").exists():
        unavailable(f"{ma}: NST noise record not found")
    work = tmp_path_factory.mktemp("nstwork")
    return bench_noise_stress([short118], [ma], (24.0, 0.0), work, model=None,
                              with_xqrs=True, review_dir=work / "report"), work


def test_report_shape(report):
    res, work = report
    assert [(r["noise"], r["snr"]) for r in res["rows"]] == [("clean", "clean"), ("ma", "24"),
                                                              ("ma", "0")]
    assert (work / "s118_ma24.hea").exists() and (work / "s118_ma0.nst.json").exists()
    for r in res["rows"]:
        assert r["scored_from_s"] == 300.0
        for key in ("ungated", "gated", "outside_flagged", "xqrs", "xqrs_outside_flagged"):
            s = r[key]
            assert set(s) == {"tp", "fn", "fp", "se", "ppv"}
            assert s["tp"] + s["fn"] <= r["beats"]
        assert r["ungated"]["tp"] + r["ungated"]["fn"] == r["beats"]
        assert 0.0 <= r["flagged_noisy"] <= 1.0 and 0.0 <= r["flagged_clean"] <= 1.0
    assert set(res["by_snr"]) == {"clean", "24", "0"}
    assert set(res["by_noise_snr"]) == {"ma 24", "ma 0"}
    assert res["by_snr"]["0"]["ungated"] == res["rows"][2]["ungated"]
    json.dumps(res)  # serialisable as it stands


def test_report_numbers(report):
    res, _ = report
    clean, r24, r0 = res["rows"]
    # at 24 dB detection equals the clean record's within a point, and nothing is flagged
    assert abs(r24["ungated"]["se"] - clean["ungated"]["se"]) < 0.01
    assert abs(r24["ungated"]["ppv"] - clean["ungated"]["ppv"]) < 0.01
    assert clean["flagged_clean"] < 0.01 and r24["flagged_noisy"] < 0.05
    # at 0 dB the noisy stretch is mostly flagged, and outside it detection is clean again
    assert r0["flagged_noisy"] > 0.5 and r0["flagged_clean"] < 0.1
    # (the first seconds of a noise burst are judged on a window still mostly clean: a
    # few false beats there are not flagged)
    assert r0["outside_flagged"]["se"] > 0.97 and r0["outside_flagged"]["ppv"] > 0.95
    assert r0["outside_flagged"]["ppv"] > r0["ungated"]["ppv"]
    assert r0["gated"]["ppv"] >= r0["ungated"]["ppv"]


def test_report_xqrs_is_wfdbs_on_the_same_signal_and_beats(report):
    """XQRS's columns are wfdb's XQRS run here on the row's record and matched by wfdb's
    own comparison from minute 5; outside the flagged time it is scored on the same
    reference beats as vitaledge's (fewer than all of them at 0 dB)."""
    import wfdb
    import wfdb.processing

    res, work = report
    beat_symbols = set("NLRBAaJSVrFejnE/fQ")
    for r in res["rows"][1:]:
        path = str(work / f"s118_ma{r['snr']}")
        rec = wfdb.rdrecord(path, channel_names=["MLII"])
        ann = wfdb.rdann(path, "atr")
        start = int(r["scored_from_s"] * rec.fs)
        ref = np.array([x for x, sym in zip(ann.sample, ann.symbol, strict=True)
                        if sym in beat_symbols and x >= start])
        xq = wfdb.processing.XQRS(sig=rec.p_signal[:, 0], fs=rec.fs)
        xq.detect(verbose=False)
        test = np.asarray(xq.qrs_inds)
        cmp = wfdb.processing.compare_annotations(ref, test[test >= start],
                                                  int(0.15 * rec.fs))
        x = r["xqrs"]
        assert abs(x["tp"] - cmp.tp) <= 2 and abs(x["fn"] - cmp.fn) <= 2, (x, cmp.tp, cmp.fn)
        assert abs(x["fp"] - cmp.fp) <= 2, (x, cmp.fp)
        o, xo = r["outside_flagged"], r["xqrs_outside_flagged"]
        assert xo["tp"] + xo["fn"] == o["tp"] + o["fn"]
    r0 = res["rows"][2]
    assert r0["xqrs_outside_flagged"]["tp"] + r0["xqrs_outside_flagged"]["fn"] < r0["beats"]


def test_report_saved_as_json_markdown_and_plot(report, tmp_path, monkeypatch):
    from vitaledge.device.bench.noise_stress import format_markdown, save

    res, _ = report
    drawn = []
    try:
        from matplotlib.figure import Figure
    except ImportError:
        pass
    else:  # keep the figure that is saved, to read its lines back
        savefig = Figure.savefig
        monkeypatch.setattr(Figure, "savefig",
                            lambda fig, *a, **k: (drawn.append(fig), savefig(fig, *a, **k))[1])
    notes = save(res, tmp_path)
    assert json.loads((tmp_path / "noise_stress.json").read_text())["snrs"] == ["24", "0"]
    md = (tmp_path / "noise_stress.md").read_text()
    assert md == format_markdown(res) + "\n"
    # a row of the table reads back as the JSON's figures, column by column
    r0 = res["rows"][2]
    row = next(ln for ln in md.splitlines() if ln.startswith("| s118 | ma | 0 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    want = [r0["ungated"]["se"], r0["ungated"]["ppv"], r0["gated"]["se"], r0["gated"]["ppv"],
            r0["outside_flagged"]["se"], r0["outside_flagged"]["ppv"]]
    assert [float(c) for c in cells[4:10]] == pytest.approx([100 * v for v in want], abs=0.005)
    assert float(cells[10]) == pytest.approx(100 * r0["flagged_noisy"], abs=0.05)
    assert [float(c) for c in cells[12:16]] == pytest.approx(
        [100 * r0[k][m] for k in ("xqrs", "xqrs_outside_flagged") for m in ("se", "ppv")],
        abs=0.005)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert notes and "skipped" in notes[0]
    else:
        assert (tmp_path / "noise_stress.png").stat().st_size > 1000
        # Se and +P against SNR: each series' points are the report's, noise by noise
        [ax] = drawn[0].axes
        assert ax.get_title() == "noise: ma"
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        g = [res["by_noise_snr"][f"ma {s}"] for s in ("24", "0")]
        for key, label in (("ungated", "vitaledge"), ("xqrs", "XQRS"),
                           ("outside_flagged", "vitaledge, outside flagged")):
            for m, name in (("se", "Se"), ("ppv", "+P")):
                ln = lines[f"{label} {name}"]
                assert list(ln.get_xdata()) == [24.0, 0.0]
                assert list(ln.get_ydata()) == pytest.approx([100 * x[key][m] for x in g])


def test_report_names_review_pages_of_its_worst_rows(report):
    """The rows with the most errors of the emitted (gated) beats get a review page, made
    by ``device review``'s code from the events of their replay: self-contained, holding
    that record's errors, linked from the report at the worst 2-minute period."""
    from vitaledge.device.bench.noise_stress import format_markdown
    from vitaledge.device.eval.score_events import read_run

    res, work = report
    rows = {(r["noise"], r["snr"]): r for r in res["rows"]}
    errors = {k: r["gated"]["fn"] + r["gated"]["fp"] for k, r in rows.items()}
    pages = res["review"]["pages"]
    named = [(p["noise"], p["snr"]) for p in pages]
    assert named[0] == ("ma", "0") and 1 <= len(named) <= 3  # 0 dB: the most errors
    assert [p["errors"]["total"] for p in pages] == [errors[k] for k in named]
    assert all(errors[k] > 0 for k in named)
    assert min(errors[k] for k in named) >= max([errors[k] for k in rows if k not in named],
                                                default=0)
    md = format_markdown(res)
    for pg in pages:
        row = rows[(pg["noise"], pg["snr"])]
        html = (work / "report" / pg["page"]).read_text()
        # self-contained: nothing fetched from elsewhere
        assert html.startswith("<!DOCTYPE html>") and "<canvas" in html
        assert not re.search(r"""(src|href|url)\s*[=(]\s*["']?\s*(https?:)?//""", html, re.I)
        assert "<link" not in html and not re.search(r"<script[^>]+src=", html)
        data = review_data(html)
        # the page shows the events of that replay, beside that record's reference beats
        beats, status, _ = read_run(work / "report" / pg["events"])
        assert data["record"] == ("s118" if pg["snr"] == "clean" else f"s118_ma{pg['snr']}")
        assert pg["events"] == f"review-{data['record']}.events.jsonl"
        assert data["beats"]["sample"] == sorted(e["sample"] for e in beats)
        assert data["summary"]["unclassified"] == len(beats) > 0  # detection only
        # its error list holds the row's missed and false beats of the scored stretch
        start = row["scored_from_s"] * data["fs"]
        scored = [e for e in data["errors"] if e["sample"] >= start]
        assert sum(e["kind"] == "missed" for e in scored) == row["gated"]["fn"]
        assert sum(e["kind"] == "false" for e in scored) == row["gated"]["fp"]
        assert not any(e["kind"] == "class" for e in data["errors"])
        # the link opens it at the first error of the 2-minute period with the most errors
        w = pg["worst_period"]
        k = w["first_error"]
        assert pg["link"] == f"{pg['page']}#error={k}"
        assert f"[{pg['page']}]({pg['link']})" in md
        first = data["errors"][k]["sample"]
        assert w["start_s"] * data["fs"] <= first < w["end_s"] * data["fs"]
        assert k == 0 or data["errors"][k - 1]["sample"] < w["start_s"] * data["fs"]
        assert w["errors"] == sum(w["start_s"] <= e["sample"] / data["fs"] < w["end_s"]
                                  for e in data["errors"])
    # 9 minutes: 5 to 7 is the noisy period, 7 to 9 the clean one
    assert pages[0]["worst_period"]["start_s"] == 300.0
    assert pages[0]["worst_period"]["end_s"] == 420.0
    assert "first error of the 2-minute period with the most errors" in md


#: Put into a copy of a page: once the strip is drawn, its view ("first:last" sample) on
#: the body.
_VIEW = """<script>
(function () {
  const strip = document.getElementById("strip");
  (function wait() {
    if (+strip.dataset.drawn >= 1) document.body.setAttribute("data-view", strip.dataset.view);
    else setTimeout(wait, 50);
  })();
})();
</script></body>"""


def test_the_reports_link_opens_its_page_on_that_error(report, tmp_path):
    """In a browser, the report's link to the worst row's page draws the strip centred on
    the first error of its worst period (the page's own ``#error=k``)."""
    exe = chromium()
    if exe is None:
        unavailable("chromium not installed: the link was not opened in a browser")
    res, work = report
    pg = res["review"]["pages"][0]
    html = (work / "report" / pg["page"]).read_text()
    data = review_data(html)
    page = tmp_path / pg["page"]
    page.write_text(html.replace("</body>", _VIEW))
    link = pg["link"]
    dom = run_chromium(exe, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom",
                       page.as_uri() + link[link.index("#"):])
    m = re.search(r'<body[^>]*data-view="(\d+):(\d+)"', dom.stdout)
    assert m, dom.stderr[-2000:]
    a, b = map(int, m.groups())
    error = data["errors"][pg["worst_period"]["first_error"]]["sample"]
    assert b - a < 60 * data["fs"]  # a strip, not the whole record
    assert (a + b) / 2 == pytest.approx(error, abs=2)


def test_cli_noise_stress(short118, data_dir, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from vitaledge.cli import main

    ma = data_dir / "nstdb-noise" / "ma"
    if not ma.with_suffix(".hea").exists():
        unavailable(f"{ma}: NST noise record not found")
    monkeypatch.chdir(tmp_path / "..")
    before = set(Path.cwd().iterdir())
    res = CliRunner().invoke(main, ["bench", "noise-stress", "--record", str(short118),
                                    "--noise", str(ma), "--snr", "6,0", "--no-xqrs", "--out",
                                    str(tmp_path / "o"), "--review-worst", "1"])
    assert res.exit_code == 0, res.output
    # the noise-stress records are made under --out, nothing in the working directory
    assert (tmp_path / "o" / "records" / "s118_ma6.hea").exists()
    assert set(Path.cwd().iterdir()) == before
    assert "| s118 | ma | 6 |" in res.output
    got = json.loads((tmp_path / "o" / "noise_stress.json").read_text())
    assert got["rows"][1]["snr"] == "6" and "xqrs" not in got["rows"][1]
    assert np.isfinite(got["by_snr"]["6"]["outside_flagged"]["se"])
    # one review page (--review-worst 1): the row with the most errors, 0 dB against 6 dB
    err = {r["snr"]: r["gated"]["fn"] + r["gated"]["fp"] for r in got["rows"]}
    assert err["0"] > err["6"] > 0
    assert [p["page"] for p in got["review"]["pages"]] == ["review-s118_ma0.html"]
    assert "[review-s118_ma0.html](review-s118_ma0.html#error=" in res.output
    assert (tmp_path / "o" / "review-s118_ma0.html").stat().st_size > 100_000
    assert not (tmp_path / "o" / "review-s118_ma6.html").exists()
    assert "and 1 review page" in res.output
    # a second run into the same --out: refused, the first report kept; with --overwrite it
    # replaces the report, and the first report's page (0 dB) does not stay behind
    first = (tmp_path / "o" / "noise_stress.json").read_text()
    again = ["bench", "noise-stress", "--record", str(short118), "--noise", str(ma), "--snr",
             "6", "--no-xqrs", "--out", str(tmp_path / "o"), "--review-worst", "1"]
    res = CliRunner().invoke(main, again)
    assert res.exit_code == 2 and "holds an earlier report" in res.output, res.output
    assert (tmp_path / "o" / "noise_stress.json").read_text() == first
    res = CliRunner().invoke(main, [*again, "--overwrite"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "o" / "noise_stress.json").read_text())["snrs"] == ["6"]
    assert sorted(p.name for p in (tmp_path / "o").glob("review-*")) == [
        "review-s118_ma6.events.jsonl", "review-s118_ma6.html"]
    # an --out that cannot be made is one line before any work; a clean record that cannot
    # be made noisy (no normal beats: the paced 107 has none) is named before any record is
    # made, and the folders made for the run are not left behind
    (tmp_path / "afile").write_text("")
    res = CliRunner().invoke(main, ["bench", "noise-stress", "--record", str(short118),
                                    "--noise", str(ma), "--snr", "6", "--no-xqrs", "--out",
                                    str(tmp_path / "afile" / "o")])
    assert res.exit_code == 1 and "cannot create output directory" in res.output, res.output
    assert not res.exception or isinstance(res.exception, SystemExit)
    res = CliRunner().invoke(main, ["bench", "noise-stress", "--record", str(short118),
                                    "--noise", str(ma), "--snr", "6", "--no-xqrs", "--out",
                                    str(tmp_path / "o2"), "--work",
                                    str(tmp_path / "afile" / "w")])
    assert res.exit_code == 1 and "cannot create output directory" in res.output, res.output
    assert not (tmp_path / "o2").exists()  # --out was made first: gone again
    import wfdb

    rec, ann = wfdb.rdrecord(str(short118)), wfdb.rdann(str(short118), "atr")
    paced = tmp_path / "paced"  # s118 with every normal beat labelled paced, as 107
    paced.mkdir()
    wfdb.wrsamp("p118", fs=rec.fs, units=rec.units, sig_name=rec.sig_name,
                p_signal=rec.p_signal, fmt=["16"] * rec.n_sig, write_dir=str(paced))
    wfdb.wrann("p118", "atr", ann.sample,
               symbol=["/" if s in "NLRej" else s for s in ann.symbol], write_dir=str(paced))
    res = CliRunner().invoke(main, ["bench", "noise-stress", "--record", str(short118),
                                    "--record", str(paced / "p118"), "--noise", str(ma),
                                    "--snr", "6", "--no-xqrs", "--out", str(tmp_path / "q")])
    assert res.exit_code == 1 and "p118: no normal beats" in res.output, res.output
    assert not (tmp_path / "q").exists()
    # pages go next to the report: asked for without one is a usage error, before any work
    res = CliRunner().invoke(main, ["bench", "noise-stress", "--record", str(short118),
                                    "--noise", str(ma), "--review-worst", "2"])
    assert res.exit_code == 2 and "give --out" in res.output, res.output
    # a page that cannot be written (a directory stands where the page goes): the measured
    # report is saved all the same, the error is named, exit 1
    (tmp_path / "p" / "review-s118_ma0.html").mkdir(parents=True)
    res = CliRunner().invoke(main, ["bench", "noise-stress", "--record", str(short118),
                                    "--noise", str(ma), "--snr", "0", "--no-xqrs", "--out",
                                    str(tmp_path / "p"), "--review-worst", "1"])
    assert res.exit_code == 1, res.output
    assert "1 review page(s) not written (the report is saved): " in res.output
    assert "review-s118_ma0.html" in res.output
    got = json.loads((tmp_path / "p" / "noise_stress.json").read_text())
    assert "review-s118_ma0.html" in got["review"]["pages"][0]["error"]
    assert got["by_snr"]["0"]["ungated"]["tp"] > 0
    md = (tmp_path / "p" / "noise_stress.md").read_text()
    assert "not written: " in md


def muscle_copy(data_dir, mitdb_dir, record: str, seconds: float, snrs):
    """(fs, clean, reference beats, their classes, {snr: noisy}): the record's first
    ``seconds`` with the NST muscle noise added throughout at each SNR (nst's gain)."""
    from vitaledge.device.io.aami import map_annotations
    from vitaledge.device.io.nst import noise_gain, qrs_amplitude, rms_amplitude
    from vitaledge.device.io.records import read_record

    ma = data_dir / "nstdb-noise" / "ma"
    if not ma.with_suffix(".hea").exists():
        unavailable(f"{ma}: NST noise record not found")
    rec = read_record(mitdb_records(mitdb_dir, [record])[0])
    fs, n = rec.fs, int(seconds * rec.fs)
    clean = rec.signal[:n]
    ref, cls = map_annotations(rec.ann_samples, rec.ann_symbols)
    ref, cls = ref[ref < n], cls[ref < n]
    noise = read_record(ma).signal[:n]
    nz = noise - noise.mean()
    pp, rms = qrs_amplitude(clean, fs, ref), rms_amplitude(nz, fs)
    return fs, clean, ref, cls, {snr: clean + noise_gain(snr, pp, rms) * nz for snr in snrs}


def noisy_118(data_dir, mitdb_dir, snr_db: float):
    """(fs, clean, reference beats, noisy): 118's first 4 minutes with the NST muscle noise
    added throughout at ``snr_db`` (nst's gain)."""
    fs, clean, ref, _, noisy = muscle_copy(data_dir, mitdb_dir, "118", 240, [snr_db])
    return fs, clean, ref, noisy[snr_db]


def streamed(x: np.ndarray, fs: float, chunk: int, **kw) -> list[int]:
    """The streaming detector's peaks over ``x`` fed in chunks of ``chunk`` samples."""
    from vitaledge.device.dsp.rpeaks import RPeakDetector

    d = RPeakDetector(fs, **kw)
    return [p for i in range(0, len(x), chunk) for p in d.process(x[i:i + chunk])] + d.flush()


def test_shape_check_in_noise_removes_false_beats_and_is_chunk_invariant(data_dir, mitdb_dir):
    """118 with NST muscle noise at about 6 dB: the noise-gated shape check of the R-peak
    detector drops false beats (+P up) for at most a few true ones, the same for any
    chunking; on the clean record it changes nothing."""
    from vitaledge.device.dsp.rpeaks import detect_rpeaks
    from vitaledge.device.eval.scoring import score_detections

    fs, clean, ref, x = noisy_118(data_dir, mitdb_dir, 6.0)
    on = score_detections(ref, detect_rpeaks(x, fs), fs)
    off = score_detections(ref, detect_rpeaks(x, fs, shape_h=0.0), fs)  # no candidate checked
    assert on.fp <= off.fp - 10  # measured: 6 against 19 false beats, 286 true ones each
    assert on.tp >= off.tp - 3
    assert np.array_equal(detect_rpeaks(clean, fs), detect_rpeaks(clean, fs, shape_h=0.0))
    whole = detect_rpeaks(x, fs)
    for chunk in (7, 360, 5000):
        assert streamed(x, fs, chunk) == whole.tolist()


def test_review_page_counts_the_rows_scope(report, tmp_path):
    """A review page lists every error of its record outside reference-marked ventricular
    flutter (as EC57's bxb and device score), and the report counts those the row counts:
    from the end of the learning period too. On the 0 dB record with a VF episode marked
    inside the noisy period, the page's scored counts equal the row's, the beats inside
    the episode are counted apart and the worst period skips the VF."""
    import wfdb

    from vitaledge.device.bench.noise_stress import score_replay
    from vitaledge.device.bench.noise_stress_review import write_review_page

    _, work = report
    src = work / "s118_ma0"
    rec = wfdb.rdrecord(str(src))
    ann = wfdb.rdann(str(src), "atr")
    vf = (int(330 * FS), int(360 * FS))  # 5:30-6:00, in the noisy period
    sample = np.concatenate([ann.sample, vf])
    symbol = list(ann.symbol) + ["[", "]"]
    order = np.argsort(sample, kind="stable")
    wfdb.wrsamp("vf118", fs=rec.fs, units=rec.units, sig_name=rec.sig_name,
                p_signal=rec.p_signal, fmt=["16"] * rec.n_sig, adc_gain=rec.adc_gain,
                baseline=[0] * rec.n_sig, write_dir=str(tmp_path))
    wfdb.wrann("vf118", "atr", sample[order], symbol=[symbol[i] for i in order],
               write_dir=str(tmp_path))
    path = tmp_path / "vf118"
    row, events = score_replay(path, None, with_xqrs=False)
    row = {"clean": "s118", "noise": "ma", "snr": "0", **row}
    pg = write_review_page(row, events, path, tmp_path / "pages")
    data = review_data((tmp_path / "pages" / pg["page"]).read_text())
    in_vf = [e for e in data["errors"] if vf[0] <= e["sample"] < vf[1]]
    assert not in_vf  # neither missed nor false there
    assert data["summary"]["events_in_vf"] == sum(vf[0] <= s < vf[1]
                                                  for s in data["beats"]["sample"]) > 20
    assert pg["page_errors"]["missed"] == row["gated"]["fn"]
    assert pg["page_errors"]["false"] == row["gated"]["fp"]
    whole = pg["page_errors_whole_record"]
    assert whole["missed"] + whole["false"] == len(data["errors"])
    assert whole["missed"] + whole["false"] >= (pg["page_errors"]["missed"]
                                               + pg["page_errors"]["false"] + len(in_vf))
    w = pg["worst_period"]
    first = data["errors"][w["first_error"]]["sample"]
    assert not vf[0] <= first < vf[1]
    assert w["errors"] == sum(w["start_s"] * FS <= e["sample"] < w["end_s"] * FS
                              and not vf[0] <= e["sample"] < vf[1] for e in data["errors"])


def test_a_beat_on_the_scope_boundary_counts_as_the_page_marks_it(short118, tmp_path):
    """A detection and its reference beat on either side of the start of the scored stretch
    are one matched beat, in the row as on the review page (both match over the whole record
    and then leave out what is before the start): the row counts neither a miss nor a false
    beat for it."""
    from vitaledge.device.bench.noise_stress import score_replay
    from vitaledge.device.bench.noise_stress_review import write_review_page
    from vitaledge.device.dsp.matching import TOLERANCE_S, match_beats
    from vitaledge.device.io.aami import map_annotations
    from vitaledge.device.io.records import read_record

    _, events = score_replay(short118, None, with_xqrs=False)
    det = np.asarray([e["sample"] for e in events if e["type"] == "beat"], np.int64)
    rec = read_record(short118)
    ref, _ = map_annotations(rec.ann_samples, rec.ann_symbols)
    ri, di = match_beats(ref, det, int(round(TOLERANCE_S * FS)))
    # a matched pair past 5:00 whose detection and reference differ by a few samples
    k = next(i for i in range(len(ri)) if ref[ri[i]] > 310 * FS
             and ref[ri[i]] != det[di[i]])
    r, d = int(ref[ri[k]]), int(det[di[k]])
    row, events = score_replay(short118, None, with_xqrs=False, start_s=max(r, d) / FS)
    assert min(r, d) < round(row["scored_from_s"] * FS) <= max(r, d)
    pg = write_review_page({"clean": "s118", "noise": "clean", "snr": "clean", **row},
                           events, short118, tmp_path)
    assert pg["page_errors"]["missed"] == row["gated"]["fn"]
    assert pg["page_errors"]["false"] == row["gated"]["fp"]


def test_two_records_of_one_name_are_refused(short118, data_dir, tmp_path):
    """Records made from the clean and noise records, and their review pages, are named by
    the records' names: two clean records of one name are refused before any work."""
    import shutil

    from click.testing import CliRunner

    from vitaledge.cli import main

    other = tmp_path / "other"
    other.mkdir()
    for ext in (".hea", ".dat", ".atr"):
        shutil.copy(short118.with_suffix(ext), other / f"s118{ext}")
    res = CliRunner().invoke(main, ["bench", "noise-stress", "--record", str(short118),
                                    "--record", str(other / "s118"), "--noise",
                                    str(data_dir / "nstdb-noise" / "ma"), "--snr", "6",
                                    "--out", str(tmp_path / "o")])
    assert res.exit_code == 1, res.output
    assert res.output.startswith("Error: two clean records are named 's118'")
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_ready_made_noise_stress_records_score_as_the_ones_made_here(report, tmp_path):
    """The real NST database's records (118e06 ...) and records ``data nst`` made before are
    replayed as they are: labelled from the name or the sidecar, each row the same counts
    as the bench's own row for that record, in the gross totals of their SNR."""
    import shutil

    import wfdb

    from vitaledge.device.bench.noise_stress import bench_noise_stress

    res, work = report
    made = next(r for r in res["rows"] if (r["noise"], r["snr"]) == ("ma", "0"))
    kept = tmp_path / "kept"  # a record data nst made, with its sidecar
    kept.mkdir()
    for f in work.glob("s118_ma0.*"):
        shutil.copy(f, kept / f.name)
    nstdb = tmp_path / "nstdb"  # the same signal under the NST database's name, no sidecar
    nstdb.mkdir()
    rec = wfdb.rdrecord(str(work / "s118_ma0"))
    ann = wfdb.rdann(str(work / "s118_ma0"), "atr")
    wfdb.wrsamp("118e00", fs=rec.fs, units=rec.units, sig_name=rec.sig_name,
                p_signal=rec.p_signal, fmt=["16"] * rec.n_sig, adc_gain=rec.adc_gain,
                baseline=[0] * rec.n_sig, write_dir=str(nstdb))
    wfdb.wrann("118e00", "atr", ann.sample, symbol=ann.symbol, write_dir=str(nstdb))

    got = bench_noise_stress([], [], (), tmp_path / "w", model=None, with_xqrs=True,
                             noisy=[kept / "s118_ma0", nstdb / "118e00"])
    assert [(r["clean"], r["noise"], r["snr"]) for r in got["rows"]] == [
        ("s118", "ma", "0"), ("118", "em", "0")]
    assert got["snrs"] == ["0"] and not (tmp_path / "w").exists()  # nothing made
    for row in got["rows"]:
        for key in ("ungated", "gated", "outside_flagged", "xqrs"):
            assert row[key] == made[key], (row["record"], key)
        assert row["flagged_noisy"] == made["flagged_noisy"]
    assert got["by_snr"]["0"]["ungated"]["tp"] == 2 * made["ungated"]["tp"]
    assert got["by_snr"]["clean"] == {}


def test_nst_label_reads_the_nst_database_names_and_sidecars(tmp_path):
    """No recordings needed: the NST database's names, a sidecar, and what is refused."""
    from vitaledge.device.io.nst import nst_label
    from vitaledge.device.io.records import RecordError

    for name in ("118e24", "118e06", "118e00", "119e_6", "plain"):
        (tmp_path / f"{name}.hea").write_text(f"{name} 1 360 10\n")
    got = {n: nst_label(tmp_path / n) for n in ("118e24", "118e06", "118e00", "119e_6")}
    assert {n: (g.clean, g.noise, g.snr) for n, g in got.items()} == {
        "118e24": ("118", "em", "24"), "118e06": ("118", "em", "6"),
        "118e00": ("118", "em", "0"), "119e_6": ("119", "em", "-6")}
    assert nst_label(tmp_path / "119e_6.hea") == nst_label(tmp_path / "119e_6.dat") == got["119e_6"]
    sidecar = tmp_path / "plain.nst.json"
    sidecar.write_text('{"snr_db": -6.0, "noise_record": "ma", "clean_record": "x1"}')
    assert nst_label(tmp_path / "plain") == type(got["118e24"])("x1", "ma", "-6")
    # each key is checked and named (a null noise_record was labelled "None", and a
    # sidecar of the wrong shape was named by a TypeError's repr)
    for text, words in (('{"snr_db": "nan", "noise_record": "ma"}', "snr_db is 'nan'"),
                        ('{"snr_db": NaN, "noise_record": "ma"}', "snr_db is nan"),
                        ('{"snr_db": 6, "noise_record": null}', "noise_record is None"),
                        ('{"snr_db": 6, "noise_record": "ma", "clean_record": 118}',
                         "clean_record is 118"),
                        ('{"noise_record": "ma"}', r"not a noise-stress sidecar \(no snr_db\)"),
                        ("[1, 2]", r"not a noise-stress sidecar \(a JSON list, not an "
                                   r"object\)"),
                        ("{", r"not a noise-stress sidecar \(not JSON: ")):
        sidecar.write_text(text)
        with pytest.raises(ValueError, match=rf"plain.nst.json: {words}"):
            nst_label(tmp_path / "plain")
    # random bytes: the error named them all (500 bytes of UnicodeDecodeError's repr)
    sidecar.write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(ValueError, match=r"plain.nst.json: not a noise-stress sidecar \(not "
                                         r"UTF-8 text\)$"):
        nst_label(tmp_path / "plain")
    sidecar.unlink()
    with pytest.raises(ValueError, match="plain: not a noise-stress record"):
        nst_label(tmp_path / "plain")
    with pytest.raises(RecordError, match="118e12.hea: no such WFDB header"):
        nst_label(tmp_path / "118e12")


def test_clean_and_ready_made_records_together(short118, data_dir, tmp_path):
    """Made and ready-made rows in one report: the SNRs highest first whatever order they
    came in, each noise's gross only at the SNRs it was scored at; the same record given
    twice (with and without .hea) or two rows of one label are refused."""
    from vitaledge.device.bench.noise_stress import bench_noise_stress
    from vitaledge.device.io.nst import make_nst

    ma = data_dir / "nstdb-noise" / "ma"
    if not ma.with_suffix(".hea").exists():
        unavailable(f"{ma}: NST noise record not found")
    make_nst(short118, ma, 6.0, tmp_path / "before")  # s118_ma6, ready-made
    ready = tmp_path / "before" / "s118_ma6"
    res = bench_noise_stress([short118], [ma], (0.0, 24.0), tmp_path / "w", with_xqrs=False,
                             noisy=[ready.with_suffix(".hea")])
    assert [(r["noise"], r["snr"]) for r in res["rows"]] == [
        ("clean", "clean"), ("ma", "0"), ("ma", "24"), ("ma", "6")]
    assert res["snrs"] == ["24", "6", "0"]
    assert list(res["by_snr"]) == ["clean", "24", "6", "0"]
    assert set(res["by_noise_snr"]) == {"ma 24", "ma 6", "ma 0"}
    with pytest.raises(ValueError, match="two rows would replay records named 's118_ma6'"):
        bench_noise_stress([short118], [ma], (6.0,), tmp_path / "w", with_xqrs=False,
                           noisy=[ready.with_suffix(".hea")])
    with pytest.raises(ValueError, match="two rows would replay records named 's118_ma6'"):
        bench_noise_stress([], [], (), tmp_path / "w", with_xqrs=False,
                           noisy=[ready, ready.with_suffix(".hea")])
    import shutil  # the same label under another name: s118 + ma at 6 dB twice
    for f in (tmp_path / "before").glob("s118_ma6.*"):
        shutil.copy(f, tmp_path / f.name.replace("s118_ma6", "again"))
    with pytest.raises(ValueError, match="two rows would both be 's118 \\+ ma at 6 dB'"):
        bench_noise_stress([], [], (), tmp_path / "w", with_xqrs=False,
                           noisy=[ready, tmp_path / "again"])


def test_a_record_below_the_detectors_rates_is_named_before_any_work(tmp_path):
    """A 20-Hz clean record was "filter high edge 15.0 Hz is not below Nyquist (10.0 Hz)",
    after its noise-stress copy was made, naming neither the record nor the limit."""
    import wfdb
    from click.testing import CliRunner

    from vitaledge.cli import main

    fs, n = 20, 20 * 400
    x = np.sin(np.arange(n) / fs * 2 * np.pi)[:, None]
    wfdb.wrsamp("slow", fs=fs, units=["mV"], sig_name=["MLII"], p_signal=x, fmt=["16"],
                adc_gain=[200.0], baseline=[0], write_dir=str(tmp_path))
    wfdb.wrann("slow", "atr", np.arange(10, n, 20), symbol=["N"] * len(range(10, n, 20)),
               write_dir=str(tmp_path))
    wfdb.wrsamp("nz", fs=fs, units=["mV"], sig_name=["n"], p_signal=x * 0.1, fmt=["16"],
                adc_gain=[200.0], baseline=[0], write_dir=str(tmp_path))
    work = tmp_path / "work"
    r = CliRunner().invoke(main, ["bench", "noise-stress", "--record", str(tmp_path / "slow"),
                                  "--noise", str(tmp_path / "nz"), "--snr", "6", "--no-xqrs",
                                  "--out", str(tmp_path / "out"), "--work", str(work)])
    assert error_line(r) == (f"Error: {tmp_path / 'slow'}: 20 Hz; the detector takes 50 to "
                             "10000 Hz")
    assert not work.exists() and not (tmp_path / "out").exists()
    # a header wfdb cannot read, and a record that is not there: named too
    hea = (tmp_path / "slow.hea").read_text().splitlines()
    (tmp_path / "dated.hea").write_text("\n".join([hea[0].replace("slow", "dated") + " 12:00:00"
                                                   " 99/99/2000", *hea[1:]]) + "\n")
    for name, says in (("dated", "dated.hea: cannot read WFDB header: "),
                       ("absent", "absent.hea: no such WFDB header")):
        r = CliRunner().invoke(main, ["bench", "noise-stress", "--noisy-record",
                                      str(tmp_path / name), "--no-xqrs"])
        assert error_line(r).startswith(f"Error: {tmp_path / says}"), r.output


def test_noise_stress_inputs_that_cannot_be_scored_are_named(short118, data_dir, tmp_path):
    from click.testing import CliRunner

    from vitaledge.cli import main
    from vitaledge.device.bench.noise_stress import bench_noise_stress

    with pytest.raises(ValueError, match="s118: not a noise-stress record"):
        bench_noise_stress([], [], (), tmp_path, with_xqrs=False, noisy=[short118])
    with pytest.raises(ValueError, match="give both"):
        bench_noise_stress([short118], [], (12.0,), tmp_path, with_xqrs=False)
    res = CliRunner().invoke(main, ["bench", "noise-stress", "--noisy-record", str(short118),
                                    "--no-xqrs"])
    assert res.exit_code == 1 and "s118: not a noise-stress record" in error_line(res)
    res = CliRunner().invoke(main, ["bench", "noise-stress", "--no-xqrs"])
    assert res.exit_code == 1 and "nothing to score" in res.output
    res = CliRunner().invoke(main, ["bench", "noise-stress", "--noisy-record", str(short118),
                                    "--snr", "6"])
    assert res.exit_code == 2 and "a ready-made record is scored at its own" in res.output
    # --noise without --record: the missing clean record is the trouble, not --snr
    res = CliRunner().invoke(main, ["bench", "noise-stress", "--noise", str(short118),
                                    "--snr", "6", "--no-xqrs"])
    assert res.exit_code == 1 and "give both" in error_line(res), res.output


def test_muscle_noise_moves_the_detector_to_the_lower_band_and_finds_more(data_dir,
                                                                          mitdb_dir):
    """118 with NST muscle noise at 0 dB: blending the detector's energy towards 5-11 Hz
    where the 25-45 Hz power says muscle finds more beats and invents fewer than the 5-15
    Hz band alone; on the clean record the weight stays 0 and the peaks are the same; the
    weight is chunk-invariant."""
    from vitaledge.device.dsp.filters import CausalFilter, FilterSpec
    from vitaledge.device.dsp.rpeaks import MuscleMix, detect_rpeaks
    from vitaledge.device.eval.scoring import score_detections

    fs, clean, ref, x = noisy_118(data_dir, mitdb_dir, 0.0)

    def weight(sig, chunk=None):
        mix = MuscleMix(fs, (5.0, 11.0), (25.0, 45.0), (0.3, 0.6), 1 / 0.62, 2.0)
        band = CausalFilter(FilterSpec(5.0, 15.0, 2), fs)
        step = chunk or len(sig)
        return np.concatenate([mix.weight(sig[i:i + step], band.process(sig[i:i + step]))
                               for i in range(0, len(sig), step)])

    w_noisy, w_clean = weight(x), weight(clean)
    assert w_clean.max() == 0.0
    assert np.median(w_noisy[int(5 * fs):]) == 1.0
    # the band filters are chunk-invariant to rounding (their state-space blocks), the
    # peaks exactly
    np.testing.assert_allclose(weight(x, chunk=997), w_noisy, rtol=0, atol=1e-9)
    whole = detect_rpeaks(x, fs)
    assert streamed(x, fs, 997) == whole.tolist()
    on = score_detections(ref, detect_rpeaks(x, fs), fs)
    off = score_detections(ref, detect_rpeaks(x, fs, muscle_band=None), fs)
    assert on.tp >= off.tp + 5 and on.fp <= off.fp - 5, (on, off)
    assert np.array_equal(detect_rpeaks(clean, fs), detect_rpeaks(clean, fs, muscle_band=None))


def test_muscle_noise_turns_the_shape_check_on_where_the_floor_does_not(data_dir, mitdb_dir):
    """The first 10 minutes of 114, 119 and 201 with NST muscle noise at 6 dB: where the
    muscle-noise blend found muscle noise the detector checks candidates' shapes even when
    the median energy stays under the noise floor (between bursts): fewer false beats, the
    same true ones; on the clean records nothing changes. (Without the later 25-45 Hz
    trigger, ``hf_floor`` 0, which covers much of the same ground: this lever alone.)"""
    from vitaledge.device.dsp.rpeaks import detect_rpeaks
    from vitaledge.device.eval.scoring import score_detections

    on = off = np.zeros(3, int)
    for name in ("114", "119", "201"):
        fs, clean, ref, _, noisy = muscle_copy(data_dir, mitdb_dir, name, 600, [6.0])
        x = noisy[6.0]
        for flag in (True, False):
            s = score_detections(ref, detect_rpeaks(x, fs, muscle_shape=flag, hf_floor=0.0),
                                 fs)
            if flag:
                on = on + (s.tp, s.fn, s.fp)
            else:
                off = off + (s.tp, s.fn, s.fp)
        assert np.array_equal(detect_rpeaks(clean, fs, hf_floor=0.0),
                              detect_rpeaks(clean, fs, muscle_shape=False, hf_floor=0.0)), name
    assert on[2] <= off[2] - 8, (on, off)  # measured: 152 against 164 false beats
    assert on[0] >= off[0] - 2, (on, off)  # 1,954 true beats each


def test_search_back_waits_for_the_compensatory_pause_after_a_pvc_in_muscle_noise(
        data_dir, mitdb_dir):
    """MIT-BIH 119 (bigeminy: a PVC 0.5 s after a sinus beat, then a 1.3 s pause, against a
    mean RR near 0.9 s) with NST muscle noise: search-back at 1.4 mean RR fires inside the
    pause, before the next sinus beat is due, and takes the largest noise peak there.
    Waiting for the expected pause after a large beat of a new shape takes about half those
    false beats away and no true one; streaming equals batch; clean 119 is unchanged."""
    from vitaledge.device.dsp.rpeaks import detect_rpeaks
    from vitaledge.device.eval.scoring import score_detections

    fs, clean, ref, cls, noisy = muscle_copy(data_dir, mitdb_dir, "119", 600, [12.0, 6.0])

    def after_pvc_false(peaks):
        prev = np.searchsorted(ref, peaks) - 1
        return sum(int(np.abs(ref - p).min() > 0.15 * fs and i >= 0 and cls[i] == 2)
                   for p, i in zip(peaks, prev, strict=True))

    for snr, fewer in ((12.0, 8), (6.0, 12)):  # measured: 21 -> 10 and 38 -> 19
        x = noisy[snr]
        wait, no_wait = detect_rpeaks(x, fs), detect_rpeaks(x, fs, pause_k=0.0)
        assert after_pvc_false(wait) <= after_pvc_false(no_wait) - fewer, snr
        on, off = score_detections(ref, wait, fs), score_detections(ref, no_wait, fs)
        assert on.tp >= off.tp and on.fp < off.fp, (snr, on, off)
        for chunk in (113, 1201):
            assert streamed(x, fs, chunk) == wait.tolist(), (snr, chunk)
    assert np.array_equal(detect_rpeaks(clean, fs), detect_rpeaks(clean, fs, pause_k=0.0))


def test_in_muscle_noise_the_r_peak_moves_to_where_the_ecg_looks_like_a_qrs(data_dir,
                                                                          mitdb_dir):
    """The first 10 minutes of 115 and 118 with NST muscle noise at 6 dB: the largest
    deflection before an energy peak is often a noise spike 150-400 ms from the QRS, which
    counts as one missed and one false beat. Placing the R peak where the ECG matches the
    recent QRS shapes best finds most of them; streaming equals batch; clean records are
    unchanged."""
    from vitaledge.device.dsp.rpeaks import detect_rpeaks
    from vitaledge.device.eval.scoring import score_detections

    on = off = np.zeros(4, int)
    for name in ("115", "118"):
        fs, clean, ref, _, noisy = muscle_copy(data_dir, mitdb_dir, name, 600, [6.0])
        x = noisy[6.0]
        for relocate_s in (0.3, 0.0):
            peaks = detect_rpeaks(x, fs, relocate_s=relocate_s)
            s = score_detections(ref, peaks, fs)
            gap = np.array([np.abs(peaks - r).min() for r in ref]) / fs
            row = np.array([s.tp, s.fn, s.fp, int(((gap > 0.15) & (gap < 0.4)).sum())])
            if relocate_s:
                on = on + row
                for chunk in (97, 713):
                    assert streamed(x, fs, chunk) == peaks.tolist(), (name, chunk)
            else:
                off = off + row
        assert np.array_equal(detect_rpeaks(clean, fs), detect_rpeaks(clean, fs, relocate_s=0.0))
    # measured: 1,396 against 1,382 true beats, 60 against 76 false, 7 against 20 displaced
    assert on[0] >= off[0] + 8 and on[2] <= off[2] - 8 and on[3] <= off[3] - 8, (on, off)


def test_search_back_in_muscle_noise_takes_no_bump_under_a_tenth_of_a_qrs(data_dir,
                                                                          mitdb_dir):
    """MIT-BIH 201 (small, changing QRS complexes, atrial fibrillation, pauses) and 106
    with NST muscle noise at 12 dB: the threshold sinks towards the noise level, and
    search-back took noise bumps of a twentieth of a QRS as beats. A floor of a tenth of
    the typical QRS height for search-back in muscle noise takes about a fifth of the false
    beats away and no true one; streaming equals batch; the clean records are unchanged.
    (Measured as it was chosen, before the 25-45 Hz trigger: ``hf_floor`` 0.)"""
    from vitaledge.device.dsp.rpeaks import detect_rpeaks
    from vitaledge.device.eval.scoring import score_detections

    tp = fp = np.zeros(2, int)
    for name in ("201", "106"):
        fs, clean, ref, _, noisy = muscle_copy(data_dir, mitdb_dir, name, 1800, [12.0])
        x = noisy[12.0]
        floor = detect_rpeaks(x, fs, hf_floor=0.0)
        none = detect_rpeaks(x, fs, search_back_min=0.0, hf_floor=0.0)
        on, off = score_detections(ref, floor, fs), score_detections(ref, none, fs)
        assert on.tp >= off.tp and on.fp <= off.fp, (name, on, off)  # 201: 54 -> 41 false
        tp, fp = tp + [on.tp, off.tp], fp + [on.fp, off.fp]
        for chunk in (89, 1499):
            assert streamed(x, fs, chunk, hf_floor=0.0) == floor.tolist(), (name, chunk)
        assert np.array_equal(detect_rpeaks(clean, fs, hf_floor=0.0),
                              detect_rpeaks(clean, fs, search_back_min=0.0, hf_floor=0.0)), name
    # measured: the same 3,955 true beats; 85 against 105 false
    assert tp[0] >= tp[1] and fp[0] <= fp[1] - 15, (tp, fp)


def test_high_frequency_noise_turns_the_shape_check_on_under_the_level_floor(data_dir,
                                                                           mitdb_dir):
    """MIT-BIH 114 and 124 (large QRS complexes) with NST muscle noise at 12 dB: the median
    energy stays under the noise floor, so the shape check was off and noise peaks were
    taken as beats. Where the 25-45 Hz band's power over the last 2 s is above 0.05 of its
    level at the recent QRS complexes the check applies: most of those false beats go, no
    true one; streaming equals batch; the clean records are unchanged."""
    from vitaledge.device.dsp.rpeaks import RPeakDetector, detect_rpeaks
    from vitaledge.device.eval.scoring import score_detections

    tp = fp = np.zeros(2, int)
    for name in ("114", "124"):
        fs, clean, ref, _, noisy = muscle_copy(data_dir, mitdb_dir, name, 1800, [12.0])
        x = noisy[12.0]
        hf, none = detect_rpeaks(x, fs), detect_rpeaks(x, fs, hf_floor=0.0)
        on, off = score_detections(ref, hf, fs), score_detections(ref, none, fs)
        assert on.tp >= off.tp and on.fp < off.fp, (name, on, off)
        tp, fp = tp + [on.tp, off.tp], fp + [on.fp, off.fp]
        for chunk in (89, 1499):
            assert streamed(x, fs, chunk) == hf.tolist(), (name, chunk)
        assert np.array_equal(detect_rpeaks(clean, fs),
                              detect_rpeaks(clean, fs, hf_floor=0.0)), name
    # measured: the same 3,484 true beats; 17 against 47 false
    assert tp[0] >= tp[1] and fp[0] <= fp[1] - 20, (tp, fp)
    # at 100 Hz and below the 25-45 Hz band does not fit under Nyquist with room: off
    assert RPeakDetector(100.0).hf_floor == 0.0 and RPeakDetector(128.0).hf_floor == 0.05


def test_a_relocation_window_longer_than_the_kept_history_is_refused():
    """The R peak's search window must lie within the history the buffers keep (noise_s),
    or where it was cut would depend on how the stream was chunked."""
    from vitaledge.device.dsp.rpeaks import RPeakDetector

    with pytest.raises(ValueError, match="relocate_s"):
        RPeakDetector(360.0, relocate_s=1.95)
    assert RPeakDetector(360.0, relocate_s=1.9).relocate == 684


def test_a_relearning_after_the_signal_shrank_forgets_the_old_qrs_shapes(mitdb_dir,
                                                                         monkeypatch):
    """MIT-BIH 116 at 22:35-22:50: the ECG drops to a small fraction of its size (the
    detector is blind for a few beats, then relearns its levels). Its new QRS complexes
    are unlike the old ones, so the shape check, on because the small signal holds
    relatively more high-frequency power, would refuse them if the old shapes were kept:
    three beats are found only because the relearning forgets them."""
    import vitaledge.device.dsp.rpeaks as rpeaks
    from vitaledge.device.io.aami import map_annotations
    from vitaledge.device.io.records import read_record

    rec = read_record(mitdb_records(mitdb_dir, ["116"])[0])
    a, b = int(1350 * rec.fs), int(1370 * rec.fs)
    ref, _ = map_annotations(rec.ann_samples, rec.ann_symbols)
    after = np.asarray([490260, 490524, 490787])  # 22:41.8-22:43.3, after the drop
    assert np.isin(after, ref).all()

    def found(peaks):
        return [bool(np.abs(peaks + a - r).min() <= 0.15 * rec.fs) for r in after]

    assert found(rpeaks.detect_rpeaks(rec.signal[a:b], rec.fs)) == [True] * 3
    monkeypatch.setattr(rpeaks, "SIZE_CHANGE", np.inf)  # keep the old shapes
    assert found(rpeaks.detect_rpeaks(rec.signal[a:b], rec.fs)) == [False] * 3


def test_report_says_how_many_review_pages_it_wrote():
    """Three pages asked for, one row with errors: the report says one page, and why not
    three (it said "the 3 rows" above a table of one)."""
    from vitaledge.device.bench.noise_stress_review import format_review

    page = {"clean": "118", "noise": "ma", "snr": "6", "page": "review-118_ma6.html",
            "link": "review-118_ma6.html", "errors": {"total": 5, "missed": 2, "false": 3},
            "worst_period": None}
    res = {"classification": False, "scored_from_s": 300.0,
           "review": {"worst": 3, "period_s": 120.0, "pages": [page]}}
    text = "\n".join(format_review(res))
    assert "Review pages of the 1 row with the most errors" in text
    assert "(3 asked for; only 1 row has errors.)" in text
    res["review"]["pages"] = [page] * 3
    text = "\n".join(format_review(res))
    assert "the 3 rows with the most errors" in text and "asked for" not in text
    res["review"]["pages"] = []
    assert format_review(res) == ["", "No row has errors: no review page written."]


def test_a_class_the_records_do_not_hold_is_undefined_not_zero(short118, data_dir, converted,
                                                                tmp_path):
    """With --model, F and Q (none in 118) printed 'Se 0.00' and the JSON held 0.0."""
    from vitaledge.device.bench.noise_stress import bench_noise_stress, format_markdown

    ma = data_dir / "nstdb-noise" / "ma"
    if not ma.with_suffix(".hea").exists():
        unavailable(f"{ma}: NST noise record not found")
    out, _ = converted
    res = bench_noise_stress([short118], [ma], (12.0,), tmp_path / "w",
                             model=str(out / "cpu-int8"), with_xqrs=False)
    classes = res["by_snr"]["12"]["classes"]
    assert classes["F"]["tp"] + classes["F"]["fn"] == 0 and classes["F"]["se"] is None
    assert classes["N"]["tp"] + classes["N"]["fn"] > 0 and classes["N"]["se"] is not None
    row = next(line for line in format_markdown(res).splitlines() if line.startswith("| 12 |")
               and "\\|" in line)
    assert "— \\| —" in row, row


def test_the_work_directory_is_reused_only_for_the_same_inputs(short118, data_dir, tmp_path):
    """A record in --work made from another noise record of the same name was scored as if
    it were this one (bw's copy labelled ma: 99.95 % instead of 95.93 %); a sidecar that
    cannot be read was a traceback. Both are made again; the same inputs are reused, and
    the run says so."""
    import shutil

    from click.testing import CliRunner

    from vitaledge.cli import main

    ma, bw = data_dir / "nstdb-noise" / "ma", data_dir / "nstdb-noise" / "bw"
    if not (ma.with_suffix(".hea").exists() and bw.with_suffix(".hea").exists()):
        unavailable("nstdb-noise records ma and bw not found")
    fake = tmp_path / "fake"
    fake.mkdir()
    shutil.copy(bw.with_suffix(".dat"), fake / "ma.dat")
    (fake / "ma.hea").write_text(bw.with_suffix(".hea").read_text().replace("bw", "ma"))
    work = tmp_path / "work"
    assert CliRunner().invoke(main, ["data", "nst", "--record", str(short118), "--noise",
                                     str(fake / "ma"), "--snr", "0", "--out",
                                     str(work)]).exit_code == 0

    def bench(noise):
        r = CliRunner().invoke(main, ["bench", "noise-stress", "--record", str(short118),
                                      "--noise", str(noise), "--snr", "0", "--no-xqrs",
                                      "--work", str(work), "--out", str(tmp_path / "o"),
                                      "--review-worst", "0", "--overwrite"])
        assert r.exit_code == 0, r.output
        return r.output, json.loads((tmp_path / "o" / "noise_stress.json").read_text())

    out, fake_ma = bench(fake / "ma")     # made from these very inputs: reused, and said
    assert fake_ma["reused_records"] == ["s118_ma0"] and "reused 1 noise-stress record" in out
    out, real = bench(ma)                 # the real ma: made again, not the bw copy
    assert real["reused_records"] == [] and "reused" not in out
    assert real["rows"][1]["gated"]["fn"] + real["rows"][1]["gated"]["fp"] > \
        fake_ma["rows"][1]["gated"]["fn"] + fake_ma["rows"][1]["gated"]["fp"]
    for broken in ("{}", "[1]", '{"snr_db": 0'):
        (work / "s118_ma0.nst.json").write_text(broken)
        _, again = bench(ma)
        assert again["reused_records"] == [] and again["rows"][1] == real["rows"][1]
    # a record made from a seeded place in the noise (data nst --seed), or cut short, is
    # not the bench's: made again
    assert CliRunner().invoke(main, ["data", "nst", "--record", str(short118), "--noise",
                                     str(ma), "--snr", "0", "--seed", "5", "--overwrite",
                                     "--out", str(work)]).exit_code == 0
    _, again = bench(ma)
    assert again["reused_records"] == [] and again["rows"][1] == real["rows"][1]
    _, again = bench(ma)
    assert again["reused_records"] == ["s118_ma0"]
    dat = work / "s118_ma0.dat"
    dat.write_bytes(dat.read_bytes()[:1000])
    _, again = bench(ma)
    assert again["reused_records"] == [] and again["rows"][1] == real["rows"][1]
    # --review-worst 0 asks for no page: no --out needed
    r = CliRunner().invoke(main, ["bench", "noise-stress", "--record", str(short118), "--noise",
                                  str(ma), "--snr", "0", "--no-xqrs", "--work", str(work),
                                  "--review-worst", "0"])
    assert r.exit_code == 0, r.output


def test_a_record_without_mlii_is_replayed_on_its_own_lead_as_the_daemon_does(mitdb_dir,
                                                                              tmp_path):
    """104 has no MLII and is read on V5, which the beat check's network was not trained
    on: the bench, like the daemon, lets it drop beats but add none (at 432.8 s, in the
    first 8 minutes, it would add one)."""
    import wfdb

    from vitaledge.device.bench.noise_stress import score_replay
    from vitaledge.device.dsp.beat_check import detect_beats
    from vitaledge.device.io.records import read_record

    (src,) = mitdb_records(mitdb_dir, ["104"])
    n = 8 * 60 * 360
    sig = wfdb.rdrecord(str(src), sampto=n)
    ann = wfdb.rdann(str(src), "atr", sampto=n)
    wfdb.wrsamp("v5", fs=360, units=sig.units, sig_name=sig.sig_name, p_signal=sig.p_signal,
                fmt=["16", "16"], write_dir=str(tmp_path))
    wfdb.wrann("v5", "atr", ann.sample, ann.symbol, write_dir=str(tmp_path))
    rec = read_record(tmp_path / "v5")
    assert rec.lead == "V5"
    on_v5 = set(detect_beats(rec.signal, rec.fs, "V5").tolist())
    as_if_mlii = set(detect_beats(rec.signal, rec.fs, "MLII").tolist())
    assert as_if_mlii - on_v5   # told MLII, the check would add a beat here
    _, events = score_replay(tmp_path / "v5", None, False)
    replayed = {e["sample"] for e in events if e["type"] == "beat"}
    assert replayed and replayed <= on_v5
