"""``vitaledge firmware ...``: the simulated sensor board and microcontroller."""

from __future__ import annotations

import json
import sys

import click

from vitaledge.device.cli_shared import (
    POSITIVE,
    SEED,
    FiniteRange,
    SampleRate,
    artifact_files,
    data_files,
    deprecated_alias,
    json_out_ready,
    not_an_input,
    write_json,
)

#: Lengths of a synthetic record ``data synth`` writes, in minutes: from 15 s (a shorter
#: one may hold no beat at all) to a day, what a Holter monitor records ...
SYNTH_MINUTES = (0.25, 24 * 60.0)
#: ... and at most a day's samples at MIT-BIH's 360 Hz per record (about 3 GB of memory
#: while it is made; a day at 10 kHz would want some 80 GB).
MAX_SYNTH_SAMPLES = 24 * 3600 * 360

#: The LiteRT delegates ``firmware mcu`` compares TFLite Micro with: the two CPU paths.
MCU_DELEGATES = ("none", "xnnpack")


def _mcu_delegates(ctx, param, value: str) -> tuple[str, ...]:
    """--delegate of ``firmware mcu``: a comma-separated list of :data:`MCU_DELEGATES`."""
    names = tuple(dict.fromkeys(d.strip() for d in value.split(",") if d.strip()))
    expected = f"a comma-separated list of {', '.join(MCU_DELEGATES)}"
    if not names:
        raise click.BadParameter(f"{value!r} names no delegate; expected {expected}",
                                 ctx, param)
    bad = [d for d in names if d not in MCU_DELEGATES]
    if bad:
        raise click.BadParameter(f"{', '.join(map(repr, bad))}: mcu compares TFLite Micro "
                                 f"with LiteRT's CPU paths only; expected {expected}",
                                 ctx, param)
    return names


@click.group("firmware")
def firmware_group() -> None:
    """Simulated sensor board (wire protocol, faults) and microcontroller (TFLite Micro)."""


@firmware_group.command("sensor")
@click.option("--record", type=click.Path(exists=False),
              help="WFDB record path (without extension) to stream.")
@click.option("--synth", is_flag=True, help="Stream synthetic ECG instead of a record.")
@click.option("--minutes", type=FiniteRange(0.01, SYNTH_MINUTES[1]), default=2.0,
              show_default=True, help="Length of the synthetic ECG: 0.01 (0.6 s) to 1440.")
@click.option("--lead", default="MLII", show_default=True)
@click.option("--port", "port_spec", default="pty", show_default=True,
              help="pty (prints the device path first) or tcp:HOST:PORT.")
@click.option("--speed", type=POSITIVE, default=1.0, show_default=True,
              help="Factor of real time.")
@click.option("--faults", default="none", show_default=True,
              help="e.g. corrupt=0.01,drop=0.001,truncate=0.001,dup=0.001,garbage=0.001,"
                   "drift=50,leadoff=2,noise=3,disconnect=1 (see docs/protocol.md).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--adc-bits", type=int, default=12, show_default=True)
@click.option("--gain", type=FiniteRange(0, 1e9, min_open=True), default=200.0,
              show_default=True, help="Counts per mV (> 0, at most 1e9; the hello frame "
                                      "carries it as a float32).")
@click.option("--baseline", type=int, default=0, show_default=True, help="Count at 0 mV.")
@click.option("--frame-samples", type=int, default=10, show_default=True)
@click.option("--token-file", type=click.Path(dir_okay=False),
              help="File holding the daemon's source token, sent first on every TCP "
                   "connection (else $VITALEDGE_SOURCE_TOKEN).")
@click.option("--wait", "wait_s", type=FiniteRange(min=0), default=60.0, show_default=True,
              help="Seconds to wait for the daemon to open the port (0: stream at once).")
def sensor_cmd(record, synth, minutes, lead, port_spec, speed, faults, seed, adc_bits, gain,
               baseline, frame_samples, token_file, wait_s) -> None:
    """Stream ECG as the sensor board would, faults included; exit when the record ends.

    First line of output: the device path (or tcp:HOST:PORT). Last line: a JSON summary
    of what was sent and every fault injected."""
    from vitaledge.device.stream.auth import load_token
    from vitaledge.device.stream.progress import ProgressLine
    from vitaledge.device.stream.report import clock

    from .adc import AdcModel
    from .faults import FaultSpec
    from .ports import PortError, open_port
    from .sensor import BoardConfig, SensorBoard, load_signal

    if bool(record) == bool(synth):
        raise click.UsageError("give exactly one of --record PATH or --synth")
    if synth and click.get_current_context().get_parameter_source("lead") \
            is click.core.ParameterSource.COMMANDLINE:  # a synthetic patient has one lead
        raise click.BadParameter("picks a lead of --record; --synth makes one lead",
                                 param_hint="--lead")
    if not 1 <= frame_samples <= 500:
        raise click.UsageError("--frame-samples must be 1..500 (a frame holds at most 1024 "
                               "bytes)")
    try:
        cfg = BoardConfig(faults=FaultSpec.parse(faults), seed=seed, speed=speed,
                          adc=AdcModel(adc_bits, gain, baseline), frame_samples=frame_samples)
        x, fs, name = load_signal(record, minutes, seed, lead)
        board = SensorBoard(x, fs, cfg)
        token = load_token(token_file or "", "VITALEDGE_SOURCE_TOKEN", "--token-file")
        port = open_port(port_spec, token=token)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(port.path)
    sys.stdout.flush()
    try:
        if wait_s and not port.wait_for_reader(wait_s):
            raise click.ClickException(f"nobody opened {port.path} within {wait_s:.0f} s")
        with ProgressLine() as line:
            summary = board.run(port, progress=lambda t, total: line.update(
                f"sent {clock(t)} / {clock(total)} of signal ({100 * t / total:.0f} %) "
                f"to {port.path}"))
    except PortError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        port.close()
    click.echo(json.dumps({"record": name, **summary}))
    if getattr(port, "lost", None):
        raise click.ClickException(
            f"{port.path} closed the link ({port.lost}): {summary['tx_dropped_bytes']:,} of "
            f"{summary['bytes']:,} bytes were not sent, and what was may not have been read "
            "(the daemon closes a board whose source token it refuses: docs/protocol.md)")
    if summary.get("bytes") and summary.get("tx_dropped_bytes", 0) >= summary["bytes"]:
        raise click.ClickException(f"nothing reached {port.path}: all {summary['bytes']:,} "
                                   "bytes were dropped (no reader; --wait 0 does not wait "
                                   "for one)")


@firmware_group.command("mcu")
@click.argument("artifact", type=click.Path(exists=True))
@click.option("--profile", "profile_name", default="cortex-m4-256k", show_default=True,
              help="cortex-m4-256k | cortex-m7-512k | esp32-s3")
@click.option("--data", required=True, type=click.Path(exists=True),
              help="Real beats: a WFDB directory or the heldout.npz that convert writes.")
@click.option("--beats", type=click.IntRange(min=1), default=1000, show_default=True,
              help="How many beats to compare on (at most those in --data).")
@click.option("--fs", "input_fs", type=SampleRate(), default=360.0, show_default=True,
              help="Sensor sample rate, 10-10000 Hz (sizes the ring buffer).")
@click.option("--delegate", "delegates", default="none,xnnpack", show_default=True,
              callback=_mcu_delegates,
              help="LiteRT delegates to compare with: none (reference int8 kernels), "
                   "xnnpack (what the Pi runs).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Which beats.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write JSON here.")
def mcu_cmd(artifact, profile_name, data, beats, input_fs, delegates, seed, json_out) -> None:
    """TFLite Micro vs LiteRT on real beats (every mismatch listed), measured arena, RAM and
    flash against the profile, estimated cycles against the 200 bpm deadline."""
    from .mcu import format_report, simulate_mcu
    from .profiles import get_profile

    not_an_input(json_out, "--json", [*artifact_files(artifact), *data_files(data)])
    json_out_ready(json_out)
    try:
        r = simulate_mcu(artifact, get_profile(profile_name), data, beats, input_fs, seed,
                         delegates)
    except (ValueError, RuntimeError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(format_report(r))
    if json_out:
        write_json(json_out, r)
    if not (r["memory"]["ram_fits"] and r["memory"]["flash_fits"]):
        raise SystemExit(1)


@firmware_group.command("export")
@click.argument("artifact", type=click.Path(exists=True))
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--overwrite", is_flag=True,
              help="Replace the bundle's files already in --out (else refused).")
def export_cmd(artifact, out, overwrite) -> None:
    """C array + header, op resolver, config header and a README for the firmware engineer."""
    from vitaledge.device.model.manifest import manifest_path

    from .export import export_firmware

    not_an_input(out, "--out", [manifest_path(artifact).parent])
    try:
        files = export_firmware(artifact, out, overwrite=overwrite)
    except (ValueError, RuntimeError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {', '.join(f.name for f in files)} to {out}")


@click.command("synth")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Directory for the WFDB records (.hea/.dat/.atr).")
@click.option("--minutes", type=FiniteRange(*SYNTH_MINUTES), default=5.0,
              show_default=True,
              help="Length of each record: 0.25 (15 s) to 1440 (a day).")
@click.option("--n-records", "n_records", type=click.IntRange(min=1), default=4,
              show_default=True, help="How many records (each a different synthetic patient).")
@deprecated_alias("--records", "--n-records", "n_records", type=click.IntRange(min=1))
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--fs", type=SampleRate(), default=360.0, show_default=True,
              help="Sample rate, 10-10000 Hz (what the record readers accept).")
@click.option("--overwrite", is_flag=True,
              help="Replace records of the same names already in --out (else refused).")
def synth_cmd(out, minutes, n_records, seed, fs, overwrite) -> None:
    """Write synthetic, annotated ECG records (N/S/V/F/Q beats) that loaders read like real ones."""
    from vitaledge.firmware_sim.patients.ecg import synth_database

    if minutes * 60 * fs > MAX_SYNTH_SAMPLES:
        raise click.UsageError(f"--minutes {minutes:g} at --fs {fs:g} Hz is "
                               f"{minutes * 60 * fs:,.0f} samples per record; at most "
                               f"{MAX_SYNTH_SAMPLES:,} (a day at 360 Hz)")
    try:
        paths = synth_database(out, n_records=n_records, minutes=minutes, seed=seed, fs=fs,
                               overwrite=overwrite)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {len(paths)} records to {out}: {', '.join(p.name for p in paths)}")
