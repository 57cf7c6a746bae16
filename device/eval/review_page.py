"""The review page itself: one self-contained HTML file (no network, no external scripts)
that draws the ECG strip and the beats :func:`~.review.build_review` gathered.

The ECG travels inside the page as int16 at the record's rate (base64) and is drawn on a
``<canvas>`` by the page's own script; the beats, errors and summary are a JSON block the
script reads (and tests can read too).
"""

from __future__ import annotations

import base64
import html
import json

import numpy as np


def encode_signal(signal: np.ndarray, fs: float) -> dict:
    """The ECG as little-endian int16 in base64: 1 µV steps (coarser only beyond ±32 mV),
    and its typical beat height (median peak-to-peak of 2 s blocks) for the page's gain."""
    sig = np.asarray(signal, np.float64)
    peak = float(np.max(np.abs(sig))) if len(sig) else 0.0
    step = max(0.001, peak / 32000.0)
    q = np.clip(np.round(sig / step), -32768, 32767).astype("<i2")
    n_block = max(1, int(len(sig) // max(1, int(2 * fs))))
    blocks = sig[: n_block * (len(sig) // n_block)].reshape(n_block, -1) if len(sig) else None
    ptp = float(np.median(np.ptp(blocks, axis=1))) if blocks is not None else 1.0
    return {"b64": base64.b64encode(q.tobytes()).decode("ascii"), "step_mv": step,
            "n": int(len(q)), "typical_ptp_mv": ptp if ptp > 0 else 1.0}


def render_html(review: dict) -> str:
    """The review page: the template with ``review`` embedded as JSON (escaped so that no
    text in it can close the script element)."""
    data = (json.dumps(review, separators=(",", ":"), allow_nan=False)
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))
    title = f"Beat review: record {review['record']}"
    return (_TEMPLATE.replace("__TITLE__", html.escape(title))
            .replace("__DATA__", data))


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
:root { --fg: #1d1d1f; --muted: #6b6b70; --line: #d9d9de; --bg: #fafafa;
        --missed: #d0021b; --false: #e68a00; --class: #7b3fbf; }
* { box-sizing: border-box; }
body { margin: 0; font: 13px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif;
       color: var(--fg); background: var(--bg); }
header { padding: 10px 16px 6px; }
h1 { font-size: 17px; margin: 0 0 2px; }
.sub { color: var(--muted); }
.cards { display: flex; flex-wrap: wrap; gap: 8px; padding: 4px 16px 8px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 6px;
        padding: 4px 10px; min-width: 84px; }
.card b { display: block; font-size: 16px; }
.card span { color: var(--muted); font-size: 11px; }
.card.missed b { color: var(--missed); } .card.false b { color: var(--false); }
.card.class b { color: var(--class); }
.toolbar { display: flex; flex-wrap: wrap; align-items: center; gap: 4px; padding: 4px 16px; }
.toolbar button { font: inherit; padding: 2px 9px; border: 1px solid #bbb; border-radius: 4px;
                  background: #fff; cursor: pointer; }
.toolbar button:hover { background: #eef; }
.toolbar .sep { width: 10px; }
#view { color: var(--muted); margin-left: 8px; font-variant-numeric: tabular-nums; }
.strip-wrap { padding: 0 16px; }
canvas { display: block; width: 100%; background: #fff; border: 1px solid var(--line); }
#strip { height: 360px; cursor: grab; }
#strip.dragging { cursor: grabbing; }
#overview { height: 56px; margin-top: 4px; cursor: pointer; }
#info { min-height: 20px; padding: 2px 16px; color: var(--muted);
        font-variant-numeric: tabular-nums; }
.bottom { display: grid; grid-template-columns: minmax(320px, 1fr) minmax(300px, 1fr);
          gap: 16px; padding: 4px 16px 16px; }
h2 { font-size: 14px; margin: 6px 0; }
.filters label { margin-right: 10px; white-space: nowrap; }
#errors { position: relative; list-style: none; margin: 4px 0 0; padding: 0;
          max-height: 300px; overflow: auto;
          border: 1px solid var(--line); background: #fff; border-radius: 4px; }
#errors li { padding: 2px 8px; cursor: pointer; border-bottom: 1px solid #f0f0f0;
             font-variant-numeric: tabular-nums; white-space: nowrap; }
#errors li:hover { background: #f3f3ff; }
#errors li.active { background: #fff3b0; }
#errors li .k { display: inline-block; width: 86px; font-weight: 600; }
#errors li.missed .k { color: var(--missed); } #errors li.false .k { color: var(--false); }
#errors li.class .k { color: var(--class); }
#errors li .t { display: inline-block; width: 84px; color: var(--muted); }
.note { color: var(--muted); }
table.conf { border-collapse: collapse; background: #fff; font-variant-numeric: tabular-nums; }
table.conf th, table.conf td { border: 1px solid var(--line); padding: 2px 8px;
                               text-align: right; }
table.conf td.diag { background: #e8f5e9; } table.conf td.off { background: #fdecea; }
.legend { margin-top: 10px; color: var(--muted); }
.legend i { font-style: normal; font-weight: 700; }
kbd { border: 1px solid #bbb; border-radius: 3px; padding: 0 4px; background: #fff;
      font-size: 11px; }
</style>
</head>
<body>
<header><h1 id="title"></h1><div class="sub" id="subtitle"></div></header>
<div class="cards" id="cards"></div>
<div class="toolbar">
  <button id="b-start" title="Start (Home)">start</button>
  <button id="b-back" title="Back one screen (Shift+&larr;)">&laquo;</button>
  <button id="b-left" title="Back a quarter screen (&larr;)">&lsaquo;</button>
  <button id="b-right" title="Forward a quarter screen (&rarr;)">&rsaquo;</button>
  <button id="b-fwd" title="Forward one screen (Shift+&rarr;)">&raquo;</button>
  <button id="b-end" title="End (End)">end</button>
  <span class="sep"></span>
  <button id="b-in" title="Zoom in (+ or mouse wheel)">+</button>
  <button id="b-out" title="Zoom out (&minus;)">&minus;</button>
  <button id="b-10s" title="10 seconds (1)">10 s</button>
  <button id="b-all" title="Whole record (0)">All</button>
  <span class="sep"></span>
  <button id="b-gain-up" title="More gain (&uarr;)">gain +</button>
  <button id="b-gain-down" title="Less gain (&darr;)">gain &minus;</button>
  <span class="sep"></span>
  <button id="b-prev" title="Previous error (p)">&lsaquo; error</button>
  <button id="b-next" title="Next error (n)">error &rsaquo;</button>
  <span id="view"></span>
</div>
<div class="strip-wrap">
  <canvas id="strip"></canvas>
  <canvas id="overview"></canvas>
</div>
<div id="info">Wheel: zoom &middot; drag or Shift+wheel: pan &middot; <kbd>&larr;</kbd>
<kbd>&rarr;</kbd> pan &middot; <kbd>+</kbd> <kbd>&minus;</kbd> zoom &middot; <kbd>n</kbd>
<kbd>p</kbd> next/previous error &middot; <kbd>&uarr;</kbd> <kbd>&darr;</kbd> gain</div>
<div class="bottom">
  <section>
    <h2 id="errors-title">Errors</h2>
    <div class="filters" id="filters"></div>
    <ul id="errors"></ul>
    <p class="note" id="errors-note"></p>
  </section>
  <section>
    <h2>Class confusion of matched beats</h2>
    <div id="confusion"></div>
    <div class="legend" id="legend"></div>
  </section>
</div>
<script type="application/json" id="review-data">__DATA__</script>
<script>
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("review-data").textContent);
  const S = D.summary, FS = D.fs, CL = S.classes;
  const CLASS_COLOR = {N: "#333", S: "#1f6fd1", V: "#d62728", F: "#e07b00", Q: "#8e44ad"};
  const KIND = {missed: {label: "missed", color: "#d0021b"},
                false: {label: "false beat", color: "#e68a00"},
                class: {label: "class", color: "#7b3fbf"}};

  // -- the signal: int16 little-endian, base64 -------------------------------------------
  const N = D.signal.n, STEP = D.signal.step_mv;
  const sig = (function () {
    const bin = atob(D.signal.b64), out = new Int16Array(N);
    for (let i = 0; i < N; i++) {
      const v = bin.charCodeAt(2 * i) | (bin.charCodeAt(2 * i + 1) << 8);
      out[i] = v > 32767 ? v - 65536 : v;
    }
    return out;
  })();
  const B = D.beats, R = D.reference, E = D.errors, U = D.unreadable, DS = D.doubtful;

  // -- formatting -------------------------------------------------------------------------
  function fmtTime(sec, digits) {
    const d = digits === undefined ? 2 : digits, neg = sec < 0;
    sec = Math.abs(sec);
    const h = Math.floor(sec / 3600), m = Math.floor((sec % 3600) / 60), s = sec % 60;
    const ss = s.toFixed(d).padStart(d ? 3 + d : 2, "0");
    return (neg ? "-" : "") + (h ? h + ":" + String(m).padStart(2, "0") : String(m)) + ":" + ss;
  }
  function pct(x) { return x === null || x === undefined ? "n/a" : (100 * x).toFixed(2) + "%"; }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // -- header, cards, confusion, legend --------------------------------------------------
  document.getElementById("title").textContent =
    "Beat review: record " + D.record + " (" + D.lead + ", " + FS + " Hz, " +
    fmtTime(N / FS, 0) + ")";
  document.getElementById("subtitle").textContent =
    "events " + (D.source || "?") + (D.run ? ", run " + D.run : "") +
    (S.has_reference ? " \u00b7 EC57 matching within " + S.tolerance_ms + " ms"
     : " \u00b7 no reference annotations (.atr): beats as detected, nothing scored");
  const cards = document.getElementById("cards");
  function card(value, label, cls) {
    const c = el("div", {class: "card" + (cls ? " " + cls : "")});
    c.appendChild(el("b", {}, String(value))); c.appendChild(el("span", {}, label));
    cards.appendChild(c);
  }
  card(S.beats, "detected beats");
  if (S.has_reference) {
    card(S.reference_beats, "reference beats");
    card(pct(S.sensitivity), "sensitivity (Se)");
    card(pct(S.ppv), "positive predictivity (+P)");
    card(S.missed, "missed beats", "missed");
    card(S.false, "false beats", "false");
    if (!S.beats || S.unclassified < S.beats) card(S.class, "misclassified", "class");
  }
  if (S.has_quality) {
    card(S.doubtful, "doubtful beats" +
         (S.has_reference ? " (" + S.errors_on_doubtful + " errors)" : ""));
  }
  if (S.sensitivity_readable !== null) card(pct(S.sensitivity_readable), "Se outside unreadable");
  if (S.events_in_vf) card(S.events_in_vf, "beats inside reference-marked VF (" + S.vf_s +
                           " s), not scored (EC57)");
  if (U.length) {
    card(S.unreadable_s + " s", "unreadable (" + U.length +
         (U.length === 1 ? " segment" : " segments") +
         (S.has_reference ? ", " + S.errors_in_unreadable + " errors)" : ")"));
  }
  if (S.unclassified) card(S.unclassified, "beats not classified (detection only)");
  if (!S.beats || S.unclassified < S.beats) {
    for (const c of CL) card(S.beats_per_class[c], c + " beats");
  }

  const conf = document.getElementById("confusion");
  if (S.beats && S.unclassified === S.beats) {
    conf.appendChild(el("p", {class: "note"}, "Detection only: no beat was classified."));
  } else if (S.has_reference) {
    const t = el("table", {class: "conf"}), hr = el("tr");
    hr.appendChild(el("th", {}, "ref \u2193 / detected \u2192"));
    for (const c of CL) hr.appendChild(el("th", {}, c));
    t.appendChild(hr);
    S.confusion.forEach(function (row, i) {
      const tr = el("tr"); tr.appendChild(el("th", {}, CL[i]));
      row.forEach(function (v, j) {
        tr.appendChild(el("td", {class: i === j ? "diag" : (v ? "off" : "")}, String(v)));
      });
      t.appendChild(tr);
    });
    conf.appendChild(t);
  } else {
    conf.appendChild(el("p", {class: "note"}, "No reference annotations: nothing to compare."));
  }
  const legend = document.getElementById("legend");
  legend.innerHTML = "Top lane: detected beats by class " +
    CL.map(function (c) {
      return '<i style="color:' + CLASS_COLOR[c] + '">' + c + "</i>";
    }).join(" ") +
    (S.unclassified ? " (<i>&bull;</i> detected, not classified)" : "") +
    " (<i>?</i> doubtful quality); bottom lane: reference annotations. " +
    "Amber: doubtful signal; grey hatching: unreadable (no beats classified). " +
    '<i style="color:#d0021b">&#9650;</i> missed beat, ' +
    '<i style="color:#e68a00">&#9633;</i> false beat, ' +
    '<i style="color:#7b3fbf">X&#8800;Y</i> misclassified (detected&#8800;reference); ' +
    "Grid: 0.2 s &times; 0.5 mV (0.04 s &times; 0.1 mV minor).";

  // -- error list ------------------------------------------------------------------------
  const list = document.getElementById("errors"), shown = {missed: true, false: true, class: true};
  const items = [];
  function errorText(e) {
    if (e.kind === "missed") return "reference " + e.expected + " beat not detected";
    if (e.kind === "false") return "detected " + (e.got ? e.got + " " : "") +
      "beat, no reference beat";
    return "detected " + e.got + ", reference " + e.expected;
  }
  E.forEach(function (e, i) {
    const li = el("li", {class: "error-item " + e.kind, "data-i": String(i),
                         "data-sample": String(e.sample)});
    li.appendChild(el("span", {class: "t"}, fmtTime(e.sample / FS)));
    li.appendChild(el("span", {class: "k"}, KIND[e.kind].label));
    li.appendChild(document.createTextNode(errorText(e) + (e.doubtful ? " (doubtful)" : "") +
                                           (e.unreadable ? " (unreadable segment)" : "")));
    li.addEventListener("click", function () { goToError(i); });
    list.appendChild(li); items.push(li);
  });
  document.getElementById("errors-title").textContent =
    S.has_reference ? "Errors (" + E.length + ")" : "Errors";
  document.getElementById("errors-note").textContent = !S.has_reference
    ? "No reference annotations (.atr) for this record: nothing to compare against."
    : (E.length ? "Click an error to show it on the strip."
       : "No errors: every beat matched with the right class.");
  const filters = document.getElementById("filters");
  if (S.has_reference) {
    for (const k of ["missed", "false", "class"]) {
      const lab = el("label"), cb = el("input", {type: "checkbox"});
      cb.checked = true;
      cb.addEventListener("change", function () {
        shown[k] = cb.checked;
        items.forEach(function (li, i) { li.style.display = shown[E[i].kind] ? "" : "none"; });
      });
      lab.appendChild(cb);
      lab.appendChild(document.createTextNode(" " + KIND[k].label + " (" + S[k] + ")"));
      filters.appendChild(lab);
    }
  }

  // -- view state ------------------------------------------------------------------------
  const strip = document.getElementById("strip"), over = document.getElementById("overview");
  const MIN_SPAN = Math.max(8, Math.round(0.5 * FS));
  let span = Math.min(N, Math.round(10 * FS)), t0 = 0, gain = 1, current = -1, draws = 0;
  function clampView() {
    span = Math.max(Math.min(MIN_SPAN, N), Math.min(N, Math.round(span)));
    t0 = Math.max(0, Math.min(N - span, Math.round(t0)));
  }
  function setView(start, width) { t0 = start; span = width; clampView(); schedule(); }
  function zoom(factor, anchorFrac) {
    const a = anchorFrac === undefined ? 0.5 : anchorFrac, at = t0 + a * span;
    span = span * factor; clampView(); t0 = at - a * span; clampView(); schedule();
  }
  function pan(frac) { t0 += frac * span; clampView(); schedule(); }
  function goToError(i) {
    if (i < 0 || i >= E.length) return;
    current = i;
    if (span > 30 * FS || span < 2 * FS) span = Math.round(8 * FS);
    t0 = E[i].sample - span / 2; clampView();
    items.forEach(function (li) { li.classList.remove("active"); });
    items[i].classList.add("active");
    const li = items[i];  // scroll the list only, never the page
    if (li.offsetTop < list.scrollTop ||
        li.offsetTop + li.offsetHeight > list.scrollTop + list.clientHeight) {
      list.scrollTop = li.offsetTop - list.clientHeight / 2;
    }
    schedule();
  }
  function stepError(dir) {
    if (!E.length) return;
    let i = current;
    if (i < 0) {  // none chosen yet: the first error after (or before) the view's centre
      const mid = t0 + span / 2;
      for (let k = 0; k < E.length; k++) if (E[k].sample < mid) i = k;
      if (dir < 0) i += 1;
    }
    for (let k = i + dir; k >= 0 && k < E.length; k += dir) {
      if (shown[E[k].kind]) { goToError(k); return; }
    }
  }

  // -- drawing ---------------------------------------------------------------------------
  let pending = false;
  function schedule() {  // one draw per frame; the timer when frames are throttled
    if (pending) return;
    pending = true;
    const run = function () { if (pending) { pending = false; draw(); } };
    requestAnimationFrame(run);
    setTimeout(run, 100);
  }
  function fit(canvas) {
    const dpr = window.devicePixelRatio || 1, w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    return {ctx: ctx, w: w, h: h};
  }
  function lowerBound(arr, v) {
    let lo = 0, hi = arr.length;
    while (lo < hi) { const m = (lo + hi) >> 1; if (arr[m] < v) lo = m + 1; else hi = m; }
    return lo;
  }
  function medianOf(a, b) {
    const n = b - a; if (n <= 0) return 0;
    const k = Math.max(1, Math.floor(n / 2000)), vals = [];
    for (let i = a; i < b; i += k) vals.push(sig[i]);
    vals.sort(function (x, y) { return x - y; });
    return vals[vals.length >> 1];
  }
  const LANE_TOP = 34, LANE_BOTTOM = 34, AXIS = 18;
  let geo = null;  // what the last draw used: for hit testing

  function draw() {
    const f = fit(strip), ctx = f.ctx, W = f.w, H = f.h;
    const top = LANE_TOP, bottom = H - LANE_BOTTOM - AXIS, th = bottom - top;
    const pxPerSample = W / span, x = function (s) { return (s - t0) * pxPerSample; };
    const pxPerMv = gain * 0.4 * th / D.signal.typical_ptp_mv;
    const base = medianOf(t0, t0 + span);
    const yOf = function (v) { return top + 0.62 * th - (v - base) * STEP * pxPerMv; };
    geo = {W: W, x: x, pxPerSample: pxPerSample};
    ctx.clearRect(0, 0, W, H);

    // ECG paper
    const pxPerSec = pxPerSample * FS;
    function vgrid(stepS, color) {
      const first = Math.ceil(t0 / FS / stepS) * stepS;
      ctx.strokeStyle = color; ctx.lineWidth = 1; ctx.beginPath();
      for (let t = first; t * FS <= t0 + span; t += stepS) {
        const xx = Math.round(x(t * FS)) + 0.5; ctx.moveTo(xx, top); ctx.lineTo(xx, bottom);
      }
      ctx.stroke();
    }
    function hgrid(stepMv, color) {
      ctx.strokeStyle = color; ctx.lineWidth = 1; ctx.beginPath();
      const vBase = yOf(base);
      for (let k = -200; k <= 200; k++) {
        const yy = Math.round(vBase - k * stepMv * pxPerMv) + 0.5;
        if (yy < top || yy > bottom) continue;
        ctx.moveTo(0, yy); ctx.lineTo(W, yy);
      }
      ctx.stroke();
    }
    if (pxPerSec * 0.04 >= 4) vgrid(0.04, "#fbe3e3");
    if (pxPerMv * 0.1 >= 4) hgrid(0.1, "#fbe3e3");
    for (const st of [0.2, 1, 5, 10, 60, 300, 600, 3600]) {
      if (pxPerSec * st >= 8) { vgrid(st, "#f3b9b9"); break; }
    }
    if (pxPerMv * 0.5 >= 5) hgrid(0.5, "#f3b9b9");

    // doubtful signal (light amber), unreadable segments (hatched)
    for (const seg of DS) {
      if (seg[1] < t0 || seg[0] > t0 + span) continue;
      const a = Math.max(0, x(seg[0])), b = Math.min(W, x(seg[1]));
      ctx.fillStyle = "rgba(240,180,40,0.13)"; ctx.fillRect(a, 0, b - a, H - AXIS);
      if (b - a > 90) {
        ctx.fillStyle = "#a8741a"; ctx.font = "600 11px system-ui, sans-serif";
        ctx.textAlign = "left"; ctx.fillText("doubtful signal", a + 4, top + 12);
      }
    }
    for (const seg of U) {
      if (seg[1] < t0 || seg[0] > t0 + span) continue;
      const a = Math.max(0, x(seg[0])), b = Math.min(W, x(seg[1]));
      ctx.fillStyle = "rgba(110,110,120,0.18)"; ctx.fillRect(a, 0, b - a, H - AXIS);
      ctx.save(); ctx.beginPath(); ctx.rect(a, 0, b - a, H - AXIS); ctx.clip();
      ctx.strokeStyle = "rgba(90,90,100,0.28)"; ctx.lineWidth = 1; ctx.beginPath();
      for (let k = a - H; k < b; k += 9) { ctx.moveTo(k, H - AXIS); ctx.lineTo(k + H, 0); }
      ctx.stroke(); ctx.restore();
      if (b - a > 70) {
        ctx.fillStyle = "#555"; ctx.font = "600 11px system-ui, sans-serif"; ctx.textAlign = "left";
        ctx.fillText("unreadable", a + 4, top + 12);
      }
    }

    // selected error
    if (current >= 0) {
      const e = E[current], half = S.tolerance_ms / 1000 * FS;
      const a = x(e.sample - half), b = x(e.sample + half);
      ctx.fillStyle = "rgba(255,215,0,0.35)"; ctx.fillRect(a, 0, Math.max(3, b - a), H - AXIS);
    }

    // trace
    ctx.save(); ctx.beginPath(); ctx.rect(0, top, W, th); ctx.clip();
    ctx.strokeStyle = "#111"; ctx.lineWidth = 1.1; ctx.beginPath();
    const end = Math.min(N, t0 + span + 1);
    if (span / W > 1.5) {
      for (let px = 0; px < W; px++) {
        const a = Math.floor(t0 + px / pxPerSample);
        const b = Math.min(end, Math.floor(t0 + (px + 1) / pxPerSample) + 1);
        let lo = 32767, hi = -32768;
        for (let i = a; i < b; i++) { const v = sig[i]; if (v < lo) lo = v; if (v > hi) hi = v; }
        if (hi < lo) continue;
        if (px === 0) ctx.moveTo(px + 0.5, yOf(hi));
        ctx.lineTo(px + 0.5, yOf(hi)); ctx.lineTo(px + 0.5, yOf(lo));
      }
    } else {
      for (let i = t0; i < end; i++) {
        if (i === t0) ctx.moveTo(x(i), yOf(sig[i])); else ctx.lineTo(x(i), yOf(sig[i]));
      }
    }
    ctx.stroke(); ctx.restore();

    // beats: top lane (detected) and bottom lane (reference)
    const b0 = lowerBound(B.sample, t0), b1 = lowerBound(B.sample, t0 + span + 1);
    const r0 = lowerBound(R.sample, t0), r1 = lowerBound(R.sample, t0 + span + 1);
    const dense = (b1 - b0) * 14 > W || (r1 - r0) * 14 > W;
    ctx.textAlign = "center"; ctx.textBaseline = "middle";
    let drawn = 0;
    for (let j = b0; j < b1; j++) {
      const s = B.sample[j], xx = x(s), doubt = B.quality[j] === "doubtful";
      const c = B.class[j] >= 0 ? CL[B.class[j]] : "\u2022";  // not classified
      const r = B.ref[j], isFalse = S.has_reference && r === -1;  // -2: inside VF
      const isClass = r >= 0 && B.class[j] >= 0 && R.class[r] !== B.class[j];
      ctx.globalAlpha = doubt ? 0.5 : 1;
      ctx.fillStyle = CLASS_COLOR[c] || "#333";
      if (dense) {
        ctx.fillRect(xx - 0.5, 4, 1.5, LANE_TOP - 10);
      } else {
        ctx.font = "700 14px system-ui, sans-serif";
        ctx.fillText(c + (doubt ? "?" : ""), xx, 16);
        ctx.beginPath(); ctx.arc(xx, yOf(sig[s]), 2.5, 0, 2 * Math.PI); ctx.fill();
      }
      ctx.globalAlpha = 1;
      if (isFalse || isClass) {
        ctx.strokeStyle = isFalse ? KIND.false.color : KIND.class.color; ctx.lineWidth = 2;
        ctx.strokeRect(xx - 11, 4, 22, 24);
        ctx.setLineDash([3, 3]); ctx.lineWidth = 1; ctx.beginPath();
        ctx.moveTo(xx, 28); ctx.lineTo(xx, bottom); ctx.stroke(); ctx.setLineDash([]);
        if (!dense) {
          ctx.font = "600 10px system-ui, sans-serif"; ctx.fillStyle = ctx.strokeStyle;
          ctx.textAlign = "left";
          ctx.fillText(isFalse ? "false" : c + "\u2260" + CL[R.class[r]], xx + 13, 10);
          ctx.textAlign = "center";
        }
      }
      drawn++;
    }
    const laneY = bottom + LANE_BOTTOM / 2;
    for (let i = r0; i < r1; i++) {
      const s = R.sample[i], xx = x(s), c = CL[R.class[i]], missed = R.det[i] === -1;
      const wrong = R.det[i] >= 0 && B.class[R.det[i]] >= 0 && B.class[R.det[i]] !== R.class[i];
      if (missed) {
        ctx.fillStyle = KIND.missed.color; ctx.strokeStyle = KIND.missed.color;
        ctx.setLineDash([4, 3]); ctx.lineWidth = 1.5; ctx.beginPath();
        ctx.moveTo(xx, top); ctx.lineTo(xx, bottom); ctx.stroke(); ctx.setLineDash([]);
        ctx.beginPath(); ctx.moveTo(xx, bottom + 2); ctx.lineTo(xx - 6, bottom + 12);
        ctx.lineTo(xx + 6, bottom + 12); ctx.closePath(); ctx.fill();
        if (!dense) {
          ctx.font = "700 12px system-ui, sans-serif"; ctx.fillText(c, xx, laneY + 8);
          ctx.font = "600 10px system-ui, sans-serif"; ctx.textAlign = "left";
          ctx.fillText("missed", xx + 8, bottom + 8); ctx.textAlign = "center";
        }
      } else if (dense) {
        ctx.fillStyle = wrong ? KIND.class.color : "#999";
        ctx.fillRect(xx - 0.5, bottom + 6, 1.5, LANE_BOTTOM - 12);
      } else {
        ctx.fillStyle = wrong ? KIND.class.color : "#888";
        ctx.font = (wrong ? "700 " : "400 ") + "12px system-ui, sans-serif";
        ctx.fillText(c, xx, laneY);
      }
    }
    // lane captions and axis
    ctx.textAlign = "left"; ctx.font = "10px system-ui, sans-serif"; ctx.fillStyle = "#999";
    ctx.fillText("detected", 4, LANE_TOP - 4);
    if (S.has_reference) ctx.fillText("reference", 4, H - AXIS - 4);
    ctx.strokeStyle = "#ccc"; ctx.beginPath(); ctx.moveTo(0, top + 0.5); ctx.lineTo(W, top + 0.5);
    ctx.moveTo(0, bottom + 0.5); ctx.lineTo(W, bottom + 0.5);
    ctx.moveTo(0, H - AXIS + 0.5); ctx.lineTo(W, H - AXIS + 0.5); ctx.stroke();
    const steps = [0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];
    let tick = steps[steps.length - 1];
    for (const st of steps) if (st * pxPerSec >= 90) { tick = st; break; }
    ctx.fillStyle = "#555"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
    for (let t = Math.ceil(t0 / FS / tick) * tick; t * FS <= t0 + span; t += tick) {
      const xx = x(t * FS);
      ctx.fillRect(xx, H - AXIS, 1, 4);
      ctx.fillText(fmtTime(t, tick < 1 ? 1 : 0), Math.min(W - 24, Math.max(24, xx)),
                   H - AXIS / 2 + 1);
    }
    // scale bar: 1 mV, when it fits
    if (pxPerMv <= th - 10) {
      ctx.fillStyle = "#111"; ctx.fillRect(W - 14, bottom - 6 - pxPerMv, 2, pxPerMv);
      ctx.textAlign = "right"; ctx.fillText("1 mV", W - 18, bottom - 6 - pxPerMv / 2);
    }

    drawOverview();
    document.getElementById("view").textContent =
      fmtTime(t0 / FS) + " \u2013 " + fmtTime((t0 + span) / FS) + "  (" +
      (span / FS < 60 ? (span / FS).toFixed(1) + " s" : fmtTime(span / FS, 0)) + " shown)";
    draws++;
    strip.dataset.drawn = String(draws);
    strip.dataset.beatsDrawn = String(drawn);
    strip.dataset.view = t0 + ":" + (t0 + span);
    document.body.dataset.ready = "1";
  }

  let overviewCache = null;
  function drawOverview() {
    const f = fit(over), ctx = f.ctx, W = f.w, H = f.h;
    if (!overviewCache || overviewCache.w !== W) {
      const lo = new Float32Array(W), hi = new Float32Array(W);
      let gmin = Infinity, gmax = -Infinity;
      for (let px = 0; px < W; px++) {
        const a = Math.floor(px * N / W), b = Math.max(a + 1, Math.floor((px + 1) * N / W));
        let l = 32767, h = -32768;
        for (let i = a; i < b && i < N; i++) {
          const v = sig[i]; if (v < l) l = v; if (v > h) h = v;
        }
        lo[px] = l; hi[px] = h;
      }
      const sl = Array.from(lo).sort(function (p, q) { return p - q; });
      const sh = Array.from(hi).sort(function (p, q) { return p - q; });
      gmin = sl[Math.floor(0.02 * W)]; gmax = sh[Math.floor(0.98 * (W - 1))];
      overviewCache = {w: W, lo: lo, hi: hi, gmin: gmin, gmax: Math.max(gmax, gmin + 1)};
    }
    const oc = overviewCache, ys = function (v) {
      const c = Math.max(oc.gmin, Math.min(oc.gmax, v));
      return 6 + (H - 12) * (1 - (c - oc.gmin) / (oc.gmax - oc.gmin));
    };
    ctx.clearRect(0, 0, W, H);
    for (const seg of DS) {
      ctx.fillStyle = "rgba(240,180,40,0.25)";
      ctx.fillRect(seg[0] / N * W, 0, Math.max(1, (seg[1] - seg[0]) / N * W), H);
    }
    for (const seg of U) {
      ctx.fillStyle = "rgba(110,110,120,0.3)";
      ctx.fillRect(seg[0] / N * W, 0, Math.max(1, (seg[1] - seg[0]) / N * W), H);
    }
    ctx.strokeStyle = "#777"; ctx.lineWidth = 1; ctx.beginPath();
    for (let px = 0; px < W; px++) {
      ctx.moveTo(px + 0.5, ys(oc.hi[px])); ctx.lineTo(px + 0.5, ys(oc.lo[px]));
    }
    ctx.stroke();
    for (const e of E) {
      if (!shown[e.kind]) continue;
      ctx.fillStyle = KIND[e.kind].color;
      const row = e.kind === "missed" ? H - 10 : e.kind === "false" ? 0 : 10;
      ctx.fillRect(Math.round(e.sample / N * W) - 0.5, row, 1.5, 10);
    }
    ctx.fillStyle = "rgba(40,90,220,0.15)"; ctx.strokeStyle = "rgba(40,90,220,0.8)";
    const a = t0 / N * W, w = Math.max(2, span / N * W);
    ctx.fillRect(a, 0, w, H); ctx.strokeRect(a + 0.5, 0.5, w - 1, H - 1);
  }

  // -- interaction -----------------------------------------------------------------------
  strip.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    const rect = strip.getBoundingClientRect(), frac = (ev.clientX - rect.left) / rect.width;
    if (ev.shiftKey || Math.abs(ev.deltaX) > Math.abs(ev.deltaY)) {
      pan((ev.deltaX || ev.deltaY) / rect.width);
    } else {
      zoom(Math.exp(ev.deltaY * 0.0015), frac);
    }
  }, {passive: false});
  let drag = null;
  strip.addEventListener("mousedown", function (ev) {
    drag = {x: ev.clientX, t0: t0}; strip.classList.add("dragging");
  });
  window.addEventListener("mouseup", function () {
    drag = null; strip.classList.remove("dragging");
  });
  window.addEventListener("mousemove", function (ev) {
    if (drag) {
      t0 = drag.t0 - (ev.clientX - drag.x) * span / strip.clientWidth; clampView(); schedule();
    }
  });
  const info = document.getElementById("info"), infoDefault = info.innerHTML;
  strip.addEventListener("mousemove", function (ev) {
    if (!geo || drag) return;
    const rect = strip.getBoundingClientRect(), s = t0 + (ev.clientX - rect.left) / geo.pxPerSample;
    let j = lowerBound(B.sample, s), best = -1, bd = 10 / geo.pxPerSample;
    for (const k of [j - 1, j]) {
      if (k >= 0 && k < B.sample.length && Math.abs(B.sample[k] - s) <= bd) {
        best = k; bd = Math.abs(B.sample[k] - s);
      }
    }
    if (best < 0) { info.textContent = fmtTime(s / FS, 3); return; }
    const r = B.ref[best], rr = best > 0 ? (B.sample[best] - B.sample[best - 1]) / FS : null;
    info.textContent = "beat " + (best + 1) + " of " + B.sample.length + " \u00b7 " +
      fmtTime(B.sample[best] / FS, 3) +
      (B.class[best] >= 0 ? " \u00b7 class " + CL[B.class[best]] : " \u00b7 not classified") +
      (B.p[best] !== null ? " (p " + B.p[best].toFixed(2) + ")" : "") +
      (B.quality[best] ? " \u00b7 quality " + B.quality[best] : "") +
      (rr ? " \u00b7 RR " + (1000 * rr).toFixed(0) + " ms (" + (60 / rr).toFixed(0) + " bpm)"
          : "") +
      (!S.has_reference ? "" : r === -2 ? " \u00b7 inside reference-marked VF: not scored"
       : r < 0 ? " \u00b7 no reference beat"
       : " \u00b7 reference " + CL[R.class[r]] + " (" +
         ((B.sample[best] - R.sample[r]) / FS * 1000).toFixed(0) + " ms)");
  });
  strip.addEventListener("mouseleave", function () { info.innerHTML = infoDefault; });
  let overDrag = false;
  function overTo(ev) {
    const rect = over.getBoundingClientRect();
    t0 = (ev.clientX - rect.left) / rect.width * N - span / 2; clampView(); schedule();
  }
  over.addEventListener("mousedown", function (ev) { overDrag = true; overTo(ev); });
  window.addEventListener("mousemove", function (ev) { if (overDrag) overTo(ev); });
  window.addEventListener("mouseup", function () { overDrag = false; });

  const actions = {
    "b-start": function () { setView(0, span); }, "b-end": function () { setView(N, span); },
    "b-back": function () { pan(-1); }, "b-fwd": function () { pan(1); },
    "b-left": function () { pan(-0.25); }, "b-right": function () { pan(0.25); },
    "b-in": function () { zoom(0.5); }, "b-out": function () { zoom(2); },
    "b-10s": function () { const c = t0 + span / 2; setView(c - 5 * FS, 10 * FS); },
    "b-all": function () { setView(0, N); },
    "b-gain-up": function () { gain *= 1.25; schedule(); },
    "b-gain-down": function () { gain /= 1.25; schedule(); },
    "b-prev": function () { stepError(-1); }, "b-next": function () { stepError(1); },
  };
  for (const id in actions) document.getElementById(id).addEventListener("click", actions[id]);
  document.addEventListener("keydown", function (ev) {
    if (ev.target && (ev.target.tagName === "INPUT" || ev.target.tagName === "TEXTAREA")) return;
    const key = {"ArrowLeft": ev.shiftKey ? "b-back" : "b-left",
                 "ArrowRight": ev.shiftKey ? "b-fwd" : "b-right",
                 "+": "b-in", "=": "b-in", "-": "b-out", "_": "b-out", "0": "b-all",
                 "1": "b-10s", "Home": "b-start", "End": "b-end", "ArrowUp": "b-gain-up",
                 "ArrowDown": "b-gain-down", "n": "b-next", "p": "b-prev",
                 "PageDown": "b-fwd", "PageUp": "b-back"}[ev.key];
    if (key && !ev.ctrlKey && !ev.metaKey && !ev.altKey) { ev.preventDefault(); actions[key](); }
  });
  window.addEventListener("resize", function () { overviewCache = null; schedule(); });
  // a link can open the page at an error (#error=3, counted from 0) or a time (#t=SECONDS)
  clampView();
  const hash = /^#(error|t)=([0-9.]+)$/.exec(location.hash);
  if (hash && hash[1] === "error") goToError(parseInt(hash[2], 10));
  if (hash && hash[1] === "t") setView(parseFloat(hash[2]) * FS - span / 2, span);
  draw();
})();
</script>
</body>
</html>
"""
