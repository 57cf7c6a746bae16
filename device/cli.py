"""``vitaledge data fetch`` (downloads) and ``vitaledge device ...``; and the CLI grammar
every stage's commands share (the helpers below; device imports from no other stage, so
they live here and the other stages import them).

One name, one meaning: ``--data DIR`` a record/data directory, ``--records LIST`` a comma
list of record names, ``--n-records N`` a count, ``--sink SPEC`` a daemon event sink
(repeatable), ``--out DIR`` an output directory, ``--json FILE`` a results file,
``--key FILE`` a key file. A renamed option keeps its old spelling as a hidden alias that
still works and warns on stderr.

Imports nothing from the training side and never TensorFlow.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

import click
from click.core import ParameterSource

from vitaledge.device.cli_shared import (  # noqa: F401 - shared: train, convert, firmware
    POSITIVE,
    FiniteRange,
    artifact_files,
    data_files,
    json_out_ready,
    not_an_input,
    out_dir_ready,
    record_files,
    write_json,
)
from vitaledge.device.io.fetch import DATABASES
from vitaledge.device.model.runtime import BACKENDS, MAX_THREADS, ModelLoadError


def _given(value) -> bool:
    return value is not None and value != ()


def _warn_renamed(old: str, new: str) -> None:
    click.echo(f"Warning: {old} is deprecated and will be removed; use {new}.", err=True)


def deprecated_alias(old: str, new: str, dest: str, *, required: bool = False,
                     **option_kwargs):
    """Keep the old spelling ``old`` of option ``new`` working: a hidden option whose value
    goes to the command's ``dest`` parameter, with a deprecation warning on stderr.

    Use it as an option decorator; ``option_kwargs`` (``type``, ``multiple``) should match
    the new option's. Giving both spellings is a usage error (repeatable options merge).
    ``required``: the new option is required, one spelling or the other (declare the new
    option itself without ``required=True``, or the old spelling alone would fail)."""
    alias = "_old_" + old.lstrip("-").replace("-", "_")
    multiple = option_kwargs.get("multiple", False)

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            value = kwargs.pop(alias, None)
            if _given(value):
                _warn_renamed(old, new)
                current = kwargs.get(dest)
                if multiple:
                    kwargs[dest] = (*(current or ()), *value)
                elif _given(current) and click.get_current_context().get_parameter_source(
                        dest) not in (None, ParameterSource.DEFAULT):
                    raise click.UsageError(f"give {new} once, not also as {old}")
                else:
                    kwargs[dest] = value
            if required and not _given(kwargs.get(dest)):
                raise click.UsageError(f"Missing option '{new}'.")
            return fn(*args, **kwargs)

        return click.option(old, alias, hidden=True, **option_kwargs)(wrapper)

    return deco


def records_dir_alias(data_dest: str = "data", records_dest: str = "records"):
    """``--records`` used to name the record directory; it is now the comma list of record
    names and ``--data`` the directory. A ``--records`` value that is an existing directory
    (no comma) is taken as the old spelling of ``--data``, with a deprecation warning.
    Put it above ``deprecated_alias("--record-list", ...)`` so it runs first."""
    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            value = kwargs.get(records_dest)
            if value and "," not in value and Path(value).is_dir():
                _warn_renamed("--records DIR", "--data DIR")
                if _given(kwargs.get(data_dest)):
                    raise click.UsageError("give the record directory once, as --data DIR")
                kwargs[data_dest], kwargs[records_dest] = value, None
            return fn(*args, **kwargs)

        return wrapper

    return deco


def csv_list(value: str | None) -> list[str] | None:
    """A ``--records``-style comma list as a list (None when not given); a list given that
    names nothing (``","`` or ``""``) is a usage error, not "all", and so is a name given
    twice (``100,100`` scored every beat of 100 twice)."""
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise click.UsageError(f"the comma list {value!r} names nothing")
    if twice := repeated(names):
        raise click.UsageError(f"the comma list {value!r} names {twice[0]!r} twice")
    return names


def repeated(items: list) -> list:
    """The items ``items`` holds more than once, each once, in the order they first come."""
    return list(dict.fromkeys(v for v in items if items.count(v) > 1))


class SampleRate(click.ParamType):
    """A sample rate in Hz inside :data:`~vitaledge.device.io.records.FS_RANGE`, the rates
    every record reader accepts; NaN and infinities fail too."""

    name = "hz"

    def convert(self, value, param, ctx):
        from vitaledge.device.io.records import FS_RANGE

        fs = click.FLOAT.convert(value, param, ctx)
        lo, hi = FS_RANGE
        if not lo <= fs <= hi:  # NaN fails too
            self.fail(f"{fs:g} Hz is outside {lo:g}-{hi:g} Hz (the sample rates a record "
                      "may have)", param, ctx)
        return float(fs)


#: SNRs ``--snr`` accepts, in dB: beyond 60 dB the noise is below the records' resolution,
#: below -20 dB the noise is ten times the QRS and a 16-bit record clips.
SNR_RANGE_DB = (-20.0, 60.0)


def snr_list(text: str) -> list[float]:
    """``--snr 24,12,0`` as numbers in dB (``data nst`` and ``bench noise-stress``)."""
    lo, hi = SNR_RANGE_DB
    items = [s.strip() for s in (text or "").split(",")]
    try:
        levels = [float(s) for s in items] if all(items) else []  # "6,," is a slip, not 6
    except ValueError:
        levels = []
    if not levels or not all(lo <= v <= hi for v in levels):  # also NaN, inf
        raise click.BadParameter(f"{text!r}: expected a comma list of SNRs from {lo:g} to "
                                 f"{hi:g} dB, e.g. 24,12,0", param_hint="--snr")
    levels = [v + 0.0 for v in levels]  # -0 is 0 (a record named 100_ma-0 otherwise)
    names = [f"{v:g}" for v in levels]  # records are named by it: 12.000000001 is 12
    twice = sorted({n for n in names if names.count(n) > 1}, key=float)
    if twice:  # data nst wrote the same record twice without a word
        raise click.BadParameter(f"{text!r}: {', '.join(twice)} dB given twice (one record "
                                 "per SNR, named by it)", param_hint="--snr")
    return levels


@click.group("data")
def data_group() -> None:
    """Make or fetch ECG records."""
    # ``data synth`` (simulated patients) is added by the root: device never imports firmware_sim.


@data_group.command("nst")
@click.option("--record", "records", required=True, multiple=True,
              type=click.Path(dir_okay=False),
              help="Clean WFDB record with .atr annotations (repeatable), e.g. mitdb/118.")
@click.option("--noise", "noises", required=True, multiple=True,
              type=click.Path(dir_okay=False),
              help="Noise WFDB record (repeatable), e.g. nstdb-noise/ma; any record you bring.")
@click.option("--snr", "snrs", default="24,18,12,6,0,-6", show_default=True,
              help="Comma-separated SNRs in dB (the NST database's six by default).")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Directory for the noise-stress records.")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Start at a seeded offset into the noise record (default: its start).")
@click.option("--overwrite", is_flag=True,
              help="Replace records of the same names already in --out (else refused).")
def nst_cmd(records, noises, snrs, out, seed, overwrite) -> None:
    """Noise-stress records after PhysioNet's nst: a clean record plus a noise record at
    each SNR (5 min clean, then 2-min noisy/clean periods; reference annotations copied),
    named CLEAN_NOISESNR (118_ma6, 118_ma-6; 118_ma6p5 for 6.5 dB)."""
    from vitaledge.device.io.nst import (
        SNR_TOLERANCE_DB,
        check_distinct_records,
        check_levels,
        make_nst,
        make_out_dir,
        nst_files,
    )
    from vitaledge.device.io.records import RecordError

    levels = snr_list(snrs)
    try:  # every input, name and level before any record is written
        names = check_distinct_records(list(records), list(noises), levels)
        for rec in records:
            for noise in noises:
                check_levels(rec, noise, levels, seed=seed)
        make_out_dir(out)
    except (RecordError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if not overwrite:  # every record's files before any is written
        for name in names:
            held = next((f for f in nst_files(out, name) if f.exists()), None)
            if held is not None:
                raise click.ClickException(
                    f"{held}: already exists (an earlier run?); give a new --out, "
                    "or --overwrite to replace it")
    for rec in records:
        for noise in noises:
            for snr in levels:
                try:
                    r = make_nst(rec, noise, snr, out, seed=seed)
                except (RecordError, ValueError) as exc:
                    raise click.ClickException(str(exc)) from exc
                except OSError as exc:
                    raise click.ClickException(f"cannot write {out}: "
                                               f"{exc.strerror or exc}") from exc
                off = [f"channel {i} holds " + ("no noise" if h is None else f"{h:.1f} dB")
                       + ": its noise is finer than its resolution"
                       for i, h in enumerate(r.snr_held_db)
                       if h is None or abs(h - snr) > SNR_TOLERANCE_DB]
                click.echo(f"{r.record}: {Path(rec).name} + {r.noise_record} at {snr:g} dB "
                           f"(gain {', '.join(f'{g:.3g}' for g in r.gains)}) -> {out}"
                           + "".join(f"; {o}" for o in off))


@data_group.command("fetch", help="Download a PhysioNet database with wfdb (needs network "
                    "access to PhysioNet).\n\n" + "\n\n".join(f"{k}: {v}."
                                                            for k, v in DATABASES.items()))
@click.argument("database", type=click.Choice(sorted(DATABASES)))
@click.option("--out", type=click.Path(file_okay=False), required=True)
@click.option("--records", "record_list",
              help="Comma-separated records (default: all of the database's), e.g. bw,em,ma "
                   "for nstdb's noise records.")
def fetch_cmd(database, out, record_list) -> None:
    from vitaledge.device.io.fetch import FetchError, fetch_physionet

    try:
        n = fetch_physionet(database, Path(out), csv_list(record_list))
    except FetchError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"downloaded {n} records of {database} to {out}")


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


@device_group.command("run")
@click.option("--config", "config", type=click.Path(exists=True, dir_okay=False),
              help="device.toml; flags given here override it.")
@click.option("--model", help="Artifact directory (model.tflite + manifest.json), or its "
                              "model.tflite: a beat, emotion-ecg or emotion-speech model.")
@click.option("--emotion-model", help="A second, emotion-ecg artifact run on the same ECG "
                                      "stream (sliding 48 s windows).")
@click.option("--emotion-hop", "emotion_hop_s", type=float,
              help="Seconds between emotion estimates (default: the manifest's hop).")
@click.option("--source", help="replay:PATH (WFDB, CSV, WAV, FLAC or .npz session) | "
                               "stdin | stdin-pcm | tcp:HOST:PORT | serial:PATH[@BAUD] | "
                               "frames+tcp:HOST:PORT (framed protocol, docs/protocol.md)")
@click.option("--fs", type=float, help="Sample rate of stdin/tcp/frames+tcp/CSV sources (Hz).")
@click.option("--speed", help="Replay speed: 'max' or a factor of real time (1 = real time).")
@click.option("--lead", help="Lead to replay from WFDB records (default MLII).")
@click.option("--sink", "sinks", multiple=True,
              help="Event sink: PATH.jsonl, PATH.db, jsonl:PATH, sqlite:PATH, stdout or "
                   "mqtt[s]://HOST:PORT/PREFIX (repeatable; docs/fleet.md).")
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
              help="File holding the token tcp/frames+tcp clients send first (else "
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
@click.option("--delegate", help="xnnpack (default) | none | edgetpu | gpu | PATH.so")
@click.option("--fallback", type=click.Choice(["none", "cpu"]),
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
    events) exits 1."""
    import logging
    import signal

    from vitaledge.device.model.manifest import ManifestError
    from vitaledge.device.model.runtime import ModelLoadError
    from vitaledge.device.stream.daemon import Daemon, DaemonConfig, DaemonFailure
    from vitaledge.device.stream.pipeline import SignalError
    from vitaledge.device.stream.progress import ProgressLine
    from vitaledge.device.stream.report import format_position, format_summary, unreadable_input
    from vitaledge.device.stream.sinks import sink_file
    from vitaledge.device.stream.sources import SourceError, is_live, replay_kind

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
                ("--emotion-hop", emotion_hop_s, "--emotion-model", bool(cfg.emotion_model)),
                ("--api-host", api_host, "--api-port", bool(cfg.api_port)),
                ("--api-token-file", api_token_file, "--api-port", bool(cfg.api_port)),
                ("--models-dir", models_dir, "--ota", bool(cfg.ota.get("enabled"))),
                ("--probation", probation_s, "--ota", bool(cfg.ota.get("enabled")))):
            if given is not None and not on:  # it would be taken and ignored
                raise click.UsageError(f"{flag} is for {needs} (or its config key): without "
                                       "it, it does nothing")
        if lead is not None and replay_kind(cfg.source) != "wfdb":
            raise click.UsageError(f"--lead picks a lead of a WFDB record; {cfg.source} "
                                   "carries one signal")
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
    rejected = unreadable_input(summary or {})
    if rejected and not (summary or {}).get("samples"):
        raise click.ClickException(f"no sample could be read from {cfg.source}: {rejected} "
                                   "(is that the source's format?)")


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
    try:
        segments = quality_segments(events, chosen)
        s["signal_quality"] = score_gated(beats, segments, record)
    except EventsError as exc:
        raise click.ClickException(in_file(events, exc)) from exc
    except RecordError as exc:
        raise click.ClickException(str(exc)) from exc
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
    if not records and given("snrs") is ParameterSource.COMMANDLINE:
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
