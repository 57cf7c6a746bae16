"""``vitaledge data``: making and fetching records (``data nst``, ``data fetch``; ``data
synth`` is the firmware simulator's, added by the root CLI). Beside ``cli.py``, not in
``io/``: the shared option helpers (:mod:`.cli_shared`) read records with ``io``."""

from __future__ import annotations

from pathlib import Path

import click

from vitaledge.device.cli_shared import csv_list, snr_list
from vitaledge.device.io.fetch import DATABASES


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
