"""The daemon in words: the progress line of a replay, the summary at the end of a run,
and ``/health`` as ``vitaledge device status`` prints it. Plain functions over the dicts
the daemon already makes (``Daemon.position()``, ``Daemon.run()``, ``Daemon.health()``)."""

from __future__ import annotations

import reprlib
from collections.abc import Callable

from vitaledge.device.dsp.spec_fields import finite_number


def clock(seconds: float) -> str:
    """Signal time as ``M:SS`` (``H:MM:SS`` from an hour): ``1805.6`` -> ``"30:05"``."""
    s = int(seconds)  # a clock shows whole seconds passed
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _n(x: int | float) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:,.1f}"


def _events(counts: dict) -> str:
    """``{"beat": 2271, "status": 3}`` -> ``"2,271 beat events, 3 status events"``."""
    parts = [f"{_n(n)} {kind} event{'s' if n != 1 else ''}"
             for kind, n in sorted(counts.items(), key=lambda kv: (kv[0] != "beat", kv[0]))]
    return ", ".join(parts) or "no events"


def format_position(pos: dict, wall_s: float) -> str:
    """One progress line: ``replay:100  12:30 / 30:05 of signal (41 %)  1,234 beat events
    231x real time``."""
    fs = pos["fs"] or 1.0
    done = pos["samples"] / fs
    where = clock(done)
    if pos.get("length"):
        total = pos["length"] / fs
        where += f" / {clock(total)} of signal ({100 * pos['samples'] / pos['length']:.0f} %)"
    else:
        where += " of signal"
    speed = f"{done / wall_s:,.0f}x real time" if wall_s > 0 and done else ""
    return "  ".join(p for p in (pos.get("source", ""), where, _events(pos["events"]), speed)
                     if p)


def unreadable_input(s: dict) -> str:
    """What the run's source could not read (malformed text lines, bytes that were no
    frame, frames whose payload was refused), in words; "" when nothing."""
    st = s.get("source_stats") or {}
    parts = [f"{_n(st[k])} {what}" for k, what in (
        ("malformed_lines", "malformed lines"), ("garbage_bytes", "bytes of no frame"),
        ("bad_payloads", "frames refused (a hello or samples payload out of range)"),
        ("no_hello_samples", "samples refused (before a hello, or at another rate than "
                             "configured)")) if st.get(k)]
    return " and ".join(parts)


#: A share of dropped samples at which the summary says why and what to do instead: a file
#: piped into ``stdin`` (or sent over TCP at full speed) loses most of itself.
DROPPED_HINT = 0.1


#: A forwarding sink's delivery figures in the run summary, in words.
SPOOL_WORDS = (("spool_dropped", "events dropped from the full spool"),
               ("spool_backlog", "left in the spool for the next run"))


def format_summary(s: dict) -> str:
    """The end of ``vitaledge device run``, for a person (``--json FILE`` has it all)."""
    counts = s.get("events_this_run") or {}
    sinks = ", ".join(s.get("sinks") or []) or "no sink"
    wall = s.get("wall_seconds") or 0
    rtf = f", {s['realtime_factor']:,.0f}x real time" if s.get("realtime_factor") else ""
    lines = [f"{_events(counts)} from {clock(s.get('signal_seconds') or 0)} of signal in "
             f"{wall:,.1f} s"
             f"{rtf} → {sinks}"]
    rhythm = s.get("rhythm") or {}
    if rhythm.get("beats"):
        classes = " · ".join(f"{k} {_n(v)}" for k, v in rhythm.get("classes", {}).items())
        hr = f"; heart rate {rhythm['heart_rate_bpm']:g} bpm" \
            if rhythm.get("heart_rate_bpm") is not None else ""
        edge = s.get("dropped_edge_beats") or 0
        lines.append(f"beats: {classes}{hr}"
                     + (f"; {edge} at the stream's edges not classified" if edge else ""))
    quality = s.get("signal_quality") or {}
    if quality.get("unreadable_s") or quality.get("doubtful_s"):
        lines.append(_quality_line(quality, s.get("signal_seconds") or 0))
    checked = quality.get("checked_out_beats") or 0
    added = quality.get("added_beats") or 0
    said = ([f"{_n(checked)} detection{'s' if checked != 1 else ''} dropped as noise"]
            if checked else [])
    said += ([f"{_n(added)} beat{'s' if added != 1 else ''} added where the detector had none"]
             if added else [])
    check = quality.get("beat_check") or {}
    if check and not check.get("adds"):
        said.append(f"none added on lead {check.get('lead')} (its network was trained on "
                    f"{', '.join(check.get('trained_on') or [])})")
    if said:
        lines.append("beat check: " + ", ".join(said))
    trouble = []
    for name, d in (s.get("sink_delivery") or {}).items():
        said = [f"{_n(d[k])} {words}" for k, words in SPOOL_WORDS if d.get(k)]
        if said:
            trouble.append(f"{name}: " + ", ".join(said))
    if s.get("dropped_samples"):
        share = s["dropped_samples"] / s["samples"] if s.get("samples") else 0.0
        trouble.append(f"{_n(s['dropped_samples'])} samples dropped on a full queue "
                       f"({_n(s.get('dropped_chunks') or 0)} chunks, {share:.0%} of the signal)"
                       + ("; the source sent them faster than the models ran (a live source "
                          "is not waited for: a file is read whole with --source "
                          "replay:FILE)" if share >= DROPPED_HINT else ""))
    faults = {k: v for k, v in (s.get("signal_fault_samples") or {}).items() if v}
    if faults:
        trouble.append("signal faults cut out: " + ", ".join(
            f"{_n(v)} sample{'s' if v != 1 else ''} {k.replace('_', ' ')}"
            for k, v in faults.items()))
    rejected = unreadable_input(s)
    if rejected:
        trouble.append(f"{rejected} on the source ignored")
    lines.append("; ".join(trouble) if trouble else
                 "no samples dropped, no signal faults")
    lines[-1] += (f"; ready in {s.get('ready_seconds', 0):.2f} s, "
                  f"{s.get('rss_mb', 0):.0f} MB resident")
    return "\n".join(lines)


def _quality_line(q: dict, seconds: float) -> str:
    """``signal quality: 1:58 unreadable (98%), no beats there (221 detections); ...``."""
    def share(v: float) -> str:
        return f"{v / seconds:.0%}" if seconds else "-"

    un, dbt = q.get("unreadable_s") or 0.0, q.get("doubtful_s") or 0.0
    gated, flagged = q.get("gated_beats") or 0, q.get("flagged_beats") or 0
    parts = []
    if un:
        parts.append(f"{clock(un)} unreadable ({share(un)}), no beats there ({_n(gated)} "
                     f"detection{'s' if gated != 1 else ''})")
    if dbt:
        parts.append(f"{clock(dbt)} doubtful ({share(dbt)}, {_n(flagged)} "
                     f"beat{'s' if flagged != 1 else ''} flagged)")
    reasons = ", ".join(f"{k.replace('_', ' ')} {clock(v)}"
                        for k, v in (q.get("flagged_reasons_s") or {}).items())
    return "signal quality: " + "; ".join(parts) + (f"; why: {reasons}" if reasons else "")


def format_health(h: dict) -> str:
    """``/health`` in words, for ``vitaledge device status``."""
    state = h.get("status", "?")
    reasons = h.get("degraded") or h.get("reasons") or []
    if isinstance(reasons, dict):
        reasons = [f"{k}: {v}" for k, v in reasons.items()]
    elif isinstance(reasons, str):
        reasons = [reasons]
    head = f"state: {state}" + (f" ({'; '.join(map(str, reasons))})" if reasons else "")
    lines = [head, f"uptime: {clock(h.get('uptime_s', 0))}"]
    sha = h.get("model_sha256") or ""
    lines.append(f"model: {h.get('model', '?')}" + (f" (sha256 {sha[:12]}…)" if sha else ""))
    src = f"source: {h.get('source', '?')}"
    if h.get("samples_in") is not None:
        src += f", {_n(h['samples_in'])} samples"
        if h.get("fs"):
            src += f" ({clock(h['samples_in'] / h['fs'])} of signal)"
    lines.append(src)
    ev = f"events: last seq {_n(h.get('last_seq', 0))}"
    if h.get("events_this_run"):
        ev += f"; this run {_events(h['events_this_run'])}"
    if h.get("seconds_since_last_beat") is not None:
        ev += f"; last beat {h['seconds_since_last_beat']:.1f} s ago"
    lines.append(ev)
    rhythm = h.get("rhythm") or {}
    if rhythm.get("beats"):
        lines.append("beats: " + " · ".join(f"{k} {_n(v)}"
                                            for k, v in rhythm.get("classes", {}).items())
                     + (f"; heart rate {rhythm['heart_rate_bpm']:g} bpm"
                        if rhythm.get("heart_rate_bpm") is not None else ""))
    if h.get("dropped_samples"):
        lines.append(f"dropped: {_n(h['dropped_samples'])} samples on a full queue")
    return "\n".join(lines)


class StatusError(RuntimeError):
    """No usable answer from the daemon's API; the message says why and what to try."""


def fetch_health(url: str, token: str = "", timeout: float = 3.0) -> dict:
    """GET ``url``/health (``url`` like ``http://127.0.0.1:8787``) as a dict."""
    import http.client
    import json
    import urllib.error
    import urllib.request

    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise StatusError(f"--api {url!r}: expected a URL like http://127.0.0.1:8787")
    try:
        req = urllib.request.Request(base + "/health", headers={"Authorization":
                                                                f"Bearer {token}"} if token else {})
    except ValueError as exc:  # http://[::1 (an unclosed IPv6 address), a bad port
        raise StatusError(f"--api {url!r}: not a URL ({exc})") from exc
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            health = json.loads(r.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 401 and token:
            raise StatusError(f"{base}: the API refused the bearer token given (not the "
                              "daemon's api_token_file's)") from exc
        if exc.code == 401:
            raise StatusError(f"{base}: the API wants a bearer token (--api-token-file FILE "
                              "or $VITALEDGE_API_TOKEN)") from exc
        raise StatusError(f"{base}/health: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StatusError(f"no daemon API answers at {base} ({reason}); is `vitaledge "
                          "device run --api-port PORT` running there?") from exc
    except http.client.HTTPException as exc:  # BadStatusLine (not HTTP), IncompleteRead
        raise StatusError(f"{base}/health: not a vitaledge API (not a whole HTTP answer: "
                          f"{type(exc).__name__})") from exc
    except ValueError as exc:
        raise StatusError(f"{base}/health: not a vitaledge API (the answer is not "
                          "JSON)") from exc
    problem = health_problem(health)
    if problem:
        raise StatusError(f"{base}/health: malformed answer: {problem}")
    return health


def _counts(v) -> bool:
    return isinstance(v, dict) and all(finite_number(n) for n in v.values())


_KINDS: dict[str, Callable] = {
    "a string": lambda v: isinstance(v, str), "a number": finite_number,
    "null": lambda v: v is None, "a list": lambda v: isinstance(v, list),
    "an object": lambda v: isinstance(v, dict),
    "an object of counts": _counts}

#: The /health fields :func:`format_health` reads and what each may be when present.
HEALTH_FIELDS = {
    "status": ("a string",), "degraded": ("a list", "an object", "a string", "null"),
    "reasons": ("a list", "an object", "a string", "null"), "uptime_s": ("a number",),
    "model": ("a string", "null"), "model_sha256": ("a string", "null"),
    "source": ("a string", "null"), "samples_in": ("a number", "null"),
    "fs": ("a number", "null"), "last_seq": ("a number",),
    "events_this_run": ("an object of counts", "null"),
    "seconds_since_last_beat": ("a number", "null"), "rhythm": ("an object", "null"),
    "dropped_samples": ("a number", "null")}
RHYTHM_FIELDS = {"beats": ("a number", "null"), "classes": ("an object of counts",),
                 "heart_rate_bpm": ("a number", "null")}


def health_problem(h) -> str:
    """What makes ``h`` no ``/health`` answer :func:`format_health` can print ("" when it
    is one): not an object, or a field of another type (``uptime_s is 'x', expected a
    number``)."""
    if not isinstance(h, dict):
        return f"expected a JSON object, got {reprlib.repr(h)}"
    rhythm = h.get("rhythm") if isinstance(h.get("rhythm"), dict) else {}
    for where, d, spec in (("", h, HEALTH_FIELDS), ("rhythm.", rhythm, RHYTHM_FIELDS)):
        for k, kinds in spec.items():
            if k in d and not any(_KINDS[kind](d[k]) for kind in kinds):
                return f"{where}{k} is {reprlib.repr(d[k])}, expected {' or '.join(kinds)}"
    if "status" not in h:  # every daemon's /health says it; {} is no daemon's answer
        return "no status field"
    return ""
