"""``vitaledge device reliability fuzz|crash|load|streams|soak``: parse, run the campaign,
print its figures as JSON (and save them with ``--json``); exit 1 where a campaign's check
fails. The campaign modules are imported when their command runs."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import click

from vitaledge.device.bench.reliability.fuzz import FUZZ_TARGETS, run_fuzz
from vitaledge.device.cli_shared import (
    POSITIVE,
    SEED,
    FiniteRange,
    json_out_ready,
    write_json,
)

#: What a campaign raises for bad input (a model or record it cannot use, a daemon that
#: failed): one line and exit 1, not a traceback.
CAMPAIGN_ERRORS = (ValueError, OSError, RuntimeError)


@contextlib.contextmanager
def one_line_errors():
    """A campaign's :data:`CAMPAIGN_ERRORS` as a one-line CLI error."""
    try:
        yield
    except CAMPAIGN_ERRORS as exc:
        raise click.ClickException(str(exc)) from exc


@contextlib.contextmanager
def scratch_dir(prefix: str, named: str | None = None):
    """The campaign's working folder: ``named`` when the user gave one (kept), else a
    temporary folder removed when the campaign ends, however it ends."""
    if named:
        yield Path(named)
        return
    wd = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield wd
    finally:
        shutil.rmtree(wd, ignore_errors=True)


@click.group("reliability")
def reliability_group() -> None:
    """Reliability campaigns: fuzz, kill -9 crash consistency, overload, soak."""


@reliability_group.command("fuzz")
@click.option("--target", "targets", default="all", show_default=True,
              help=f"Comma list of {', '.join(FUZZ_TARGETS)} or all.")
@click.option("--inputs", "n", type=click.IntRange(min=1), default=100_000,
              show_default=True, help="Inputs per target.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False))
def fuzz_cmd(targets, n, seed, json_out) -> None:
    """Random and mutated inputs through each decoder/loader; exit 1 on any unexpected
    exception or hang."""
    import logging

    names = list(FUZZ_TARGETS) if targets == "all" else [t.strip() for t in targets.split(",")]
    odd = [name for name in names if name not in FUZZ_TARGETS]
    if odd:  # every target before the first runs (a typo came after a whole campaign)
        raise click.BadParameter(f"unknown target {odd[0]!r}; expected "
                                 f"{', '.join(FUZZ_TARGETS)} or all", param_hint="--target")
    json_out_ready(json_out)
    results = []
    logging.disable(logging.WARNING)  # loaders log every malformed line
    try:
        for name in names:
            r = run_fuzz(name, n, seed,
                         progress=lambda k, name=name: click.echo(f"  {name}: {k}", err=True))
            click.echo(json.dumps(r))
            results.append(r)
    finally:  # the campaign's silence only: a caller's logging (a test's, a shell's) is back
        logging.disable(logging.NOTSET)
    if json_out:
        write_json(json_out, results)
    if any(r["unexpected"] or r["hangs"] for r in results):
        sys.exit(1)


@reliability_group.command("crash")
@click.option("--model", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--record", required=True, help="WFDB record replayed at --speed.")
@click.option("--speed", default="100", show_default=True,
              help="Replay speed (x real time), so that the daemon is writing when killed.")
@click.option("--kills", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--max-jsonl-bytes", type=click.IntRange(min=1024), default=2_000_000,
              show_default=True,
              help="JSONL rotation size (5 files kept), small so kills hit rotations.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Where the sinks go (default: a temporary directory).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False))
def crash_cmd(model, record, speed, kills, max_jsonl_bytes, seed, workdir, json_out) -> None:
    """kill -9 the daemon at random moments while it writes; check both sinks after
    every kill and that no acknowledged event is lost, changed or duplicated."""
    from vitaledge.device.bench.reliability.crash import crash_campaign

    model, record = str(Path(model).resolve()), str(Path(record).resolve())
    json_out_ready(json_out)  # before the campaign, not after it
    with one_line_errors(), scratch_dir("vitaledge-crash-", workdir) as wd:  # bad input,
        # or a run that failed on its own: why, in one line
        r = crash_campaign(model, record, wd, kills, seed,
                           max_jsonl_bytes=max_jsonl_bytes, speed=speed)
    brief = {k: v for k, v in r.items() if k != "per_kill"}
    click.echo(json.dumps(brief, indent=2))
    if json_out:
        write_json(json_out, r)
    bad = (r["jsonl_corrupt_lines"] or r["sqlite_integrity_failures"] or
           r["jsonl_duplicate_seq"] or r["sqlite_duplicate_seq"] or
           r["acked_lost_or_changed_jsonl"] or r["acked_lost_or_changed_sqlite"] or
           not r["jsonl_seq_increasing"] or r["final_returncode"] != 0)
    sys.exit(1 if bad else 0)


@reliability_group.command("load")
@click.option("--model", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--record", required=True, help="WFDB record whose samples are sent.")
@click.option("--seconds", type=FiniteRange(0, 86_400, min_open=True), default=60.0,
              show_default=True)
@click.option("--chunk-delay", type=FiniteRange(0, 60), default=0.01, show_default=True,
              help="Seconds added to every 64-sample chunk (a slow pipeline).")
@click.option("--recover", "recover_s", type=FiniteRange(0, 3_600), default=10.0,
              show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False))
def load_cmd(model, record, seconds, chunk_delay, recover_s, json_out) -> None:
    """Overload one tcp source at >= 10x the pipeline's capacity, then recover."""
    from vitaledge.device.bench.reliability.load import load_campaign

    json_out_ready(json_out)  # before the campaign, not after it
    with one_line_errors(), scratch_dir("vitaledge-load-") as wd:
        r = load_campaign(str(Path(model).resolve()), record, wd, seconds, chunk_delay,
                          recover_s)
    click.echo(json.dumps({k: v for k, v in r.items() if k != "rss_samples"}, indent=2))
    if json_out:
        write_json(json_out, r)
    ok = (r["sent_minus_processed_minus_dropped"] == 0 and r["overload_factor"] >= 10
          and r["gap_event_missing_samples"] == r["dropped_samples"]
          and r["dropped_after_drain"] == 0)
    sys.exit(0 if ok else 1)


@reliability_group.command("streams")
@click.option("--model", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--record", required=True)
@click.option("--n", "counts", default="8", show_default=True, help="Comma list of counts.")
@click.option("--seconds", type=POSITIVE, default=30.0, show_default=True)
@click.option("--cpu", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False))
def streams_cmd(model, record, counts, seconds, cpu, json_out) -> None:
    """Concurrent real-time TCP streams on one core: N daemons pinned to --cpu; exit 1
    unless every stream was processed completely without a drop."""
    from vitaledge.device.bench.reliability.host import check_cpu
    from vitaledge.device.bench.reliability.load import streams_campaign

    try:
        ns = [int(c) for c in counts.split(",")]
        if not ns or min(ns) < 1:
            raise ValueError
    except ValueError as exc:
        raise click.BadParameter("expected a comma list of counts of 1 or more",
                                 param_hint="--n") from exc
    try:  # before anything starts: pinning to it would fail with the daemons running
        check_cpu(cpu)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--cpu") from exc
    json_out_ready(json_out)  # before the campaigns, not after them
    res = []
    for n in ns:
        with one_line_errors():
            r = streams_campaign(str(Path(model).resolve()), record, n, seconds, cpu)
        click.echo(json.dumps({k: v for k, v in r.items() if k != "per_stream"}))
        res.append(r)
    if json_out:
        write_json(json_out, res)
    if not all(r["all_complete"] for r in res):
        sys.exit(1)


@reliability_group.command("soak")
@click.option("--model", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--records", required=True,
              help="Comma list of WFDB records (same rate), looped.")
@click.option("--hours", type=FiniteRange(0, 10_000, min_open=True), default=24.0,
              show_default=True,
              help="Hours of signal replayed.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False))
def soak_cmd(model, records, hours, json_out) -> None:
    """Replay >= 24 h of signal at max speed; RSS and open fds sampled over the run."""
    from vitaledge.device.bench.reliability.soak import soak_campaign

    json_out_ready(json_out)  # before the campaign, not after it
    with one_line_errors(), scratch_dir("vitaledge-soak-") as wd:
        r = soak_campaign(str(Path(model).resolve()), [x.strip() for x in records.split(",")],
                          wd, hours)
    click.echo(json.dumps({k: v for k, v in r.items() if k != "samples"}, indent=2))
    if json_out:
        write_json(json_out, r)
