"""``vitaledge data fetch`` (downloads) and ``vitaledge device ...``.

Imports nothing from the training side and never TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group("data")
def data_group() -> None:
    """Make or fetch ECG records."""
    # ``data synth`` (simulated patients) is added by the root: device never imports firmware_sim.


@data_group.command("fetch")
@click.argument("database", type=click.Choice(["mitdb"]))
@click.option("--out", type=click.Path(file_okay=False), required=True)
@click.option("--records", "record_list", help="Comma-separated records (default: all 48).")
def fetch_cmd(database, out, record_list) -> None:
    """Download a PhysioNet database with wfdb (needs network access to PhysioNet)."""
    from vitaledge.device.io.fetch import FetchError, fetch_physionet

    names = [r.strip() for r in record_list.split(",")] if record_list else None
    try:
        n = fetch_physionet(database, Path(out), names)
    except FetchError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"downloaded {n} records of {database} to {out}")


@click.group("device")
def device_group() -> None:
    """On-device runtime and inference daemon."""


@device_group.command("run")
@click.option("--config", "config", type=click.Path(exists=True, dir_okay=False),
              help="device.toml; flags given here override it.")
@click.option("--model", help="Artifact directory (model.tflite + manifest.json): a beat, "
                              "emotion-ecg or emotion-speech model.")
@click.option("--emotion-model", help="A second, emotion-ecg artifact run on the same ECG "
                                      "stream (sliding 48 s windows).")
@click.option("--emotion-hop", "emotion_hop_s", type=float,
              help="Seconds between emotion estimates (default: the manifest's hop).")
@click.option("--source", help="replay:PATH (WFDB, CSV or WAV) | stdin | stdin-pcm | "
                               "tcp:HOST:PORT | serial:PATH[@BAUD] | frames+tcp:HOST:PORT "
                               "(framed protocol, docs/protocol.md)")
@click.option("--fs", type=float, help="Sample rate of stdin/tcp/frames+tcp/CSV sources (Hz).")
@click.option("--speed", help="Replay speed: 'max' or a factor of real time (1 = real time).")
@click.option("--lead", help="Lead to replay from WFDB records (default MLII).")
@click.option("--out", "out", multiple=True,
              help="Sink: PATH.jsonl, PATH.db, jsonl:PATH, sqlite:PATH or stdout (repeatable).")
@click.option("--fsync", help="JSONL durability: batch (default) | interval:S | never.")
@click.option("--api-host", help="API bind address (default 127.0.0.1).")
@click.option("--api-port", type=int, help="API port (0 = no API).")
@click.option("--api-token-file", type=click.Path(dir_okay=False),
              help="File holding the API bearer token (else $VITALEDGE_API_TOKEN); "
                   "required when --api-host is not loopback.")
@click.option("--api-rate", type=float, help="API requests per second per client (20).")
@click.option("--verify-key", type=click.Path(dir_okay=False),
              help="Ed25519 public key (PEM): refuse models without a valid manifest.sig.")
@click.option("--threads", type=int, help="Interpreter threads (default 1).")
@click.option("--backend", type=click.Choice(["ai-edge-litert", "tflite-runtime", "tf"]),
              help="LiteRT backend (default: first installed).")
@click.option("--delegate", help="xnnpack (default) | none | edgetpu | gpu | PATH.so")
@click.option("--fallback", type=click.Choice(["none", "cpu"]),
              help="cpu: run on the CPU when the delegate cannot be loaded.")
@click.option("--log-level", default="INFO", show_default=True)
def run_cmd(config, model, emotion_model, emotion_hop_s, source, fs, speed, lead, out, fsync,
            api_host, api_port, api_token_file, api_rate, verify_key, threads, backend,
            delegate, fallback, log_level) -> None:
    """Run the inference daemon: stream ECG in, beat events (and emotion estimates) out;
    or audio in, speech-emotion estimates out. SIGTERM drains and exits 0, SIGHUP reloads
    the model(s)."""
    import logging

    from vitaledge.device.model.manifest import ManifestError
    from vitaledge.device.model.runtime import ModelLoadError
    from vitaledge.device.stream.daemon import Daemon, DaemonConfig
    from vitaledge.device.stream.pipeline import SignalError
    from vitaledge.device.stream.sources import SourceError

    logging.getLogger().setLevel(log_level.upper())
    overrides = {"model": model, "emotion_model": emotion_model,
                 "emotion_hop_s": emotion_hop_s, "source": source, "fs": fs, "speed": speed,
                 "lead": lead,
                 "out": list(out) or None, "fsync": fsync, "api_host": api_host,
                 "api_port": api_port, "api_token_file": api_token_file,
                 "api_rate": api_rate, "verify_key": verify_key,
                 "threads": threads, "backend": backend,
                 "delegate": delegate, "fallback": fallback}
    try:
        cfg = (DaemonConfig.from_toml(config, **overrides) if config else
               DaemonConfig(**{k: v for k, v in overrides.items() if v is not None}))
        if not cfg.model or not cfg.source:
            raise click.UsageError("give --model and --source (or a --config that sets them)")
        daemon = Daemon(cfg)
    except (ValueError, ManifestError, ModelLoadError, SourceError, SignalError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    summary = daemon.run()
    click.echo(json.dumps(summary), err=True)


@device_group.command("keygen")
@click.option("--out", "private", required=True, type=click.Path(dir_okay=False),
              help="Private key (PEM, written mode 0600); the public key goes to OUT.pub.")
def keygen_cmd(private) -> None:
    """Make an Ed25519 key pair for signing model manifests (convert --sign KEY)."""
    from vitaledge.device.model.signing import generate_keypair

    try:
        kid = generate_keypair(private, f"{private}.pub")
    except (FileExistsError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"key {kid}: private {private}, public {private}.pub (give the device "
               "--verify-key with the .pub)")


@device_group.command("sign")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--key", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Ed25519 private key (PEM).")
def sign_cmd(artifacts, key) -> None:
    """Sign artifact manifests: writes manifest.sig beside each manifest.json."""
    from vitaledge.device.model.signing import SignatureError, sign_artifact

    for a in artifacts:
        try:
            click.echo(f"signed {sign_artifact(a, key)}")
        except SignatureError as exc:
            raise click.ClickException(str(exc)) from exc


@device_group.command("verify")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--key", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Ed25519 public key (PEM).")
def verify_cmd(artifacts, key) -> None:
    """Check artifacts as the daemon would with --verify-key (signature, sha256, size)."""
    from vitaledge.device.model.manifest import ManifestError, load_manifest
    from vitaledge.device.model.signing import verify_artifact

    bad = 0
    for a in artifacts:
        try:
            verify_artifact(a, key)
            load_manifest(a)
            click.echo(f"ok       {a}")
        except ManifestError as exc:
            bad += 1
            click.echo(f"REFUSED  {a}: {exc}")
    if bad:
        raise SystemExit(1)


def _reliability_group():
    from vitaledge.device.bench.reliability import reliability_group

    return reliability_group


device_group.add_command(_reliability_group())


@device_group.command("score")
@click.argument("events", type=click.Path(exists=True, dir_okay=False))
@click.option("--record", required=True, help="WFDB record path (with .atr annotations).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write JSON here.")
def score_cmd(events, record, json_out) -> None:
    """Score daemon beat events against a record's reference annotations."""
    from vitaledge.device.eval.score_events import format_score, load_events, score_events

    s = score_events(load_events(events), record)
    click.echo(format_score(s))
    if json_out:
        Path(json_out).write_text(json.dumps(s, indent=2) + "\n")


class _BenchGroup(click.Group):
    """``vitaledge bench ARTIFACT...`` means ``vitaledge bench run ARTIFACT...``."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("bench", cls=_BenchGroup)
def bench_group() -> None:
    """Benchmarks that print and save their figures.

    vitaledge bench ARTIFACT_DIR... [options] is short for vitaledge bench run."""


@bench_group.command("detector")
@click.option("--records", "directory", required=True,
              type=click.Path(exists=True, file_okay=False), help="WFDB records with .atr.")
@click.option("--no-xqrs", is_flag=True, help="Skip the wfdb XQRS comparison.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write JSON here.")
def bench_detector_cmd(directory, no_xqrs, json_out) -> None:
    """R-peak detection Se / +P per record: vitaledge's streaming detector vs wfdb XQRS."""
    from vitaledge.device.bench.detector import bench_detector, format_table

    res = bench_detector(directory, with_xqrs=not no_xqrs)
    click.echo(format_table(res))
    if json_out:
        Path(json_out).write_text(json.dumps(res, indent=2) + "\n")


def _ints(value: str) -> list[int]:
    return [int(v) for v in value.split(",") if v.strip()]


@bench_group.command("run")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--threads", default="1", show_default=True, help="Comma list, e.g. 1,2,4.")
@click.option("--delegate", "delegates", default="xnnpack", show_default=True,
              help="Comma list of xnnpack, none, edgetpu, gpu.")
@click.option("--batch", "batches", default="1", show_default=True, help="Comma list.")
@click.option("--warmup", type=int, default=50, show_default=True)
@click.option("--runs", type=int, help="Timed runs (default: as many as --min-seconds allows).")
@click.option("--min-seconds", type=float, default=2.0, show_default=True)
@click.option("--data", type=click.Path(exists=True),
              help="heldout.npz from convert (the run's held-out beats) or a WFDB "
                   "directory: real inputs, and accuracy / macro F1 per row.")
@click.option("--backend", type=click.Choice(["ai-edge-litert", "tflite-runtime", "tf"]))
@click.option("--keras", "keras_runs", multiple=True,
              type=click.Path(exists=True, file_okay=False),
              help="Training run: add its Keras model as baseline rows (needs TF; repeatable).")
@click.option("--pin", help="Pin the benchmark to these CPUs, e.g. 0 or 0,1.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Write bench.json/.csv/.md/.txt (and plots when matplotlib is installed).")
def bench_run_cmd(artifacts, threads, delegates, batches, warmup, runs, min_seconds, data,
                  backend, keras_runs, pin, out) -> None:
    """Latency (load, first, p50/p90/p99), throughput, memory and accuracy per artifact x
    delegate x threads x batch."""
    from vitaledge.device.bench.latency import format_table as fmt
    from vitaledge.device.bench.latency import run_bench, save

    try:
        res = run_bench([Path(a) for a in artifacts], _ints(threads),
                        [d.strip() for d in delegates.split(",")], _ints(batches), warmup,
                        runs, min_seconds, data, backend, keras_runs=list(keras_runs),
                        pin=_ints(pin) if pin else None)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(fmt(res.to_dict()))
    if out:
        save(res, Path(out))
        click.echo(f"saved to {out}/bench.json, bench.csv, bench.md, bench.txt")


@bench_group.command("compare")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True,
                                                                     dir_okay=False))
def bench_compare_cmd(results) -> None:
    """Side by side p50 latencies from bench.json files of several machines or runs."""
    from vitaledge.device.bench.latency import compare

    try:
        loaded = [json.loads(Path(r).read_text()) for r in results]
        click.echo(compare(loaded, [Path(r).parent.name or Path(r).stem for r in results]))
    except (ValueError, json.JSONDecodeError) as exc:
        raise click.ClickException(str(exc)) from exc


@bench_group.command("stream")
@click.argument("artifact", type=click.Path(exists=True, file_okay=False))
@click.option("--records", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--record-list", help="Comma-separated record names (default: all).")
@click.option("--chunk", "chunk_s", type=float, default=0.1, show_default=True,
              help="Seconds of signal per pipeline call.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False))
def bench_stream_cmd(artifact, records, record_list, chunk_s, json_out) -> None:
    """Streaming end to end: decision latency, real-time factor, streams per core."""
    from vitaledge.device.bench.stream import bench_stream, format_stream

    names = [r.strip() for r in record_list.split(",")] if record_list else None
    res = bench_stream(artifact, records, chunk_s, names)
    click.echo(format_stream(res))
    if json_out:
        Path(json_out).write_text(json.dumps(res, indent=2) + "\n")
