"""``vitaledge data ...`` (synthetic records, downloads) and ``vitaledge device ...``.

Imports nothing from the training side and never TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.group("data")
def data_group() -> None:
    """Make or fetch ECG records."""


@data_group.command("synth")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Directory for the WFDB records (.hea/.dat/.atr).")
@click.option("--minutes", type=float, default=5.0, show_default=True,
              help="Length of each record.")
@click.option("--records", "n_records", type=int, default=4, show_default=True,
              help="How many records (each a different synthetic patient).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--fs", type=float, default=360.0, show_default=True, help="Sample rate (Hz).")
def synth_cmd(out, minutes, n_records, seed, fs) -> None:
    """Write synthetic, annotated ECG records (N/S/V/F/Q beats) that loaders read like real ones."""
    from .synthetic_ecg import synth_database

    paths = synth_database(out, n_records=n_records, minutes=minutes, seed=seed, fs=fs)
    click.echo(f"wrote {len(paths)} records to {out}: {', '.join(p.name for p in paths)}")


@data_group.command("fetch")
@click.argument("database", type=click.Choice(["mitdb"]))
@click.option("--out", type=click.Path(file_okay=False), required=True)
@click.option("--records", "record_list", help="Comma-separated records (default: all 48).")
def fetch_cmd(database, out, record_list) -> None:
    """Download a PhysioNet database with wfdb (needs network access to PhysioNet)."""
    from .fetch import FetchError, fetch_physionet

    names = [r.strip() for r in record_list.split(",")] if record_list else None
    try:
        n = fetch_physionet(database, Path(out), names)
    except FetchError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"downloaded {n} records of {database} to {out}")


@click.group("device")
def device_group() -> None:
    """On-device runtime and inference daemon."""
