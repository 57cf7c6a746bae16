"""``vitaledge train ...`` and ``vitaledge evaluate``: thin wrappers over the library.

TensorFlow is imported only when a command runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


def _csv_list(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def window_options(fn):
    """Options that define the beat window (shared by train and evaluate)."""
    opts = [
        click.option("--window", "convention", type=click.Choice(["kachuee", "centered"]),
                     default="kachuee", show_default=True, help="Beat window convention."),
        click.option("--fs", type=float, default=125.0, show_default=True,
                     help="Model sample rate (Hz); records are resampled to it."),
        click.option("--before", type=float, default=0.25, show_default=True,
                     help="centered: seconds before the R peak."),
        click.option("--after", type=float, default=0.45, show_default=True,
                     help="centered: seconds after the R peak."),
        click.option("--no-filter", is_flag=True,
                     help="Do not band-pass filter (0.5-40 Hz) before windowing."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def make_window(convention: str, fs: float, before: float, after: float, no_filter: bool):
    from vitaledge.device.filters import FilterSpec
    from vitaledge.device.windows import WindowSpec

    filt = None if no_filter else FilterSpec()
    if convention == "kachuee":
        return WindowSpec.kachuee(fs=fs, filter=filt)
    return WindowSpec.centered(before_s=before, after_s=after, fs=fs, filter=filt)


@click.group("train")
def train_group() -> None:
    """Train models (beat classification; emotion models in later releases)."""


@train_group.command("beat")
@click.option("--arch", type=click.Choice(["resnet1d", "cnn1d", "tiny"]), default="resnet1d",
              show_default=True, help="Architecture from the model zoo.")
@click.option("--records", type=click.Path(exists=True, file_okay=False),
              help="Directory of WFDB records with .atr annotations.")
@click.option("--record-list", help="Comma-separated record names to use (default: all).")
@click.option("--csv-train", type=click.Path(exists=True, dir_okay=False),
              help="Kaggle mitbih_train.csv (instead of --records).")
@click.option("--csv-test", type=click.Path(exists=True, dir_okay=False),
              help="Kaggle mitbih_test.csv.")
@click.option("--lead", default="MLII", show_default=True, help="Lead to read from records.")
@window_options
@click.option("--split", type=click.Choice(["beat", "record", "none", "loro"]), default="beat",
              show_default=True, help="How to hold out test beats.")
@click.option("--test-records", help="record split: comma list, or 'dechazal' (DS1/DS2).")
@click.option("--test-fraction", type=float, default=0.2, show_default=True)
@click.option("--val-fraction", type=float, default=0.1, show_default=True)
@click.option("--balance", default="none", show_default=True,
              help="none | class-weight | smote | hybrid:N")
@click.option("--epochs", type=int, default=30, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--patience", type=int, default=6, show_default=True,
              help="Early-stopping patience (epochs without better validation macro F1).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out", type=click.Path(file_okay=False), required=True,
              help="Run directory to write.")
def train_beat_cmd(arch, records, record_list, csv_train, csv_test, lead, convention, fs,
                   before, after, no_filter, split, test_records, test_fraction, val_fraction,
                   balance, epochs, batch_size, lr, patience, seed, out) -> None:
    """Train a heartbeat classifier (AAMI N/S/V/F/Q) and evaluate it on held-out beats."""
    from .balance import BalanceError, parse
    from .config import BeatTrainConfig

    try:
        parse(balance)
    except BalanceError as exc:
        raise click.BadParameter(str(exc), param_hint="--balance") from exc
    if not records and not csv_train:
        raise click.UsageError("give --records DIR or --csv-train FILE")
    if csv_train and convention == "kachuee":
        no_filter = True  # the Kaggle rows were cut from unfiltered signal
    cfg = BeatTrainConfig(
        arch=arch, records=records, record_list=_csv_list(record_list), csv_train=csv_train,
        csv_test=csv_test, lead=lead,
        window=make_window(convention, fs, before, after, no_filter),
        split=split, test_fraction=test_fraction, test_records=_csv_list(test_records),
        val_fraction=val_fraction, balance=balance, epochs=epochs, batch_size=batch_size,
        learning_rate=lr, patience=patience, seed=seed)
    try:
        if split == "loro":
            from .loro import run_loro

            run_loro(cfg, Path(out))
        else:
            from .fit import train_beat

            train_beat(cfg, Path(out))
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"run written to {out}")


@click.command("evaluate")
@click.argument("model", type=click.Path(exists=True))
@click.option("--records", type=click.Path(exists=True, file_okay=False),
              help="WFDB directory to evaluate on (default: the run's own data).")
@click.option("--record-list", help="Comma-separated record names.")
@click.option("--csv", "csv_file", type=click.Path(exists=True, dir_okay=False),
              help="Kaggle-layout CSV to evaluate on.")
@click.option("--split", type=click.Choice(["test", "all"]), default="test", show_default=True,
              help="test: the run's held-out beats (same split and seed); all: every beat.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False),
              help="Write the metrics here as JSON.")
def evaluate_cmd(model, records, record_list, csv_file, split, json_out) -> None:
    """Re-run a run's evaluation on any data. MODEL: a run directory, its model.keras, or a
    converted artifact directory (model.tflite + manifest.json, run without TensorFlow)."""
    from .evaluate import evaluate_model

    try:
        metrics, text = evaluate_model(Path(model), records=records,
                                       record_list=_csv_list(record_list), csv=csv_file,
                                       split=split)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(text)
    if json_out:
        Path(json_out).write_text(json.dumps(metrics, indent=2) + "\n")
        click.echo(f"metrics written to {json_out}")
