"""``vitaledge device ...``: run the daemon, sign, verify and inspect artifacts, score and
review a run's events (``device reliability``: :mod:`.bench.reliability.cli`). The option
grammar every command shares is in :mod:`.cli_shared`; ``vitaledge data`` is
:mod:`.data_cli`, ``vitaledge bench`` :mod:`.bench.cli`.

Imports nothing from the training side and never TensorFlow.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from vitaledge.device.cli_shared import (
    artifact_files,
    deprecated_alias,
    json_out_ready,
    not_an_input,
    record_files,
    write_json,
)
from vitaledge.device.model.runtime import BACKENDS, DELEGATE_LIBS, MAX_THREADS
from vitaledge.device.stream.daemon_config import EMOTION_MODEL_TASKS, FALLBACKS
from vitaledge.device.stream.sinks import sinks_help
from vitaledge.device.stream.sources import SOURCES, rate_needed, sources_help
from vitaledge.device.stream.stages import STAGES


@click.group("device")
def device_group() -> None:
    """On-device runtime and inference daemon."""


#: DaemonConfig keys whose ``device run`` flag is not ``--`` + the key with dashes.
_RUN_FLAGS = {"out": "--sink", "emotion_hop_s": "--emotion-hop"}


def _flag_named(message: str, overrides: dict) -> str:
    """A DaemonConfig value error (``"speed '-1': expected ..."``) about a value given as
    a flag names the flag (``"--speed '-1': expected ..."``); one from the file keeps
    the file's name and key."""
    key, sep, rest = message.partition(" ")
    if sep and overrides.get(key) is not None:
        return f"{_RUN_FLAGS.get(key, '--' + key.replace('_', '-'))} {rest}"
    return message


#: Config keys that do nothing unless another key (top level, or in the same table) is set:
#: (table or "", key, the key it needs).
_NEEDS = (("", "api_host", "api_port"), ("", "api_token_file", "api_port"),
          ("ota", "models_dir", "enabled"), ("ota", "probation_s", "enabled"))


def config_keys_that_do_nothing(config: str, port_flag: bool, ota_flag: bool) -> None:
    """Refuse a config file setting a key whose feature it never mentions (api_host with
    no api_port, an [ota] table's models_dir with no enabled) and no flag switches on: it
    was taken and did nothing; a key at its default value is as good as absent. A feature
    switched off on purpose (``api_port = 0``, ``enabled = false``) or given by a flag
    (``--api-port``, ``--ota``, either way) keeps its keys."""
    import tomllib

    from vitaledge.device.stream.daemon_config import DaemonConfig
    from vitaledge.device.stream.ota import OtaOptions

    raw = tomllib.loads(Path(config).read_text())  # read whole by DaemonConfig already
    defaults = {"": DaemonConfig(), "ota": OtaOptions()}
    for table, key, needs in _NEEDS:
        where = raw.get(table, {}) if table else raw
        flagged = ota_flag if table else port_flag
        set_here = key in where and where[key] != getattr(defaults[table], key)
        if set_here and needs not in where and not flagged:
            name = f"[{table}] {key}" if table else key
            raise click.ClickException(f"{config}: {name} is for {needs} (or its flag): "
                                       f"without it, it does nothing")


@device_group.command("run")
@click.option("--config", "config", type=click.Path(exists=True, dir_okay=False),
              help="device.toml; flags given here override it.")
@click.option("--model", help="Artifact directory (model.tflite + manifest.json), or its "
                              "model.tflite: a model of task " + ", ".join(STAGES) + ".")
@click.option("--emotion-model", help="A second artifact run on the same ECG stream "
                                      "(sliding windows): a model of task "
                                      + ", ".join(EMOTION_MODEL_TASKS) + ".")
@click.option("--emotion-hop", "emotion_hop_s", type=float,
              help="Seconds between emotion estimates (default: the manifest's hop).")
@click.option("--source", help=sources_help())
@click.option("--fs", type=float, help=f"Sample rate of {rate_needed()} sources (Hz).")
@click.option("--speed", help="Replay speed: 'max' or a factor of real time (1 = real time).")
@click.option("--lead", help="The ECG lead: the one to replay from a WFDB record, or the one "
                             "a stream of one signal carries (default MLII; the beat check "
                             "adds beats only on a lead its network was trained on).")
@click.option("--sink", "sinks", multiple=True,
              help=f"Event sink: {sinks_help()} (repeatable; docs/fleet.md).")
@deprecated_alias("--out", "--sink", "sinks", multiple=True)
@click.option("--append", is_flag=True, default=None,
              help="Add this run to sink files that already hold events (else refused); "
                   "every event carries its run id.")
@click.option("--fsync", help="JSONL durability: batch (default) | interval:S | never.")
@click.option("--api-host", help="API bind address (default 127.0.0.1).")
@click.option("--api-port", type=int, help="API port (0 = no API).")
@click.option("--api-token-file", type=click.Path(dir_okay=False),
              help="File holding the API bearer token (else $VITALEDGE_API_TOKEN); "
                   "required when --api-host is not loopback.")
@click.option("--api-rate", type=float, help="API requests per second per client (20).")
@click.option("--source-token-file", type=click.Path(dir_okay=False),
              help="File holding the token " + "/".join(
                  n for n, k in SOURCES.items() if k.listens) + " clients send first (else "
                   "$VITALEDGE_SOURCE_TOKEN); required when the source is not on loopback.")
@click.option("--verify-key", type=click.Path(dir_okay=False),
              help="Ed25519 public key (PEM): refuse models without a valid manifest.sig.")
@click.option("--ota", "ota", is_flag=True, default=None,
              help="Take over-the-air model deployments from the broker of the mqtt:// "
                   "sink (needs --verify-key; config: [ota] enabled = true).")
@click.option("--models-dir", type=click.Path(file_okay=False),
              help="Models directory of over-the-air updates: current, previous, releases "
                   "(config: [ota] models_dir).")
@click.option("--probation", "probation_s", type=float,
              help="Seconds a deployed model is watched before it is kept (config: [ota] "
                   "probation_s, default 30).")
@click.option("--threads", type=click.IntRange(1, MAX_THREADS),
              help="Interpreter threads (default 1).")
@click.option("--backend", type=click.Choice(BACKENDS),
              help="LiteRT backend (default: first installed).")
@click.option("--delegate", help=" | ".join(["xnnpack (default)", "none", *DELEGATE_LIBS,
                                             "PATH.so"]))
@click.option("--fallback", type=click.Choice(FALLBACKS),
              help="cpu: run on the CPU when the delegate cannot be loaded.")
@click.option("--no-gating", "no_gating", is_flag=True, default=None,
              help="Turn signal-quality gating off: beats in unreadable stretches are "
                   "classified too, none is flagged doubtful (config: gating = false).")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                                case_sensitive=False))
@click.option("--json", "json_out", type=click.Path(dir_okay=False),
              help="Write the run's summary here (JSON: counts, rates, rhythm, stages).")
def run_cmd(config, model, emotion_model, emotion_hop_s, source, fs, speed, lead, sinks,
            append, fsync,
            api_host, api_port, api_token_file, api_rate, source_token_file, verify_key,
            ota, models_dir, probation_s,
            threads, backend, delegate, fallback, no_gating, log_level, json_out) -> None:
    """Run the inference daemon: stream ECG in, beat events (and emotion estimates) out;
    or audio in, speech-emotion estimates out. SIGTERM drains (1.5 s at most) and exits 0,
    SIGHUP reloads the model(s); a failed run (pipeline or source error, a sink that lost
    events) exits 1, and so does a source that ends by itself having given nothing to
    analyse (no readable sample, or only signal faults)."""
    import logging
    import signal

    from vitaledge.device.model.manifest import ManifestError
    from vitaledge.device.model.runtime import ModelLoadError
    from vitaledge.device.stream.daemon import Daemon, DaemonFailure
    from vitaledge.device.stream.daemon_config import DaemonConfig
    from vitaledge.device.stream.pipeline import SignalError
    from vitaledge.device.stream.progress import ProgressLine
    from vitaledge.device.stream.report import format_position, format_summary, unreadable_input
    from vitaledge.device.stream.sinks import sink_file
    from vitaledge.device.stream.sources import SourceError, is_live

    logging.getLogger().setLevel(log_level.upper())
    overrides = {"model": model, "emotion_model": emotion_model,
                 "emotion_hop_s": emotion_hop_s, "source": source, "fs": fs, "speed": speed,
                 "lead": lead,
                 "out": list(sinks) or None, "append": append, "fsync": fsync,
                 "api_host": api_host,
                 "api_port": api_port, "api_token_file": api_token_file,
                 "api_rate": api_rate, "source_token_file": source_token_file,
                 "verify_key": verify_key,
                 "threads": threads, "backend": backend,
                 "delegate": delegate, "fallback": fallback,
                 "gating": False if no_gating else None}
    ota_flags = {k: v for k, v in {"enabled": ota, "models_dir": models_dir,
                                   "probation_s": probation_s}.items() if v is not None}
    try:
        cfg = (DaemonConfig.from_toml(config, **overrides) if config else
               DaemonConfig(**{k: v for k, v in overrides.items() if v is not None}))
    except ValueError as exc:
        raise click.ClickException(_flag_named(str(exc), overrides)) from exc
    if ota_flags:  # the [ota] table's keys given as flags
        import dataclasses

        try:
            cfg = dataclasses.replace(cfg, ota={**cfg.ota, **ota_flags})
        except ValueError as exc:
            raise click.ClickException(str(exc).replace("ota probation_s", "--probation")
                                       ) from exc
    try:
        if not cfg.model or not cfg.source:
            raise click.UsageError("give --model and --source (or a --config that sets them)")
        if speed is not None and is_live(cfg.source):
            raise click.UsageError(f"--speed paces a replay; {cfg.source} comes at its own "
                                   "pace")
        for flag, given, needs, on in (
                ("--api-host", api_host, "--api-port", bool(cfg.api_port)),
                ("--api-token-file", api_token_file, "--api-port", bool(cfg.api_port)),
                ("--models-dir", models_dir, "--ota", bool(cfg.ota.get("enabled"))),
                ("--probation", probation_s, "--ota", bool(cfg.ota.get("enabled")))):
            if given is not None and not on:  # it would be taken and ignored
                raise click.UsageError(f"{flag} is for {needs} (or its config key): without "
                                       "it, it does nothing")
        if config:
            config_keys_that_do_nothing(config, api_port is not None, ota is not None)
        source_path = None if is_live(cfg.source) else cfg.source.partition(":")[2]
        inputs = [config, *artifact_files(cfg.model), *artifact_files(cfg.emotion_model),
                  *(record_files(source_path) if source_path else [])]
        for o in cfg.out:  # a sink (with --append too) must not write into what is read
            not_an_input(sink_file(o), "--sink", inputs)
        not_an_input(json_out, "--json", [*inputs, *(sink_file(o) for o in cfg.out)])
        json_out_ready(json_out)
        if hasattr(signal, "SIGHUP"):  # a reload asked for while starting (systemd's
            # ExecReload; a serial source waits up to 10 s for its hello) killed the
            # daemon: it is ignored until run() installs the reload
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
        daemon = Daemon(cfg)
    except (ValueError, ManifestError, ModelLoadError, SourceError, SignalError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    with ProgressLine(enabled=False if is_live(cfg.source) else None) as line:
        t0 = time.monotonic()
        try:
            summary = daemon.run(progress=lambda pos: line.update(
                format_position(pos, time.monotonic() - t0))) if line.enabled else daemon.run()
            failure = None
        except DaemonFailure as exc:  # exit 1 after the summary: systemd restarts us
            summary, failure = exc.summary, exc
    if summary:
        click.echo(format_summary(summary), err=True)
    if json_out:
        write_json(json_out, summary)
    if failure is not None:
        raise click.ClickException(f"the run failed: {failure}")
    if not summary or summary.get("stop_requested"):  # stopped by a signal: exit 0
        return
    rejected = unreadable_input(summary)  # the source ended by itself, and ...
    if rejected and not summary.get("samples"):
        raise click.ClickException(f"no sample could be read from {cfg.source}: {rejected} "
                                   "(is that the source's format?)")
    if not summary.get("samples"):
        raise click.ClickException(f"{cfg.source} ended before its first sample: nothing "
                                   "was analysed")
    if sum((summary.get("signal_fault_samples") or {}).values()) >= summary["samples"]:
        raise click.ClickException(f"no usable sample in {cfg.source}: every one of its "
                                   f"{summary['samples']:,} samples was a signal fault (see "
                                   "the line above)")


@device_group.command("keygen")
@click.option("--key", "private", type=click.Path(dir_okay=False),
              help="Private key to write (PEM, mode 0600; required); the public key goes "
                   "to KEY.pub.")
@deprecated_alias("--out", "--key", "private", required=True, type=click.Path(dir_okay=False))
def keygen_cmd(private) -> None:
    """Make an Ed25519 key pair for signing model manifests (convert --sign KEY)."""
    from vitaledge.device.model.signing import generate_keypair

    try:
        kid = generate_keypair(private, f"{private}.pub")
    except FileExistsError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:  # '[Errno 2] ...': which file, and why, in words
        raise click.ClickException(f"cannot write {exc.filename or private}: "
                                   f"{exc.strerror or exc}") from exc
    click.echo(f"key {kid}: private {private}, public {private}.pub (give the device "
               "--verify-key with the .pub)")


@device_group.command("sign")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--key", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Ed25519 private key (PEM).")
def sign_cmd(artifacts, key) -> None:
    """Sign artifact manifests: writes manifest.sig beside each manifest.json."""
    from vitaledge.device.model.signing import SignatureError, check_whole, sign_artifact

    for a in artifacts:
        try:
            check_whole(a)
            click.echo(f"signed {sign_artifact(a, key)}")
        except SignatureError as exc:
            raise click.ClickException(str(exc)) from exc


@device_group.command("verify")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--key", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Ed25519 public key (PEM).")
def verify_cmd(artifacts, key) -> None:
    """Check artifacts as the daemon would with --verify-key (signature, sha256, size of the
    model and of its self-test vectors)."""
    from vitaledge.device.model.manifest import ManifestError, load_manifest
    from vitaledge.device.model.selftest import check_vectors_file
    from vitaledge.device.model.signing import verify_artifact

    bad = 0
    for a in artifacts:
        try:
            verify_artifact(a, key)
            m, path = load_manifest(a)
            check_vectors_file(path.parent, m)
            click.echo(f"ok       {a}")
        except ManifestError as exc:
            bad += 1
            click.echo(f"REFUSED  {a}: {exc}")
    if bad:
        raise SystemExit(1)


@device_group.command("selftest")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--key", type=click.Path(exists=True, dir_okay=False),
              help="Ed25519 public key (PEM): check the signature too, as the device does.")
@click.option("--backend", type=click.Choice(BACKENDS),
              help="LiteRT backend (default: first installed).")
@click.option("--delegate", default="xnnpack", show_default=True,
              help="xnnpack | none | edgetpu | gpu | PATH.so")
def selftest_cmd(artifacts, key, backend, delegate) -> None:
    """Run artifacts on their self-test vectors (written by convert, covered by the
    signature) through this machine's runtime: what a device does before it takes an
    over-the-air deployment. Exits 1 when one fails or has none."""
    from vitaledge.device.model.manifest import ManifestError
    from vitaledge.device.model.runtime import CPU_HINT, FALLBACK_HINT, Model, ModelLoadError
    from vitaledge.device.model.selftest import check

    bad = 0
    for a in artifacts:
        try:
            r = check(Model(a, backend=backend, delegate=delegate, verify_key=key), a)
        except (ManifestError, ModelLoadError) as exc:
            bad += 1
            click.echo(f"REFUSED  {a}: {str(exc).replace(FALLBACK_HINT, CPU_HINT)}")
            continue
        line = (f"{r.vectors} vectors, max |diff| {r.max_abs_diff:.3g} (tolerance "
                f"{r.atol:g}), {r.argmax_mismatches} changed class")
        click.echo(f"ok       {a}: {line}" if r.passed else f"FAILED   {a}: {r.reason}")
        bad += not r.passed
    if bad:
        raise SystemExit(1)


@device_group.command("info")
@click.argument("artifact", type=click.Path(exists=True))
@click.option("--key", type=click.Path(exists=True, dir_okay=False),
              help="Ed25519 public key (PEM): check the signature with it.")
def info_cmd(artifact, key) -> None:
    """What an artifact is: task, inputs (shape, dtype, quantization), labels, output,
    metrics measured at conversion, sha256 and signature status."""
    from vitaledge.device.model.info import (
        INVALID,
        MATCHES,
        NOT_A_MODEL,
        artifact_info,
        format_info,
    )
    from vitaledge.device.model.manifest import ManifestError

    try:
        info = artifact_info(artifact, key)
    except ManifestError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(format_info(info))
    if info["file_check"].startswith(NOT_A_MODEL):
        raise click.ClickException(f"{artifact}: {info['file_check']}")
    if info["file_check"] != MATCHES:
        raise click.ClickException(f"{artifact}: the model file does not match its manifest")
    if info["vectors_check"] != MATCHES:  # devices refuse it (self-test at load, deploy)
        raise click.ClickException(f"{artifact}: the self-test vectors file does not match "
                                   "its manifest")
    if info["signature"].startswith(INVALID):
        raise click.ClickException(f"{artifact}: the signature is invalid")


@device_group.command("status")
@click.option("--api", "url", default="http://127.0.0.1:8787", show_default=True,
              help="The running daemon's API (device run --api-port).")
@click.option("--api-token-file", type=click.Path(exists=True, dir_okay=False),
              help="File holding the API bearer token (else $VITALEDGE_API_TOKEN).")
@click.option("--json", "as_json", is_flag=True, help="Print /health as JSON instead.")
def status_cmd(url, api_token_file, as_json) -> None:
    """The running daemon's /health in words: state, uptime, model, samples, events."""
    from vitaledge.device.stream.auth import TokenError, load_token
    from vitaledge.device.stream.report import StatusError, fetch_health, format_health

    try:
        token = load_token(api_token_file or "", "VITALEDGE_API_TOKEN", "--api-token-file")
        health = fetch_health(url, token)
    except (StatusError, TokenError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(health, indent=2) if as_json else format_health(health))


def _reliability_group():
    from vitaledge.device.bench.reliability.cli import reliability_group

    return reliability_group


device_group.add_command(_reliability_group())


@device_group.command("score")
@click.argument("events", type=click.Path(exists=True, dir_okay=False))
@click.option("--record", required=True, help="WFDB record path (with .atr annotations).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write JSON here.")
@click.option("--run", "run_id", help="Run to score when the file holds several "
                                     "(device run --append); default: the last.")
def score_cmd(events, record, json_out, run_id) -> None:
    """Score daemon beat events against a record's reference annotations (one run of the
    file: the last, or --run ID)."""
    from vitaledge.device.eval.score_events import (
        EventsError,
        ends_early,
        format_gated,
        format_score,
        in_file,
        load_events,
        quality_segments,
        read_runs,
        score_events,
        score_gated,
        torn_last_line,
    )
    from vitaledge.device.io.records import RecordError
    from vitaledge.device.stream.report import clock

    not_an_input(json_out, "--json", [events, *record_files(record)])
    json_out_ready(json_out)
    try:
        runs = list(read_runs(events))
        chosen = run_id if run_id is not None else (runs[-1] if runs else None)
        beats = load_events(events, run_id)
        s = score_events(beats, record)
        segments = quality_segments(events, chosen)  # checked before anything is printed
        gated = score_gated(beats, segments, record)
        torn = torn_last_line(events)
    except EventsError as exc:
        raise click.ClickException(in_file(events, exc)) from exc
    except RecordError as exc:
        raise click.ClickException(str(exc)) from exc
    s = {**s, "run": chosen, "runs_in_file": len(runs), "torn_last_line": torn}
    if torn:
        click.echo(f"note: the last line of {events} is cut off mid-event (a crash, or a copy "
                   "cut short): skipped")
    if len(runs) > 1:
        click.echo(f"{events} holds {len(runs)} runs ({', '.join(runs)}); scoring run "
                   f"{chosen}{'' if run_id else ' (the last; --run ID for another)'}")
    click.echo(format_score(s))
    if ends_early(s):
        click.echo(f"note: the events stop at {clock(s['last_event_s'])} of record "
                   f"{s['record']}'s {clock(s['record_s'])} (a run cut short?): the beats "
                   "after it count as missed")
    s["signal_quality"] = gated
    if segments or any("quality" in e for e in beats):  # a gated run
        click.echo("\n" + format_gated(s["signal_quality"]))
    if json_out:
        write_json(json_out, s)


@device_group.command("review")
@click.argument("events", type=click.Path(exists=True, dir_okay=False))
@click.option("--record", required=True, help="WFDB record path the events came from "
                                               "(its .atr, when present, is compared).")
@click.option("--out", type=click.Path(dir_okay=False), default="review.html",
              show_default=True, help="The HTML page to write (one self-contained file).")
@click.option("--run", "run_id", help="Run to show when the file holds several "
                                     "(device run --append); default: the last.")
def review_cmd(events, record, out, run_id) -> None:
    """One self-contained HTML page to review beat events on the ECG: zoomable strip,
    beats by class and quality, unreadable segments; against the record's annotations,
    missed / false / misclassified beats listed and marked, Se, +P and class confusion."""
    from vitaledge.device.eval.review import format_summary, write_review
    from vitaledge.device.eval.score_events import EventsError, in_file
    from vitaledge.device.io.records import RecordError

    not_an_input(out, "--out", [events, *record_files(record)])
    try:
        review = write_review(events, record, out, run=run_id)
    except EventsError as exc:
        raise click.ClickException(in_file(events, exc)) from exc
    except RecordError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror or exc}") from exc
    click.echo(format_summary(review, out))
