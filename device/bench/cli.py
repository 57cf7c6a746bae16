"""``vitaledge bench``: the benchmarks that print and save their figures (detector,
latency run and compare, noise stress, stream). ``vitaledge bench ARTIFACT...`` is short
for ``vitaledge bench run ARTIFACT...``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
from click.core import ParameterSource

from vitaledge.device.cli_shared import (
    FiniteRange,
    artifact_files,
    csv_list,
    data_files,
    deprecated_alias,
    json_out_ready,
    not_an_input,
    out_dir_ready,
    records_dir_alias,
    repeated,
    snr_list,
    write_json,
)
from vitaledge.device.model.runtime import BACKENDS, MAX_THREADS, ModelLoadError


class BenchGroup(click.Group):
    """``vitaledge bench ARTIFACT...`` means ``vitaledge bench run ARTIFACT...``."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("bench", cls=BenchGroup)
def bench_group() -> None:
    """Benchmarks that print and save their figures.

    vitaledge bench ARTIFACT_DIR... [options] is short for vitaledge bench run."""


@bench_group.command("detector")
@click.option("--data", "directory", type=click.Path(exists=True, file_okay=False),
              help="Directory of WFDB records with .atr (required).")
@click.option("--records", help="Comma-separated record names within --data (default: all).")
@records_dir_alias(data_dest="directory")
@click.option("--no-xqrs", is_flag=True, help="Skip the wfdb XQRS comparison.")
@click.option("--fs", type=click.FloatRange(50.0, 10_000.0),
              help="Resample every record to this rate first (Hz, 50-10000; the device's "
                   "resampler): the detector at a device's rate.")
@click.option("--lead", default="MLII", show_default=True,
              help="Lead to score, by name (e.g. V1); records without it are skipped and "
                   "named (MLII falls back to a record's first channel, as everywhere).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write JSON here.")
def bench_detector_cmd(directory, records, no_xqrs, fs, lead, json_out) -> None:
    """R-peak detection Se / +P per record: vitaledge's streaming detector vs wfdb XQRS."""
    from vitaledge.device.bench.detector import bench_detector, format_table
    from vitaledge.device.stream.progress import ProgressLine

    if not directory:
        raise click.UsageError("Missing option '--data'.")
    not_an_input(json_out, "--json", data_files(directory))
    json_out_ready(json_out)
    try:
        with ProgressLine() as line:
            res = bench_detector(directory, with_xqrs=not no_xqrs, names=csv_list(records),
                                 progress=line.counter("record"), fs=fs, lead=lead)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(format_table(res))
    if json_out:
        write_json(json_out, res)


def _ints(value: str, option: str, low: int = 1) -> list[int]:
    """A comma list of integers >= ``low``; anything else is a usage error naming
    ``option``."""
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        out = []
    if not out or min(out) < low:
        raise click.BadParameter(f"{value!r}: expected a comma list of integers >= {low}, "
                                 "e.g. 1,2,4", param_hint=f"'{option}'")
    _once(out, value, option)
    return out


def _once(items: list, value: str, option: str) -> None:
    """Refuse an item given twice: ``bench run`` timed the same row again, and ``bench
    compare`` showed one of the two without a word."""
    if twice := repeated(items):
        raise click.BadParameter(f"{value!r} names {', '.join(map(str, twice))} twice",
                                 param_hint=f"'{option}'")


@bench_group.command("run")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--threads", default="1", show_default=True, help="Comma list, e.g. 1,2,4.")
@click.option("--delegate", "delegates", default="xnnpack", show_default=True,
              help="Comma list of xnnpack, none, edgetpu, gpu.")
@click.option("--batch", "batches", default="1", show_default=True, help="Comma list.")
@click.option("--warmup", type=click.IntRange(min=0), default=50, show_default=True)
@click.option("--runs", type=click.IntRange(min=1),
              help="Timed runs (default: as many as --min-seconds allows).")
@click.option("--min-seconds", type=FiniteRange(min=0), default=2.0, show_default=True,
              help="Time each row at least this long (with no --runs).")
@click.option("--data", type=click.Path(exists=True),
              help="heldout.npz from convert (the run's held-out beats) or a WFDB "
                   "directory: real inputs, and accuracy / macro F1 per row.")
@click.option("--backend", type=click.Choice(BACKENDS))
@click.option("--keras", "keras_runs", multiple=True,
              type=click.Path(exists=True, file_okay=False),
              help="Training run: add its Keras model as baseline rows (needs TF; repeatable).")
@click.option("--pin", help="Pin the benchmark to these CPUs, e.g. 0 or 0,1.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Write bench.json/.csv/.md/.txt (and plots when matplotlib is installed).")
@click.option("--overwrite", is_flag=True,
              help="Replace an earlier bench in --out (else refused).")
def bench_run_cmd(artifacts, threads, delegates, batches, warmup, runs, min_seconds, data,
                  backend, keras_runs, pin, out, overwrite) -> None:
    """Latency (load, first, p50/p90/p99), throughput, memory and accuracy per artifact x
    delegate x threads x batch. Exits 1 when a row failed (after printing and saving)."""
    from vitaledge.device.bench.latency import FAIL, run_bench, save, written_before
    from vitaledge.device.bench.latency import format_table as fmt
    from vitaledge.device.stream.progress import ProgressLine

    held = written_before(Path(out)) if out else None
    if held is not None and not overwrite:
        raise click.BadParameter(f"{out} holds {held.name} (an earlier bench?): give a new "
                                 "directory, or --overwrite to replace it", param_hint="'--out'")
    thread_list, batch_list = _ints(threads, "--threads"), _ints(batches, "--batch")
    _once([d.strip() for d in delegates.split(",")], delegates, "--delegate")
    _once([str(Path(a).resolve()) for a in artifacts], " ".join(artifacts), "ARTIFACTS")
    _once([str(Path(k).resolve()) for k in keras_runs], " ".join(keras_runs), "--keras")
    if max(thread_list) > MAX_THREADS:
        raise click.BadParameter(f"{threads!r}: at most {MAX_THREADS} threads",
                                 param_hint="'--threads'")
    cpus = _ints(pin, "--pin", low=0) if pin else None
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    if cpus and usable is not None and not set(cpus) <= set(usable):
        raise click.BadParameter(f"{pin!r}: CPUs {sorted(set(cpus) - set(usable))} are not "
                                 f"this process's; it may run on {usable}", param_hint="'--pin'")
    made = out_dir_ready(out, "--out")  # the results must have somewhere to go
    try:
        with ProgressLine() as line:
            res = run_bench([Path(a) for a in artifacts], thread_list,
                            [d.strip() for d in delegates.split(",")], batch_list, warmup,
                            runs, min_seconds, data, backend, keras_runs=list(keras_runs),
                            pin=cpus, progress=line.counter("timing"))
    except (ValueError, OSError) as exc:
        for folder in made:  # made for this bench, and still empty
            folder.rmdir()
        raise click.ClickException(str(exc)) from exc
    click.echo(fmt(res.to_dict()))
    if out:
        try:
            save(res, Path(out))
        except OSError as exc:
            raise click.ClickException(f"cannot write {out}: {exc}") from exc
        click.echo(f"saved to {out}/bench.json, bench.csv, bench.md, bench.txt")
    failed = [r for r in res.rows if r.status == FAIL]
    if failed:  # after printing and saving everything: a failed row fails the command
        click.echo(f"{len(failed)} of {len(res.rows)} rows failed ({FAIL})", err=True)
        raise SystemExit(1)


@bench_group.command("compare")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True,
                                                                     dir_okay=False))
def bench_compare_cmd(results) -> None:
    """Side by side p50 latencies from bench.json files of several machines or runs."""
    from vitaledge.device.bench.latency import compare, result_names, validate

    loaded = []
    for r in results:
        try:
            loaded.append(json.loads(Path(r).read_text()))
        except (OSError, ValueError) as exc:  # JSONDecodeError, UnicodeDecodeError
            raise click.ClickException(f"{r}: not a bench.json ({exc})") from exc
        try:
            validate(loaded[-1], where=r)
        except ValueError as exc:  # a field compare would read is missing or mistyped
            raise click.ClickException(str(exc)) from exc
    try:
        click.echo(compare(loaded, result_names(list(results))))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


@bench_group.command("noise-stress")
@click.option("--record", "records", multiple=True, type=click.Path(dir_okay=False),
              help="Clean WFDB record with .atr (repeatable), e.g. mitdb/118; with --noise.")
@click.option("--noise", "noises", multiple=True, type=click.Path(dir_okay=False),
              help="Noise WFDB record (repeatable), e.g. nstdb-noise/ma; with --record.")
@click.option("--noisy-record", "noisy", multiple=True, type=click.Path(dir_okay=False),
              help="Ready-made noise-stress record, scored as it is (repeatable): the NST "
                   "database's (nstdb/118e06; noise em, SNR from the name) or one `data nst` "
                   "made (its .nst.json says the noise and SNR).")
@click.option("--snr", "snrs", default="24,18,12,6,0,-6", show_default=True,
              help="Comma-separated SNRs in dB.")
@click.option("--model", type=click.Path(exists=True, file_okay=False),
              help="Beat model artifact: classify too (default: detection only).")
@click.option("--work", "work_dir", type=click.Path(file_okay=False), default=None,
              help="Where the noise-stress records are made, and reused from "
                   "[default: OUT/records; without --out, a temporary directory].")
@click.option("--no-xqrs", is_flag=True, help="Skip wfdb's XQRS beside it.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Write noise_stress.json, .md and .png here.")
@click.option("--review-worst", "review_worst", type=click.IntRange(min=0), default=3,
              show_default=True,
              help="With --out, a review page (as device review writes) for each of the N "
                   "rows with the most errors, named in the report; 0: none.")
@click.option("--overwrite", is_flag=True,
              help="Replace an earlier report in --out (else refused); its review pages go.")
def bench_noise_stress_cmd(records, noises, noisy, snrs, model, work_dir, no_xqrs, out,
                           review_worst, overwrite) -> None:
    """Noise stress test: Se/+P per record and SNR (all beats, with gating, outside the
    flagged stretches with the flagged fraction of noisy time), beside XQRS; with --out,
    review pages of the rows with the most errors. Clean records x noise records x SNRs
    are made here; ready-made ones (--noisy-record) are scored as they are."""
    import tempfile

    from vitaledge.device.bench.noise_stress import (
        bench_noise_stress,
        format_markdown,
        save,
        stale_pages,
    )
    from vitaledge.device.io.nst import make_out_dir
    from vitaledge.device.io.records import RecordError
    from vitaledge.device.stream.progress import ProgressLine

    levels = tuple(snr_list(snrs))
    given = click.get_current_context().get_parameter_source
    if not records and not noises and given("snrs") is ParameterSource.COMMANDLINE:
        raise click.UsageError("--snr is the levels records are made at from --record and "
                               "--noise; a ready-made record is scored at its own")
    source = given("review_worst")
    if not out and source is ParameterSource.COMMANDLINE and review_worst > 0:
        raise click.UsageError("--review-worst writes pages next to the report: give --out")
    if out and (Path(out) / "noise_stress.json").exists() and not overwrite:
        raise click.BadParameter(f"{out} holds an earlier report (noise_stress.json): give a "
                                 "new directory, or --overwrite to replace it",
                                 param_hint="'--out'")
    if work_dir is None and out:
        work_dir = str(Path(out) / "records")
    made = [Path(w) for w in (out, work_dir) if w and not Path(w).exists()]

    def remove_made() -> None:  # the folders made for this run, while still empty
        for where in sorted(made, key=lambda p: -len(p.parts)):
            if where.is_dir() and not any(where.iterdir()):
                where.rmdir()

    try:  # where the report, its pages and the records go: before any work
        for where in (out, work_dir):
            if where:
                make_out_dir(where)
    except RecordError as exc:
        remove_made()
        raise click.ClickException(str(exc)) from exc
    try:
        with tempfile.TemporaryDirectory(prefix="vitaledge-nst-") as tmp, \
                ProgressLine() as line:
            res = bench_noise_stress(list(records), list(noises), levels, work_dir or tmp,
                                     model, with_xqrs=not no_xqrs,
                                     progress=line.counter("replay"),
                                     review_dir=out, review_worst=review_worst,
                                     noisy=list(noisy))
    except (RecordError, ValueError, OSError, ModelLoadError) as exc:
        remove_made()
        raise click.ClickException(str(exc)) from exc
    click.echo(format_markdown(res))
    if res["reused_records"]:
        n = len(res["reused_records"])
        click.echo(f"reused {n} noise-stress record{'s' * (n != 1)} made before in "
                   f"{work_dir} from the same clean and noise records", err=True)
    if out:
        try:
            notes = save(res, Path(out))
            for old in stale_pages(res, Path(out)):  # an earlier report's pages
                old.unlink()
        except OSError as exc:
            raise click.ClickException(f"cannot write {out}: {exc.strerror or exc}") from exc
        for note in notes:
            click.echo(note, err=True)
        pages = sum("page" in pg for pg in res.get("review", {}).get("pages", []))
        click.echo(f"saved to {out}/noise_stress.json, .md, .png"
                   + (f" and {pages} review page{'s' * (pages != 1)}" if pages else ""))
        failed = [pg for pg in res.get("review", {}).get("pages", []) if "error" in pg]
        if failed:
            raise click.ClickException(f"{len(failed)} review page(s) not written (the report "
                                       f"is saved): {failed[0]['error']}")


@bench_group.command("stream")
@click.argument("artifact", type=click.Path(exists=True, file_okay=False))
@click.option("--data", type=click.Path(exists=True, file_okay=False),
              help="Directory of WFDB records, or of audio clips (wav/flac, searched "
                   "recursively) for a speech artifact (required).")
@click.option("--records", help="Comma-separated record names (default: all).")
@records_dir_alias()
@deprecated_alias("--record-list", "--records", "records")
@click.option("--clips", type=click.IntRange(min=1),
              help="Speech artifact: stream the first N clips under --data [default: 40].")
@click.option("--chunk", "chunk_s", type=FiniteRange(0.001, 60), default=0.1,
              show_default=True, help="Seconds of signal per pipeline call.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False))
def bench_stream_cmd(artifact, data, records, clips, chunk_s, json_out) -> None:
    """Streaming end to end through the daemon's stage for the artifact's task: decision
    latency, real-time factor, streams per core (beats over WFDB records; speech emotion
    over audio clips, on one thread)."""
    from vitaledge.device.bench.stream import bench_stream, format_stream
    from vitaledge.device.stream.progress import ProgressLine

    if not data:
        raise click.UsageError("Missing option '--data'.")
    not_an_input(json_out, "--json", [*artifact_files(artifact), *data_files(data)])
    json_out_ready(json_out)
    try:
        with ProgressLine() as line:
            res = bench_stream(artifact, data, chunk_s, csv_list(records),
                               progress=line.counter("replaying"), clips=clips)
    except (ValueError, OSError, ModelLoadError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(format_stream(res))
    if json_out:
        write_json(json_out, res)
