"""``vitaledge device review``: one self-contained HTML page of beat events on the ECG.

Events are made from a synthetic record's own annotations with three known mistakes (a
beat dropped, a false beat added, a class changed), one beat flagged doubtful and one
unreadable segment; the page's embedded data must hold exactly those. With headless
Chromium installed (``make test`` installs it when it can), the page is also opened: its
script must have drawn the strip and built one list entry per error."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import chromium, review_data, run_chromium, unavailable

from vitaledge.cli import main
from vitaledge.device.eval.review import build_review
from vitaledge.device.eval.score_events import read_run
from vitaledge.device.io.aami import CLASSES, map_annotations
from vitaledge.device.io.records import read_record

DROP, DOUBT, RECLASS = 20, 30, 60
UNREADABLE_S = (100.0, 104.0)


def _events(record: Path, path: Path, quality: bool = True) -> dict:
    """Write the record's reference beats as daemon events with the known mistakes;
    return what the review must find."""
    rec = read_record(record)
    ref, cls = map_annotations(rec.ann_samples, rec.ann_symbols)
    tol = 0.15 * rec.fs
    gaps = np.flatnonzero(np.diff(ref) > 3 * tol)
    false_at = int((ref[gaps[40]] + ref[gaps[40] + 1]) // 2)  # far from any reference beat
    labels = [CLASSES[c] for c in cls]
    labels[RECLASS] = "V" if labels[RECLASS] != "V" else "N"
    beats = [(int(s), lab) for i, (s, lab) in enumerate(zip(ref, labels, strict=True))
             if i != DROP]
    beats = sorted([*beats, (false_at, "S")])
    rows = []
    for k, (s, lab) in enumerate(beats):
        e = {"type": "beat", "time": round(s / rec.fs, 3), "sample": s, "class": lab,
             "probabilities": {c: (0.9 if c == lab else 0.025) for c in CLASSES},
             "seq": k + 1, "run": "r1"}
        if quality:
            e["quality"] = "doubtful" if s == ref[DOUBT] else "good"
        rows.append(e)
    if quality:
        rows.append({"type": "status", "status": "unreadable", "start": UNREADABLE_S[0],
                     "end": UNREADABLE_S[1], "time": UNREADABLE_S[1], "run": "r1"})
        rows.append({"type": "status", "status": "doubtful", "time": 60.0, "start": 50.0,
                     "end": 60.0, "start_sample": int(50 * rec.fs),
                     "end_sample": int(60 * rec.fs), "reason": "noise", "run": "r1"})
        rows.append({"type": "status", "status": "unreadable", "start": 1.0, "end": 2.0,
                     "run": "another"})  # another run's: not this page's
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"rec": rec, "ref": ref, "cls": cls, "n_beats": len(beats), "false_at": false_at,
            "reclass": (CLASSES[cls[RECLASS]], labels[RECLASS])}


@pytest.fixture(scope="module")
def page(synth_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("review")
    events = d / "events.jsonl"
    expected = _events(synth_dir / "s000", events)
    out = d / "review.html"
    res = CliRunner().invoke(main, ["device", "review", str(events), "--record",
                                    str(synth_dir / "s000"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "1 missed, 1 false, 1 misclassified" in res.output
    return out, expected


def test_page_is_self_contained(page):
    out, _ = page
    html = out.read_text()
    assert not re.search(r"""(src|href|url)\s*[=(]\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<link" not in html and not re.search(r"<script[^>]+src=", html)
    assert "<canvas" in html


def test_page_data_holds_the_known_mistakes(page):
    out, x = page
    data = review_data(out.read_text())
    rec, ref, cls = x["rec"], x["ref"], x["cls"]
    assert len(data["beats"]["sample"]) == x["n_beats"] == len(ref)  # one dropped, one added
    assert len(data["reference"]["sample"]) == len(ref)
    kinds = [e["kind"] for e in data["errors"]]
    assert sorted(kinds) == ["class", "false", "missed"]
    by = {e["kind"]: e for e in data["errors"]}
    assert by["missed"]["sample"] == ref[DROP] and by["missed"]["expected"] == CLASSES[cls[DROP]]
    assert by["false"]["sample"] == x["false_at"] and by["false"]["got"] == "S"
    assert (by["class"]["expected"], by["class"]["got"]) == x["reclass"]
    assert [e["sample"] for e in data["errors"]] == sorted(e["sample"] for e in data["errors"])
    s = data["summary"]
    n = len(ref)
    assert (s["matched"], s["missed"], s["false"], s["class"]) == (n - 1, 1, 1, 1)
    assert s["sensitivity"] == pytest.approx((n - 1) / n)
    assert s["ppv"] == pytest.approx((n - 1) / n)
    conf = np.asarray(s["confusion"])
    assert conf.sum() == n - 1 and conf.sum() - np.trace(conf) == 1
    # quality and the unreadable segment of this run (not the other run's)
    assert s["doubtful"] == 1 and data["beats"]["quality"].count("doubtful") == 1
    a, b = int(UNREADABLE_S[0] * rec.fs), int(UNREADABLE_S[1] * rec.fs)
    assert data["unreadable"] == [[a, b]]
    assert data["doubtful"] == [[int(50 * rec.fs), int(60 * rec.fs)]]
    outside = int(((ref < a) | (ref >= b)).sum())
    assert s["sensitivity_readable"] == pytest.approx((outside - 1) / outside)
    # the ECG travels as int16 at the record's rate, within 1 µV of the signal
    sig = data["signal"]
    q = np.frombuffer(base64.b64decode(sig["b64"]), "<i2")
    assert len(q) == len(rec.signal) and data["fs"] == rec.fs
    assert np.max(np.abs(q * sig["step_mv"] - rec.signal)) <= sig["step_mv"] / 2 + 1e-9


def test_review_and_score_read_the_same_flagged_stretches(page, synth_dir):
    """One reader of the gate's status events: ``device score`` counts the unreadable
    stretch that carries only seconds (it used to read ``start_sample`` alone, and
    reported none of it while the page shaded it), and its flagged time is the page's."""
    from vitaledge.device.eval.score_events import load_events, quality_segments, score_gated

    out, x = page
    data = review_data(out.read_text())
    events = out.parent / "events.jsonl"
    g = score_gated(load_events(events), quality_segments(events), synth_dir / "s000")
    n = len(x["rec"].signal)
    for st in ("unreadable", "doubtful"):
        assert g[f"{st}_fraction"] * n == pytest.approx(sum(b - a for a, b in data[st]))
    assert g["unreadable_fraction"] > 0 and g["quality_segments"] == 2
    # outside both stretches: every beat but the dropped one found, the false one counted
    ref, rec = x["ref"], x["rec"]
    flagged = [[int(UNREADABLE_S[0] * rec.fs), int(UNREADABLE_S[1] * rec.fs)],
               [int(50 * rec.fs), int(60 * rec.fs)]]
    kept = sum(not any(a <= r < b for a, b in flagged) for r in ref)
    o = g["outside_flagged"]
    assert (o["tp"], o["fn"], o["fp"]) == (kept - 1, 1, 1)


def test_device_score_prints_and_saves_the_flagged_stretches(page, synth_dir, tmp_path):
    """The command itself, on a gated run with an unreadable 4 s and a doubtful 10 s: the
    printed line and the JSON's signal_quality carry the flagged time and the figures
    outside it (the dropped beat missed, the false one extra, the doubtful beat counted)."""
    out, x = page
    n, fs = len(x["rec"].signal), x["rec"].fs
    flagged = [(UNREADABLE_S[0], UNREADABLE_S[1]), (50.0, 60.0)]
    kept = sum(not any(a * fs <= r < b * fs for a, b in flagged) for r in x["ref"])
    js = tmp_path / "score.json"
    r = CliRunner().invoke(main, ["device", "score", str(out.parent / "events.jsonl"),
                                  "--record", str(synth_dir / "s000"), "--json", str(js)])
    assert r.exit_code == 0, r.output
    share = f"{100 * (kept - 1) / kept:.2f}%"
    assert (f"signal quality: {100 * 14 * fs / n:.1f}% of the record flagged "
            f"({100 * 4 * fs / n:.1f}% unreadable, no beats; {100 * 10 * fs / n:.1f}% "
            f"doubtful, 1 beat flagged); outside it: Se {share}, +P {share} "
            f"(1 missed, 1 extra)") in r.output
    q = json.loads(js.read_text())["signal_quality"]
    assert q["quality_segments"] == 2 and q["doubtful_beats"] == 1
    assert q["unreadable_fraction"] == pytest.approx(4 * fs / n, abs=1 / n)
    assert q["flagged_fraction"] == pytest.approx(14 * fs / n, abs=2 / n)
    o = q["outside_flagged"]
    assert (o["tp"], o["fn"], o["fp"]) == (kept - 1, 1, 1)


def test_the_page_goes_into_a_folder_made_for_it_as_json_does(page, synth_dir, tmp_path):
    """--out in a folder not there yet: device score --json and bench --json made theirs,
    device review refused; it makes it too, once the page is ready (not for bad input)."""
    out, _ = page
    events = out.parent / "events.jsonl"
    target = tmp_path / "new" / "deeper" / "p.html"
    r = CliRunner().invoke(main, ["device", "review", str(events), "--record",
                                  str(synth_dir / "s000"), "--out", str(target)])
    assert r.exit_code == 0 and target.is_file(), r.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text("garbage\n")
    r = CliRunner().invoke(main, ["device", "review", str(bad), "--record",
                                  str(synth_dir / "s000"), "--out", str(tmp_path / "x" / "p.html")])
    assert r.exit_code == 1 and not (tmp_path / "x").exists(), r.output


def test_events_of_another_record_get_the_same_note_as_in_device_score(page, synth_dir,
                                                                       tmp_path):
    """The page of s000's events drawn on s001 said Se 3 % and nothing else; device score
    asked whether they were that record's events, and now both ask."""
    out, _ = page
    events = out.parent / "events.jsonl"
    note = "are these events of record s001?"
    r = CliRunner().invoke(main, ["device", "review", str(events), "--record",
                                  str(synth_dir / "s001"), "--out", str(tmp_path / "o.html")])
    assert r.exit_code == 0 and note in r.output, r.output
    r = CliRunner().invoke(main, ["device", "score", str(events), "--record",
                                  str(synth_dir / "s001")])
    assert r.exit_code == 0 and note in r.output, r.output
    r = CliRunner().invoke(main, ["device", "review", str(events), "--record",
                                  str(synth_dir / "s000"), "--out", str(tmp_path / "p.html")])
    assert r.exit_code == 0 and "are these events" not in r.output, r.output


def test_beats_inside_reference_marked_vf_are_not_scored_as_in_device_score(mitdb_dir):
    """On 207 the page called the 306 events inside its flutter episodes false (+P 85.78 %
    against device score's 99.89 % on the same events): EC57 scores neither side there."""
    from vitaledge.device.eval.score_events import score_events
    from vitaledge.device.io.aami import vf_episodes

    rec = read_record(mitdb_dir / "207")
    ref, cls = map_annotations(rec.ann_samples, rec.ann_symbols)
    [(a, b), *_] = vf_episodes(rec.ann_samples, rec.ann_symbols)
    in_vf = list(range(a + 50, min(b, len(rec.signal)) - 50, int(0.3 * rec.fs)))
    gaps = np.flatnonzero(np.diff(ref) > 0.6 * rec.fs)
    false_at = int((ref[gaps[3]] + ref[gaps[3] + 1]) // 2)
    assert not any(a <= false_at < b for a, b in vf_episodes(rec.ann_samples,
                                                              rec.ann_symbols))
    beats = sorted([(int(s), CLASSES[c]) for s, c in zip(ref, cls, strict=True)]
                   + [(s, "V") for s in in_vf] + [(false_at, "N")])
    events = [{"type": "beat", "time": s / rec.fs, "sample": s, "class": c, "seq": k + 1,
               "run": "r"} for k, (s, c) in enumerate(beats)]
    s = build_review(events, rec)["summary"]
    assert s["events_in_vf"] == len(in_vf) > 10 and s["false"] == 1 and s["missed"] == 0
    sc = score_events(events, mitdb_dir / "207")
    assert sc["events_in_vf"] == len(in_vf) and sc["extra"] == 1
    assert s["ppv"] == pytest.approx(sc["ppv"]) and s["sensitivity"] == pytest.approx(
        sc["sensitivity"])


def test_without_quality_or_reference(synth_dir, tmp_path):
    """Events without quality fields and a record without .atr: beats only, no errors."""
    for ext in ("hea", "dat"):
        shutil.copy(synth_dir / f"s001.{ext}", tmp_path / f"s001.{ext}")
    _events(synth_dir / "s001", tmp_path / "ev.jsonl", quality=False)
    beats, status, run = read_run(tmp_path / "ev.jsonl")
    assert run == "r1" and status == []
    data = build_review(beats, read_record(tmp_path / "s001"), status)
    s = data["summary"]
    assert not s["has_reference"] and not s["has_quality"] and data["errors"] == []
    assert s["sensitivity"] is None and data["unreadable"] == data["doubtful"] == []
    assert len(data["beats"]["sample"]) == len(beats)
    res = CliRunner().invoke(main, ["device", "review", str(tmp_path / "ev.jsonl"),
                                    "--record", str(tmp_path / "s001"),
                                    "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 0 and "nothing to score" in res.output, res.output


def test_errors_are_one_line_and_keep_the_old_page(synth_dir, tmp_path):
    out = tmp_path / "review.html"
    out.write_text("old page")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\nnor this\n")
    good = tmp_path / "ev.jsonl"
    _events(synth_dir / "s000", good)
    cases = [
        ([str(good), "--record", str(tmp_path / "nope")], "nope.hea: no such WFDB header"),
        ([str(bad), "--record", str(synth_dir / "s000")], "not a JSON Lines events file"),
        ([str(good), "--record", str(synth_dir / "s000"), "--run", "zz"], "no run 'zz'"),
    ]
    for args, msg in cases:
        res = CliRunner().invoke(main, ["device", "review", *args, "--out", str(out)])
        assert res.exit_code != 0, res.output
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and msg in lines[0], res.output
    assert out.read_text() == "old page"
    # beats of another record: samples beyond this one's end
    far = tmp_path / "far.jsonl"
    far.write_text(json.dumps({"type": "beat", "sample": 10**9, "class": "N", "seq": 7}) + "\n")
    res = CliRunner().invoke(main, ["device", "review", str(far), "--record",
                                    str(synth_dir / "s000"), "--out", str(out)])
    assert res.exit_code != 0 and "seq 7: sample 1000000000 is outside" in res.output
    # a beat without its class, or unclassified beside classified ones, is not a page
    beat = {"type": "beat", "sample": 500, "seq": 3}
    for rows, msg in [([beat], "seq 3: needs an integer 'sample' and a 'class'"),
                      ([{**beat, "class": None, "probabilities": {"N": 1.0}},
                        {**beat, "sample": 900, "class": "N", "seq": 4}],
                       "seq 3: class null beside 1 classified beats")]:
        odd = tmp_path / "odd.jsonl"
        odd.write_text("".join(json.dumps(r) + "\n" for r in rows))
        res = CliRunner().invoke(main, ["device", "review", str(odd), "--record",
                                        str(synth_dir / "s000"), "--out", str(out)])
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert res.exit_code != 0 and len(lines) == 1 and msg in lines[0], res.output
        assert lines[0].startswith(f"Error: {odd}: "), res.output  # the file, not only seq
    assert out.read_text() == "old page"


def test_out_that_is_a_link_or_a_device_is_refused_and_left_alone(synth_dir, tmp_path):
    """The page replaces --out atomically; a symlink or a device file there would have been
    replaced by the page (as root, /dev/full became an HTML file)."""
    good = tmp_path / "ev.jsonl"
    _events(synth_dir / "s000", good)
    target = tmp_path / "target.html"
    target.write_text("kept")
    link = tmp_path / "link.html"
    link.symlink_to(target)
    fifo = tmp_path / "fifo.html"
    os.mkfifo(fifo)
    for out in (link, fifo):
        res = CliRunner().invoke(main, ["device", "review", str(good), "--record",
                                        str(synth_dir / "s000"), "--out", str(out)])
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert res.exit_code != 0 and len(lines) == 1, res.output
        assert f"cannot write {out}" in lines[0], res.output
    assert link.is_symlink() and target.read_text() == "kept"
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_page_renders_in_chromium(page, tmp_path):
    exe = chromium()
    if exe is None:
        unavailable("chromium not installed (make test installs Debian's chromium when run "
                    "as root with apt available): the page was not opened in a browser")
    out, x = page
    url = out.resolve().as_uri()
    # virtual time: the page's drawing is done when the DOM is dumped, however loaded
    dom = run_chromium(exe, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom",
                       url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    m = re.search(r'<canvas id="strip"[^>]*>', html)
    assert m, html[:2000]
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', m.group(0)))
    assert int(attrs.get("data-drawn", 0)) >= 1, m.group(0)
    assert int(attrs.get("data-beats-drawn", 0)) > 5  # the first 10 s hold ~10 beats
    assert 'data-ready="1"' in html
    assert len(re.findall(r'<li class="error-item ', html)) == 3
    # each entry reads as what went wrong, where: the time, the kind, then the sentence
    items = {kind: re.sub(r"<[^>]+>", "|", body) for kind, body in
             re.findall(r'<li class="error-item (\w+)"[^>]*>(.*?)</li>', html)}
    fs, ref, cls = x["rec"].fs, x["ref"], x["cls"]
    t = ref[DROP] / fs
    assert items["missed"].startswith(
        f"|{int(t // 60)}:{t % 60:05.2f}||missed|reference {CLASSES[cls[DROP]]} beat not "
        "detected"), items
    assert "|false beat|detected S beat, no reference beat" in items["false"], items
    expected, got = x["reclass"]
    assert f"|class|detected {got}, reference {expected}" in items["class"], items
    # the ECG itself is on the strip: its near-black trace runs across the width and rises
    # and falls with the QRS complexes (a trace never stroked, or a flat one, fails here)
    inked = tmp_path / "inked.html"
    inked.write_text(out.read_text().replace("</body>", _INK))
    dom = run_chromium(exe, tmp_path / "profile3", "--virtual-time-budget=5000", "--dump-dom",
                       inked.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    m = re.search(r'data-ink="(\d+):(\d+):(\d+)"', dom.stdout)
    assert m, dom.stderr[-2000:]
    cols, width, tall = map(int, m.groups())
    assert cols >= 0.9 * width, (cols, width)
    assert tall >= 10, tall  # the first 10 s hold ~10 beats
    # opened at an error (#error=1): the strip is drawn around it
    shot = tmp_path / "review.png"
    res = run_chromium(exe, tmp_path / "profile2", "--virtual-time-budget=5000",
                       f"--screenshot={shot}", url + "#error=1")
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


#: Put into a copy of the page: once the strip is drawn, how many of its columns (all but
#: the 20 px of the 1-mV scale bar at the right) hold near-black trace pixels, and how many
#: hold a run of them at least 20 px tall (a QRS drawn; letters are under 13 px), as
#: "columns:width:tall" on the body. The page opens on 10 s (3,600 samples on about 1,150
#: px), which it draws as a min-max stroke per pixel column: every column is inked.
_INK = """<script>
(function () {
  const strip = document.getElementById("strip");
  function measure() {
    if (!(+strip.dataset.drawn >= 1)) { setTimeout(measure, 50); return; }
    const w = strip.width, h = strip.height, px = strip.getContext("2d")
      .getImageData(0, 0, w, h).data;
    let cols = 0, tall = 0;
    for (let x = 0; x < w - 20; x++) {
      let run = 0, best = 0;
      for (let y = 0; y < h; y++) {
        const i = 4 * (y * w + x);
        run = px[i + 3] > 200 && Math.max(px[i], px[i + 1], px[i + 2]) < 40 ? run + 1 : 0;
        best = Math.max(best, run);
      }
      if (best > 0) cols++;
      if (best >= 20) tall++;
    }
    document.body.setAttribute("data-ink", [cols, w - 20, tall].join(":"));
  }
  setTimeout(measure, 100);
})();
</script></body>"""


#: Driven into a copy of the page: wheel, keys, a click on the error list, "All"; each
#: step logs the strip's view (first:last sample) once drawn.
_DRIVE = """<script>
(function () {
  const strip = document.getElementById("strip"), log = [];
  const steps = [
    function () { strip.dispatchEvent(new WheelEvent("wheel", {deltaY: -500, clientX: 600,
                                      clientY: 400, bubbles: true, cancelable: true})); },
    function () { document.dispatchEvent(new KeyboardEvent("keydown", {key: "ArrowRight"})); },
    function () { document.dispatchEvent(new KeyboardEvent("keydown", {key: "n"})); },
    function () { document.querySelectorAll("li.error-item")[2].click(); },
    function () { document.getElementById("b-all").click(); },
  ];
  function next(i) {
    log.push(strip.dataset.view);
    if (i === steps.length) { document.body.setAttribute("data-log", log.join(" ")); return; }
    steps[i]();
    setTimeout(function () { next(i + 1); }, 300);
  }
  setTimeout(function () { next(0); }, 100);
})();
</script></body>"""


def test_page_zooms_pans_and_jumps_to_errors(page, tmp_path):
    exe = chromium()
    if exe is None:
        unavailable("chromium not installed: the page's interaction was not tried")
    out, x = page
    data = review_data(out.read_text())
    driven = tmp_path / "driven.html"
    driven.write_text(out.read_text().replace("</body>", _DRIVE))
    dom = run_chromium(exe, tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom",
                       driven.as_uri())
    m = re.search(r'data-log="([^"]*)"', dom.stdout)
    assert m, dom.stderr[-2000:]
    views = [tuple(map(int, v.split(":"))) for v in m.group(1).split()]
    fs, n = data["fs"], len(x["rec"].signal)
    (a0, b0), (a1, b1), (a2, b2), (a3, b3), (a4, b4), (a5, b5) = views
    assert (a0, b0) == (0, round(10 * fs))                   # opens on the first 10 s
    assert b1 - a1 < (b0 - a0) * 0.7                         # the wheel zoomed in
    assert a2 - a1 == pytest.approx((b1 - a1) / 4, abs=2)    # -> pans a quarter screen
    errors = [e["sample"] for e in data["errors"]]
    first_after = min(s for s in errors if s > (a2 + b2) / 2)
    assert (a3 + b3) / 2 == pytest.approx(first_after, abs=2)  # n: the next error, centred
    assert (a4 + b4) / 2 == pytest.approx(errors[2], abs=2)    # a click on the list
    assert (a5, b5) == (0, n)                                  # All
