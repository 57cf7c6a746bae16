"""``vitaledge train ...`` and ``vitaledge evaluate``: thin wrappers over the library.

TensorFlow is imported only when a command runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import click

from vitaledge.device.cli_shared import (
    SEED,
    FiniteRange,
    SampleRate,
    csv_list,
    data_files,
    deprecated_alias,
    json_out_ready,
    not_an_input,
    option_readers,
    records_dir_alias,
    write_json,
)
from vitaledge.device.dsp.windows import CONVENTIONS
from vitaledge.device.inputs.mel import FEATURE_NORMS
from vitaledge.device.inputs.multimodal import PHYSIO_FS_RANGE
from vitaledge.device.io.beats import ANCHORS

from . import zoo
from .balance import described as balance_methods
from .config import CHOICES, MAX_ENSEMBLE, RR_ENSEMBLE
from .emotion_datasets import ECG_DATASETS, OPTION_READERS
from .run_dir import RUN_OUTPUTS, check_fresh, overwrite_option, replacing, writes_out
from .speech_config import CHECKPOINTS, CLASS_WEIGHTS, OPTIMIZERS, RECIPES, SCHEDULES, SPEECH_SPLITS
from .speech_data import CALM, CORPORA
from .splits import SPLIT_KINDS, SPLITS, trainer

#: The default of ``train beat --arch``: the best on DS1 patient-wise 4-fold (docs/results.md).
DEFAULT_BEAT_ARCH = "tiny-rrt"


#: Fractions of a data set held out (test, validation): both sides must keep beats.
FRACTION = FiniteRange(0, 1, min_open=True, max_open=True)
#: A learning rate, width or time: > 0 and finite.
RATE = FiniteRange(min=0, min_open=True)
#: A dropout, momentum or perturbation share: 0 up to (not including) 1.
SHARE = FiniteRange(0, 1, max_open=True)
#: A count that may be 0 (patience, masks).
COUNT = click.IntRange(min=0)


def window_options(fn):
    """Options that define the beat window (shared by train and evaluate)."""
    opts = [
        click.option("--window", "convention", type=click.Choice(list(CONVENTIONS)),
                     default=None,
                     help="Beat window convention [default: centered for models with RR or "
                          "template inputs, kachuee (the seed's) for window-only models]."),
        click.option("--fs", type=SampleRate(), default=125.0, show_default=True,
                     help="Model sample rate (Hz); records are resampled to it."),
        click.option("--before", type=FiniteRange(0, 5), default=0.25, show_default=True,
                     help="centered: seconds before the R peak."),
        click.option("--after", type=FiniteRange(0, 5, min_open=True), default=0.45,
                     show_default=True, help="centered: seconds after the R peak."),
        click.option("--no-filter", is_flag=True,
                     help="Do not band-pass filter (0.5-40 Hz) before windowing."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def make_window(convention: str, fs: float, before: float, after: float, no_filter: bool):
    """The WindowSpec of the window options; one the spec refuses (a centered window of
    fewer than one sample, say) is a usage error naming the options."""
    from vitaledge.device.dsp.filters import FilterSpec
    from vitaledge.device.dsp.windows import WindowSpec

    filt = None if no_filter else FilterSpec()
    given = [f"--{n}" for n in ("before", "after") if given_on_command_line(n)]
    if convention == "kachuee" and given:  # the seed's window has its own fixed geometry
        raise click.BadParameter(f"{' and '.join(given)} place a centered window; the kachuee "
                                 "window is cut from the R peak on: give --window centered",
                                 param_hint=given[0])
    try:
        if convention == "kachuee":
            return WindowSpec.kachuee(fs=fs, filter=filt)
        return WindowSpec.centered(before_s=before, after_s=after, fs=fs, filter=filt)
    except ValueError as exc:  # SpecError
        raise click.BadParameter(f"{exc} (--window {convention}, --fs {fs:g}, --before "
                                 f"{before:g}, --after {after:g})",
                                 param_hint="--fs/--before/--after") from exc


#: The JSON files training and convert write into a run or artifact folder: ``evaluate
#: --json`` may replace an earlier evaluation's file there, never one of these.
RUN_JSON = ("config.json", "metrics.json", "ec57.json", "folds.json", "manifest.json",
            "convert_summary.json")


def check_evaluate_json(json_out: Path, model: Path, inputs: list) -> None:
    """Refuse an ``evaluate --json`` path that is a file the evaluation reads or a run
    wrote: an input (``inputs``, the files of a --data folder), or, in the model's folder,
    the folder above it (a converted artifact's siblings, a fold's K-fold summary) or an
    artifact's source run, any file but an earlier evaluation's JSON. ``--json`` over a
    record header, a source run's config.json or heldout.npz was written without a word."""
    own = model if model.is_dir() else model.parent
    roots = [own, own.parent]
    try:  # an artifact names the run it was converted from
        source = json.loads((own / "manifest.json").read_text()).get("source_run", {})
        if isinstance(source, dict) and isinstance(source.get("path"), str):
            roots.append(Path(source["path"]))
    except (OSError, ValueError, AttributeError):
        pass
    try:  # a run names the data it was trained on: scored again when no --data is given
        cfg = json.loads((own / "config.json").read_text())
        used = [cfg.get(k) for k in ("records", "data", "csv_train", "csv_test")]
        inputs = [*inputs, *(u for v in used for u in (v if isinstance(v, list) else [v])
                             if isinstance(u, str))]
    except (OSError, ValueError, AttributeError):
        pass
    target = json_out.resolve()
    if target.exists():
        for root in roots:
            root = root.resolve()
            if root in target.parents and (target.suffix != ".json"
                                           or target.name in RUN_JSON):
                raise click.BadParameter(f"{json_out} is a file of {root}; writing it would "
                                         "destroy that: choose another path",
                                         param_hint="--json")
    not_an_input(json_out, "--json", [f for x in inputs if x for f in data_files(x)])
    json_out_ready(json_out)


def given_on_command_line(name: str) -> bool:
    """The running command's option ``name`` was typed, not left at its default."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx) and ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE


#: The options only some splits read: option -> the splits that read it. Given with
#: another split, each is refused (it was dropped without a word: ``--folds 10 --split
#: beat`` trained one model on a beat split and said nothing of folds).
BEAT_SPLIT_OPTIONS = option_readers({k: v.reads for k, v in SPLIT_KINDS.items()})
SPEECH_SPLIT_OPTIONS = option_readers({k: v.reads for k, v in SPEECH_SPLITS.items()})


def refuse_unread_options(option: str, value: str, table: dict[str, tuple[str, ...]],
                          hints: dict[str, str] | None = None) -> None:
    """A ``table`` option typed on the command line that ``option``'s ``value`` (a split,
    a data set) does not read: refused, naming the values that do (and its ``hints``)."""
    for name, readers in table.items():
        if value not in readers and given_on_command_line(name):
            raise click.BadParameter(
                f"is read by {option} {' or '.join(readers)}; with {option} {value} it "
                f"would be ignored{(hints or {}).get(name, '')}",
                param_hint="--" + name.replace("_", "-"))


def _irregularity(value: str) -> float | None:
    """--s-rule-irregularity: a positive number, or 'off' (None)."""
    if value.strip().lower() == "off":
        return None
    try:
        v = float(value)
    except ValueError:
        v = float("nan")
    if not (v > 0 and math.isfinite(v)):
        raise click.BadParameter(f"expected a positive number or 'off', got {value!r}",
                                 param_hint="--s-rule-irregularity")
    return v


@click.group("train")
def train_group() -> None:
    """Train beat and emotion models."""


@train_group.command("beat")
@click.option("--arch", type=click.Choice(zoo.names("beat")), default=DEFAULT_BEAT_ARCH,
              show_default=True,
              help="Architecture from the model zoo (the default is the best on DS1 "
                   "patient-wise folds; resnet1d and cnn1d are the seed-exact references).")
@click.option("--data", type=click.Path(exists=True, file_okay=False),
              help="Directory of WFDB records with .atr annotations.")
@click.option("--records", help="Comma-separated record names to use (default: all).")
@records_dir_alias()
@deprecated_alias("--record-list", "--records", "records")
@click.option("--csv-train", type=click.Path(exists=True, dir_okay=False),
              help="Kaggle mitbih_train.csv (instead of --data).")
@click.option("--csv-test", type=click.Path(exists=True, dir_okay=False),
              help="Kaggle mitbih_test.csv.")
@click.option("--lead", default="MLII", show_default=True, help="Lead to read from records.")
@window_options
@click.option("--split", type=click.Choice(list(SPLITS)), default="beat", show_default=True,
              help="How to hold out test beats: " + ", ".join(
                  f"{k} ({v.help})" for k, v in SPLIT_KINDS.items()) + ".")
@click.option("--folds", type=click.IntRange(2, 50), default=4, show_default=True,
              help="Number of patient-wise folds for --split patients.")
@click.option("--anchor", type=click.Choice(list(ANCHORS)), default=None,
              help="Cut training windows at the annotated R peaks or where the device's "
                   "detector finds them (each detection labelled by its reference beat) "
                   "[default: detected for models with RR or template inputs, else "
                   "annotated].")
@click.option("--test-records", help="record split: comma list, or 'dechazal' (DS1/DS2).")
@click.option("--test-fraction", type=FRACTION, default=0.2, show_default=True)
@click.option("--val-fraction", type=FRACTION, default=0.1, show_default=True)
@click.option("--balance", default="none", show_default=True,
              help="Class imbalance: " + balance_methods() + ".")
@click.option("--s-rule", type=click.Choice(CHOICES["s_rule"]), default=None,
              help="How N and S are told apart: the network's argmax, or timing (the "
                   "premature-beat rule fitted on the training patients' RR intervals) "
                   "[default: timing for models with RR inputs, else network].")
@click.option("--s-rule-threshold", type=FiniteRange(0, 1, min_open=True, max_open=True),
              default=0.8, show_default=True,
              help="Probability above which the timing rule calls a beat S.")
@click.option("--s-rule-irregularity", default="0.1", show_default=True,
              help="Rhythm irregularity (median successive RR difference over the mean RR, "
                   "last 20 intervals) above which the timing rule calls no beat S, as in "
                   "atrial fibrillation; 'off' for no such gate.")
@click.option("--v-rule", type=click.Choice(CHOICES["v_rule"]), default=None,
              help="V as the network says, or as the patient's running template corrects "
                   "it (the dominant-beat rule): V beats shaped like it and on time are N, "
                   "early beats unlike it followed by a compensatory pause are V "
                   "[default: template for models with RR and template inputs, else "
                   "network].")
@click.option("--f-rule", type=click.Choice(CHOICES["f_rule"]), default=None,
              help="F as the network says, or its F calls decided as N (the fusion rule: "
                   "on new patients they are almost never fusion beats) [default: normal "
                   "for models with RR inputs, else network].")
@click.option("--vote", type=click.Choice(CHOICES["vote"]), default=None,
              help="Before the class is decided, average each beat's outputs with those of "
                   "the patient's earlier beats of the same shape (the similar-beat vote) "
                   "[default: similar for models with RR and template inputs on WFDB "
                   "records split by patient (or none), else none].")
@click.option("--noise-aug", type=click.Path(exists=True), default=None,
              help="Also fit on noisy copies of the training records, with the noise "
                   "records in this directory (e.g. ../shared/data/nstdb-noise).")
@click.option("--noise-copies", type=click.IntRange(1, 20), default=1, show_default=True,
              help="Noisy copies per training record (with --noise-aug).")
@click.option("--noise-snr", default="6,24", show_default=True,
              help="SNR range in dB of the noisy copies, drawn every minute (nst's SNR).")
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--lr", type=RATE, default=1e-3, show_default=True,
              help="Adam learning rate.")
@click.option("--patience", type=COUNT, default=6, show_default=True,
              help="Early-stopping patience (epochs without better validation macro F1).")
@click.option("--checkpoint", type=click.Choice(CHOICES["checkpoint"]), default="best",
              show_default=True,
              help="Keep the epoch of best validation macro F1 (early stopping), or run "
                   "every epoch and keep the mean of the second half's weights.")
@click.option("--ensemble", type=click.IntRange(1, MAX_ENSEMBLE), default=None,
              help="Train this many networks from seeds --seed (or --network-seed), + 1, "
                   "... on the same beats and average their class probabilities in one "
                   "model (steadier on new patients than any one network) [default: "
                   f"{RR_ENSEMBLE} for models with RR inputs, else 1].")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seeds the split (folds, validation patients) and the networks.")
@click.option("--network-seed", type=SEED, default=None,
              help="Start the networks from seeds N, N + 1, ... instead of --seed's, with "
                   "the split unchanged: what the random start alone does to the result.")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True,
              help="Run directory to write (new or empty).")
@overwrite_option
def train_beat_cmd(arch, data, records, csv_train, csv_test, lead, convention, fs,
                   before, after, no_filter, split, folds, anchor, test_records, test_fraction,
                   val_fraction, balance, s_rule, s_rule_threshold, s_rule_irregularity,
                   v_rule, f_rule, vote, noise_aug, noise_copies, noise_snr, epochs, batch_size, lr,
                   patience, checkpoint, ensemble, seed, network_seed, out, overwrite) -> None:
    """Train a heartbeat classifier (AAMI N/S/V/F/Q) and evaluate it on held-out beats."""
    from .balance import BalanceError, parse
    from .config import BeatTrainConfig

    try:
        parse(balance)
    except BalanceError as exc:
        raise click.BadParameter(str(exc), param_hint="--balance") from exc
    if not data and not csv_train:
        raise click.UsageError("give --data DIR or --csv-train FILE")
    refuse_unread_options("--split", split, BEAT_SPLIT_OPTIONS,
                          {"test_records": " (DS1 -> DS2: --split dechazal)"})
    for name in ("split", "test_fraction"):  # --csv-test's rows are the test part
        if csv_test and given_on_command_line(name):
            raise click.BadParameter("the test beats are --csv-test's rows; with it this "
                                     "would be ignored", param_hint="--" + name.replace("_", "-"))
    if data and (csv_train or csv_test):
        raise click.UsageError("give --data DIR or --csv-train FILE (with --csv-test), not "
                               "both: one data set trains a run")
    inter_patient = zoo.get(arch).inputs != ("beat",)
    convention = convention or ("centered" if inter_patient else "kachuee")
    anchor = anchor or ("detected" if inter_patient else "annotated")
    has_rr = "rr" in zoo.get(arch).inputs
    s_rule = s_rule or ("timing" if has_rr else "network")
    if s_rule == "timing" and not has_rr:
        raise click.BadParameter(f"architecture {arch!r} takes no RR features; the timing "
                                 "rule needs them", param_hint="--s-rule")
    has_template = has_rr and "template" in zoo.get(arch).inputs
    v_rule = v_rule or ("template" if has_template else "network")
    if v_rule == "template" and not has_template:
        raise click.BadParameter(f"architecture {arch!r} takes no RR features and template; "
                                 "the dominant-beat rule needs both", param_hint="--v-rule")
    f_rule = f_rule or ("normal" if has_rr else "network")
    ensemble = ensemble or (RR_ENSEMBLE if has_rr else 1)
    # the vote decides over each patient's beats in time order: held-out beats scattered
    # through a record (split by beat) or Kaggle rows (no patients) cannot give it that
    whole_records = SPLIT_KINDS[split].whole_records and not csv_train
    vote = vote or ("similar" if has_template and whole_records else "none")
    if vote == "similar" and not whole_records:
        raise click.BadParameter("the similar-beat vote decides over each patient's beats in "
                                 "time order; a split by beat or Kaggle CSV rows cannot give "
                                 "it that: use a split by patient or --vote none",
                                 param_hint="--vote")
    if s_rule != "timing" and given_on_command_line("s_rule_irregularity"):
        raise click.BadParameter("sets the timing rule's rhythm gate; with --s-rule "
                                 f"{s_rule} there is none", param_hint="--s-rule-irregularity")
    s_rule_irregularity = _irregularity(s_rule_irregularity) if s_rule == "timing" else None
    if csv_train and convention == "kachuee":
        no_filter = True  # the Kaggle rows were cut from unfiltered signal
    if noise_aug is None and (noise_copies != 1 or noise_snr != "6,24"):
        raise click.UsageError("--noise-copies and --noise-snr need --noise-aug DIR")
    if noise_aug is not None:
        from .noise_aug import NoiseAug, require_patient_split

        try:
            snrs = [float(v) for v in noise_snr.split(",")]
        except ValueError:
            raise click.BadParameter(f"{noise_snr!r}: expected LOW,HIGH in dB, e.g. 6,24",
                                     param_hint="--noise-snr") from None
        try:
            require_patient_split(split)
            aug = NoiseAug(str(Path(noise_aug).resolve()), noise_copies, snrs)
            aug.noise_paths()
            noise_aug = aug.to_dict()
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--noise-aug/--noise-snr") from exc
    window = make_window(convention, fs, before, after, no_filter)
    check_fresh(out, overwrite, cluster=True)
    # convert and evaluate read the beats again from the run's config, from wherever they run
    data, csv_train, csv_test = (p and str(Path(p).resolve()) for p in (data, csv_train, csv_test))
    try:
        cfg = BeatTrainConfig(
            arch=arch, records=data, record_list=csv_list(records), csv_train=csv_train,
            csv_test=csv_test, lead=lead, window=window,
            split=split, test_fraction=test_fraction, test_records=csv_list(test_records),
            val_fraction=val_fraction, balance=balance, epochs=epochs, batch_size=batch_size,
            learning_rate=lr, patience=patience, checkpoint=checkpoint, seed=seed,
            network_seed=network_seed, anchor=anchor, folds=folds,
            s_rule=s_rule, s_rule_threshold=s_rule_threshold,
            s_rule_irregularity=s_rule_irregularity, v_rule=v_rule, f_rule=f_rule,
            vote=vote,
            noise_aug=noise_aug, ensemble=ensemble)
        # an earlier run's outputs are set aside, and come back if this one fails
        with replacing(out, RUN_OUTPUTS, overwrite and writes_out()):
            trainer(split)(cfg, Path(out))
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"run written to {out}")


@click.command("evaluate")
@click.argument("model", type=click.Path(exists=True))
@click.option("--data", multiple=True, type=click.Path(exists=True),
              help="Data to evaluate on (default: the run's held-out data): beat, a WFDB "
                   "directory; speech, corpus directories (repeat to merge); emotion-ecg, "
                   "the data set's file or directory (runs on synthetic data, and "
                   "emotion-multimodal, have none).")
@click.option("--actors", help="Speech: comma list of the speakers in --data to score; "
                               "emotion-ecg: of the subjects (AMIGOS P01, DREAMER S01, "
                               "WESAD S2).")
@click.option("--calm", type=click.Choice(CALM), default=None,
              help="Speech: RAVDESS calm [as in training].")
@click.option("--corpus", type=click.Choice(CORPORA),
              default="auto", show_default=True, help="Speech: file naming scheme.")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False), default=None,
              help="Speech: log-mel cache directory [default cache]; see --no-cache.")
@click.option("--no-cache", is_flag=True, help="Speech: compute the log-mels afresh.")
@click.option("--records", help="Comma-separated record names.")
@records_dir_alias()
@deprecated_alias("--record-list", "--records", "records")
@click.option("--csv", "csv_file", type=click.Path(exists=True, dir_okay=False),
              help="Kaggle-layout CSV to evaluate on.")
@click.option("--split", type=click.Choice(["test", "all"]), default="test", show_default=True,
              help="test: the run's held-out beats (same split and seed); all: every beat.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False),
              help="Write the metrics here as JSON.")
def evaluate_cmd(model, data, actors, calm, corpus, cache_dir, no_cache, records, csv_file,
                 split, json_out) -> None:
    """Re-run a run's evaluation on any data. MODEL: a run directory (any task), its
    model.keras, or a converted artifact directory (model.tflite + manifest.json, run
    without TensorFlow)."""
    from vitaledge.device.model.runtime import ModelLoadError

    from .evaluators import EVALUATORS, OptionError, Request
    from .run_files import run_task

    if csv_file and data:  # the CSV was scored and --data ignored without a word
        raise click.UsageError("--csv and --data are two sources of beats: give one")
    if csv_file and split == "all":  # a CSV is scored whole; --split picks a run's records
        raise click.BadParameter("picks the run's held-out beats or every beat of its "
                                 "records; a --csv file is scored whole", param_hint="--split")
    if json_out:  # the metrics must not land on a file the run, the artifact or data hold
        check_evaluate_json(Path(json_out), Path(model), [csv_file, *data])
    try:
        task = run_task(Path(model))
        given = {"--records": records, "--csv": csv_file, "--split": split != "test",
                 "--calm": calm, "--corpus": corpus != "auto", "--actors": actors,
                 "--cache": cache_dir, "--no-cache": no_cache}
        evaluator = EVALUATORS[task]
        refused = [name for name, on in given.items() if on and name not in evaluator.options]
        if refused:
            raise click.BadParameter(f"{task} runs do not take {', '.join(refused)}",
                                     param_hint=refused[0])
        metrics, text = evaluator.score(Path(model), Request(
            tuple(data), csv_list(records), csv_file, split, csv_list(actors), calm, corpus,
            cache_dir, no_cache))
    except OptionError as exc:
        raise click.BadParameter(str(exc), param_hint=exc.option) from exc
    except (ValueError, FileNotFoundError, ModelLoadError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(text)
    if json_out:
        write_json(json_out, metrics)
        click.echo(f"metrics written to {json_out}")


@train_group.command("emotion-speech")
@click.option("--data", "data", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Corpus directory (RAVDESS, TESS or SAVEE naming); repeat to merge.")
@click.option("--synth-per-class", "synth", type=click.IntRange(0, 100_000), default=0,
              help="Instead of --data: this many synthetic clips per emotion.")
@deprecated_alias("--synth", "--synth-per-class", "synth", type=click.IntRange(0, 100_000))
@click.option("--corpus", type=click.Choice(CORPORA),
              default="auto", show_default=True, help="File naming scheme.")
@click.option("--calm", type=click.Choice(CALM), default="neutral",
              show_default=True,
              help="RAVDESS 'calm': merge into neutral (as the seed), drop, or its own class.")
@click.option("--split", type=click.Choice(list(SPEECH_SPLITS)),
              default="actor", show_default=True,
              help="; ".join(f"{k}: {v.help}" for k, v in SPEECH_SPLITS.items()) + ".")
@click.option("--folds", type=click.IntRange(2, 100), default=4, show_default=True,
              help="actors split: number of folds (speakers balanced by gender).")
@click.option("--fold", type=click.IntRange(1, 100), default=None,
              help="actors split: train fold N (1..K) alone, its speakers as in the whole "
                   "K-fold run, into --out/fold-N; folds.json/folds.md then cover the folds "
                   "--out holds.")
@click.option("--test-actors", help="actor split: comma list of test speakers, e.g. 04.")
@click.option("--test-fraction", type=FRACTION, default=0.2, show_default=True)
@click.option("--val-fraction", type=FRACTION, default=0.15, show_default=True,
              help="Validation share: of the training speakers (actors, none) or clips.")
@click.option("--augment", type=click.IntRange(0, 20), default=1, show_default=True,
              help="Noisy copies of each training clip (noise injection).")
@click.option("--snr", default="15,30", show_default=True, help="Noise SNR range in dB.")
@click.option("--sample-rate", type=FiniteRange(4000, 96000), default=16000.0, show_default=True)
@click.option("--duration", type=FiniteRange(0, 60, min_open=True), default=3.0, show_default=True,
              help="Seconds per clip after the offset (truncate / zero-pad).")
@click.option("--offset", type=FiniteRange(0, 60), default=0.5, show_default=True,
              help="Seconds skipped at the start of each clip.")
@click.option("--n-mels", type=click.IntRange(8, 256), default=64, show_default=True)
@click.option("--image-width", type=click.IntRange(8, 4096), default=128, show_default=True,
              help="Spectrogram frames per image (6 images, hop fitted to the clip).")
@click.option("--epochs", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--patience", type=COUNT, default=15, show_default=True,
              help="Early stopping on validation accuracy.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--recipe", type=click.Choice(tuple(RECIPES)), default="robust",
              show_default=True,
              help="robust (the default, chosen on 16-speaker folds): cnn_speech, Adam + "
                   "cosine, utterance norm, class weights; seed: the seed's network and SGD "
                   "0.01, no feature norm (the reference). The options below override single "
                   "levers.")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=None,
              help="Optimizer [recipe].")
@click.option("--lr", type=RATE, default=None, help="Learning rate [recipe: seed 0.01].")
@click.option("--momentum", type=SHARE, default=0.0, show_default=True, help="SGD momentum.")
@click.option("--schedule", type=click.Choice(SCHEDULES), default=None,
              help="Learning-rate schedule [recipe].")
@click.option("--feature-norm", type=click.Choice(FEATURE_NORMS),
              default=None, help="Per-band log-mel standardization (signal spec) [recipe].")
@click.option("--time-masks", type=COUNT, default=None, help="SpecAugment time masks per image.")
@click.option("--time-mask-width", type=COUNT, default=None, help="Max frames per time mask.")
@click.option("--freq-masks", type=COUNT, default=None, help="SpecAugment mel-band masks.")
@click.option("--freq-mask-width", type=COUNT, default=None, help="Max bands per band mask.")
@click.option("--gain-db", type=FiniteRange(0, 60), default=None,
              help="Level jitter +- dB (training).")
@click.option("--mixup", type=FiniteRange(min=0), default=None,
              help="Mixup Beta(ALPHA, ALPHA) of training pairs and labels [0: off].")
@click.option("--freq-warp", type=SHARE, default=None,
              help="Stretch the mel axis by a factor in 1 +- F (training) [0: off].")
@click.option("--speed-perturb", type=SHARE, default=None,
              help="Play each training clip at speed 1 - S, 1 or 1 + S (drawn each epoch; "
                   "resampled waveform; 0: off) [recipe: robust 0.1].")
@click.option("--checkpoint", type=click.Choice(CHECKPOINTS),
              default=None,
              help="Keep the epoch of best validation accuracy, the weights after the last "
                   "epoch, the best epoch of the second half, or the mean of the second "
                   "half's weights [recipe: seed best, robust late-best].")
@click.option("--class-weights", type=click.Choice(CLASS_WEIGHTS), default=None,
              help="Loss weights per class [recipe].")
@click.option("--ensemble", type=click.IntRange(1, MAX_ENSEMBLE), default=None,
              help="Train N networks from seeds SEED, SEED+1, ... on the same split and "
                   "keep one model that averages their class probabilities [recipe: seed 1, "
                   "robust 3].")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False), default=None,
              help="Log-mel cache directory [$VITALEDGE_CACHE/speech-mel or "
                   "~/.cache/vitaledge/speech-mel].")
@click.option("--no-cache", is_flag=True, help="Compute every log-mel spectrogram afresh.")
@click.option("--arch", type=click.Choice(zoo.names("emotion-speech")), default=None,
              help="Network [recipe: seed tdcnnlstm_speech, robust cnn_speech].")
@click.option("--width", type=FiniteRange(0, 16, min_open=True), default=1.0, show_default=True,
              help="Filter-count multiplier (1.0 = the seed's 64/64/128/128).")
@click.option("--lstm-units", type=click.IntRange(1, 4096), default=256, show_default=True,
              help="LSTM width (256 = the seed's).")
@click.option("--pools", default="4,4,4,2", show_default=True,
              help="Max-pool sizes of the four modules (2,4,4,4: the reference network).")
@click.option("--time-budget", type=RATE, default=None,
              help="Stop after this many minutes of the whole run, every ensemble member "
                   "counted (each member keeps its checkpoint rule's weights).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--out", "out", type=click.Path(file_okay=False), required=True,
              help="Run directory to write (new or empty; with --fold, its fold-N).")
@overwrite_option
def train_speech_cmd(data, synth, corpus, calm, split, folds, fold, test_actors,
                     test_fraction, val_fraction, augment, snr, sample_rate, duration, offset,
                     n_mels, image_width, epochs, patience, batch_size, recipe, optimizer, lr,
                     momentum, schedule, feature_norm, time_masks, time_mask_width,
                     freq_masks, freq_mask_width, gain_db, mixup, freq_warp, speed_perturb,
                     checkpoint, class_weights, ensemble, cache_dir, no_cache, arch, width,
                     lstm_units, pools, time_budget, seed, out, overwrite) -> None:
    """Train the speech-emotion model (seed 004: log-mel images, TimeDistributed CNN + LSTM)
    on RAVDESS/TESS/SAVEE clips or synthetic speech, and report on held-out clips."""
    from vitaledge.device.inputs.mel import SpeechSignal

    from .speech import train_speech
    from .speech_cache import default_cache_dir
    from .speech_config import SpeechTrainConfig, recipe_values
    from .speech_data import labels_for

    if not data and synth <= 0:
        raise click.UsageError("give --data DIR or --synth-per-class N")
    refuse_unread_options("--split", split, SPEECH_SPLIT_OPTIONS)
    try:
        snr_db = [float(v) for v in snr.split(",")]
        if len(snr_db) != 2 or not all(map(math.isfinite, snr_db)) or snr_db[0] > snr_db[1]:
            raise ValueError
    except ValueError as exc:
        raise click.BadParameter("expected LOW,HIGH in dB, finite, LOW <= HIGH",
                                 param_hint="--snr") from exc
    if fold is None:
        check_fresh(out, overwrite)
    else:  # the other folds' directories and the folds summary are this run's
        check_fresh(Path(out), overwrite, own=r"fold-\d+|folds\.(json|md)")
        check_fresh(Path(out) / f"fold-{fold}", overwrite)
    try:
        pool_sizes = [int(v) for v in pools.split(",")]
        if len(pool_sizes) != 4 or min(pool_sizes) < 1:
            raise ValueError
    except ValueError as exc:
        raise click.BadParameter("expected four positive integers", param_hint="--pools") from exc
    try:
        lever = recipe_values(recipe, optimizer=optimizer, learning_rate=lr, schedule=schedule,
                              feature_norm=feature_norm, time_masks=time_masks,
                              time_mask_width=time_mask_width, freq_masks=freq_masks,
                              freq_mask_width=freq_mask_width, gain_db=gain_db,
                              mixup=mixup, freq_warp=freq_warp, speed_perturb=speed_perturb,
                              class_weights=class_weights, checkpoint=checkpoint, arch=arch,
                              ensemble=ensemble)
        given_unused(lever["arch"], width=width, lstm_units=lstm_units, pools=tuple(pool_sizes))
        if momentum and lever["optimizer"] != "sgd":  # Adam has none: it was taken and unused
            raise ValueError(f"--momentum is SGD's; the recipe's optimizer is "
                             f"{lever['optimizer']} (give --optimizer sgd)")
        signal = SpeechSignal.fitted(sample_rate=sample_rate, duration_s=duration,
                                     offset_s=offset, n_mels=n_mels, fmax=sample_rate / 2,
                                     image_width=image_width,
                                     feature_norm=lever.pop("feature_norm"))
        cache = None if no_cache else str(cache_dir or default_cache_dir())
        cfg = SpeechTrainConfig(
            data=list(data), corpus=corpus, calm=calm, synth_per_class=synth, split=split,
            folds=folds, test_actors=csv_list(test_actors), test_fraction=test_fraction,
            val_fraction=val_fraction, augment=augment, snr_db=snr_db, epochs=epochs,
            patience=patience, batch_size=batch_size, recipe=recipe, momentum=momentum,
            width=width, lstm_units=lstm_units, pools=pool_sizes,
            time_budget_min=time_budget, seed=seed, cache=cache, labels=labels_for(calm),
            signal=signal, **lever)
        # an earlier run's outputs are set aside, and come back if this one fails
        with replacing(Path(out) if fold is None else Path(out) / f"fold-{fold}",
                       RUN_OUTPUTS, overwrite):
            if SPEECH_SPLITS[cfg.split].folds:
                from .speech_folds import run_speaker_folds

                run_speaker_folds(cfg, Path(out), only=fold)
            else:
                train_speech(cfg, Path(out))
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"run written to {out}")


def given_unused(arch: str, **knobs) -> None:
    """Refuse a network option given on the command line that ``arch`` does not take (it
    was dropped silently: ``--lstm-units`` on the LSTM-free ``cnn_speech``)."""
    import inspect

    def takes(a: str):
        return inspect.signature(zoo.get(a, "emotion-speech").build).parameters

    for name in knobs:
        if name not in takes(arch) and given_on_command_line(name):
            flag = "--" + name.replace("_", "-")
            users = [a for a in zoo.names("emotion-speech") if name in takes(a)]
            raise click.BadParameter(f"{arch} does not take it (only {', '.join(users)}: "
                                     f"give --arch)", param_hint=flag)


@train_group.command("emotion-ecg")
@click.option("--dataset", type=click.Choice(list(ECG_DATASETS)),
              default="synth", show_default=True, help="Data set layout of --data.")
@click.option("--data", type=click.Path(exists=True),
              help="AMIGOS: directory of Data_Preprocessed_Pxx.mat; DREAMER: DREAMER.mat or "
                   "its directory; WESAD: directory of SX/SX.pkl.")
@click.option("--trust-pickle", is_flag=True,
              help="Allow loading WESAD .pkl files (unpickling runs code; trust the files).")
@click.option("--threshold", type=FiniteRange(),
              help="High valence/arousal above this rating (default: " + ", ".join(
                  f"{d.threshold:g} {n.upper()}" for n, d in ECG_DATASETS.items()
                  if d.threshold is not None) + ").")
@click.option("--arch", type=click.Choice(zoo.names("emotion-ecg")), default="cnnlstm_ecg",
              show_default=True, help="Architecture from the model zoo.")
@click.option("--hop", "hop_s", type=FiniteRange(0, 600, min_open=True), default=4.0,
              show_default=True,
              help="Seconds between 48 s segments of one trial (and on a stream).")
@click.option("--bandpass", help="Optional causal band-pass LOW,HIGH Hz (the seed has none).")
@click.option("--group", type=click.Choice(["trial", "subject"]), default="trial",
              show_default=True, help="What never straddles train and test.")
@click.option("--folds", type=click.IntRange(0, 100), default=10, show_default=True,
              help="Cross-validation folds (0: none; 1 is refused).")
@click.option("--test-fraction", type=FRACTION, default=0.2, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--lr", type=RATE, default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--dropout", type=SHARE, default=0.2, show_default=True)
@click.option("--synth-subjects", type=click.IntRange(1, 1000), default=16, show_default=True)
@click.option("--synth-trials", type=click.IntRange(1, 100), default=2, show_default=True,
              help="Synthetic trials per subject and class.")
@click.option("--synth-seconds", type=FiniteRange(0, 3600, min_open=True), default=75.0,
              show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Run directory (new or empty).")
@overwrite_option
def train_emotion_ecg_cmd(dataset, data, trust_pickle, threshold, arch, hop_s, bandpass, group,
                          folds, test_fraction, epochs, batch_size, lr, dropout, synth_subjects,
                          synth_trials, synth_seconds, seed, out, overwrite) -> None:
    """ECG emotion CNN-LSTM (seed 000): 4 valence/arousal quadrants, k-fold CV report."""
    from .emotion import EmotionEcgConfig, train_emotion_ecg

    filt = None
    if bandpass:
        try:
            low, high = (float(v) for v in bandpass.split(","))
        except ValueError as exc:
            raise click.BadParameter("expected LOW,HIGH in Hz", param_hint="--bandpass") from exc
        filt = {"low_hz": low, "high_hz": high, "order": 2}
    if ECG_DATASETS[dataset].needs_data and not data:
        raise click.UsageError(f"--data is required for --dataset {dataset}")
    if not ECG_DATASETS[dataset].needs_data and data:  # it trained on them and said nothing
        layouts = ", ".join(n for n, d in ECG_DATASETS.items() if d.needs_data)
        raise click.UsageError(f"--data is read in the layout --dataset names ({layouts}); "
                               f"with --dataset {dataset}{' (the default)' * (dataset == 'synth')}"
                               " it would be ignored")
    refuse_unread_options("--dataset", dataset, OPTION_READERS)
    check_fresh(out, overwrite)
    cfg = EmotionEcgConfig(dataset=dataset, data=data, threshold=threshold,
                           trust_pickle=trust_pickle, arch=arch, hop_s=hop_s, filter=filt,
                           group=group, folds=folds, test_fraction=test_fraction, epochs=epochs,
                           batch_size=batch_size, learning_rate=lr, dropout=dropout, seed=seed,
                           synth_subjects=synth_subjects, synth_trials=synth_trials,
                           synth_seconds=synth_seconds)
    try:
        with replacing(out, RUN_OUTPUTS, overwrite):  # back if this run fails
            train_emotion_ecg(cfg, Path(out))
    except (ValueError, FileNotFoundError, KeyError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"run written to {out}")


@train_group.command("emotion-multimodal")
@click.option("--dataset", type=click.Choice(["synth"]), default="synth", show_default=True)
@click.option("--window-seconds", "window_s", type=FiniteRange(0, 600, min_open=True), default=30.0,
              show_default=True,
              help="Seconds of ECG+GSR per window.")
@deprecated_alias("--window", "--window-seconds", "window_s",
                  type=FiniteRange(0, 600, min_open=True))
@click.option("--physio-fs", type=FiniteRange(*PHYSIO_FS_RANGE), default=16.0, show_default=True,
              help="Rate of the physio sequence the LSTM reads (Hz).")
@click.option("--conv-layers", type=click.IntRange(1, 8), default=2, show_default=True)
@click.option("--lstm-units", type=click.IntRange(1, 4096), default=64, show_default=True)
@click.option("--dropout", type=SHARE, default=0.3, show_default=True)
@click.option("--grid", "grid", is_flag=False, flag_value="", default=None,
              help="Grid search; optional spec 'conv_layers=1,2;lstm_units=32,64;dropout=0.2,0.5'"
                   " (bare --grid: conv 1,2,3 x LSTM 32,64 x dropout 0.2,0.5).")
@click.option("--no-baselines", is_flag=True, help="Skip the CNN-only and RNN-only baselines.")
@click.option("--epochs", type=click.IntRange(min=1), default=40, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--lr", type=RATE, default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--patience", type=COUNT, default=8, show_default=True)
@click.option("--synth-subjects", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--synth-per-class", type=click.IntRange(1, 1000), default=12, show_default=True,
              help="Synthetic windows per subject and emotion.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Run directory (new or empty).")
@overwrite_option
def train_emotion_multimodal_cmd(dataset, window_s, physio_fs, conv_layers, lstm_units, dropout,
                                 grid, no_baselines, epochs, batch_size, lr, patience,
                                 synth_subjects, synth_per_class, seed, out, overwrite) -> None:
    """Multimodal hybrid (seed 001): ECG+GSR LSTM, HRV/GSR features, face CNN; 5 emotions."""
    from .emotion import MultimodalConfig, parse_grid, train_emotion_multimodal

    try:
        grid_spec = parse_grid(grid) if grid is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--grid") from exc
    check_fresh(out, overwrite)
    cfg = MultimodalConfig(dataset=dataset, window_s=window_s, physio_fs=physio_fs,
                           conv_layers=conv_layers, lstm_units=lstm_units, dropout=dropout,
                           grid=grid_spec, baselines=not no_baselines, epochs=epochs,
                           batch_size=batch_size, learning_rate=lr, patience=patience,
                           synth_subjects=synth_subjects, synth_per_class=synth_per_class,
                           seed=seed)
    try:
        with replacing(out, RUN_OUTPUTS, overwrite):  # back if this run fails
            train_emotion_multimodal(cfg, Path(out))
    except (ValueError, FileNotFoundError, KeyError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"run written to {out}")


@train_group.command("qrs-check")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Directory of annotated WFDB records (MIT-BIH).")
@click.option("--records", help="Comma-separated records to train on (default: the DS1 "
                                "records present; never a patient you score on).")
@click.option("--noise", "noise_dir", required=True,
              type=click.Path(exists=True, file_okay=False),
              help="Directory holding the noise records ma and bw (nstdb-noise).")
@click.option("--leads", default="MLII", show_default=True,
              help="Comma-separated leads to train on, each where a record has it; "
                   "'all': every lead of every record.")
@click.option("--epochs", type=click.IntRange(1, 1000), default=16, show_default=True)
@click.option("--crops", type=click.IntRange(100, 10**7), default=12000, show_default=True,
              help="5-s windows drawn per epoch.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Weights file to write (.npz); the device ships "
                   "device/dsp/qrs_net.npz.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def train_qrs_check_cmd(data, records, noise_dir, leads, epochs, crops, seed, out,
                        overwrite) -> None:
    """Train the network of the beat check (which of the detector's beats are noise)."""
    from vitaledge.device.io.atomic import write_atomic
    from vitaledge.device.io.records import RecordError, list_records, select_records

    from .qrs_check import train_qrs_check
    from .splits import DS1

    out = Path(out)
    if out.exists() and not overwrite:
        raise click.ClickException(f"{out} exists; pass --overwrite to replace it")
    json_out_ready(out, "--out")  # its folder made and writable before the training
    try:
        paths = list_records(data)
        names = csv_list(records) or [p.name for p in paths if p.name in DS1]
        if not names:
            raise RecordError(f"{data}: no DS1 record; name the records with --records")
        chosen = select_records(paths, names)
        lead_names = None if leads.strip().lower() == "all" else tuple(csv_list(leads))
        net = train_qrs_check(chosen, Path(noise_dir), epochs, crops, seed, lead_names,
                              log=lambda m: click.echo(m, err=True))
    except (RecordError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    meta = (f"vitaledge train qrs-check --records {','.join(names)} --leads {leads} "
            f"--epochs {epochs} "
            f"--crops {crops} --seed {seed}")
    buf = io.BytesIO()
    net.save(buf, meta)
    write_atomic(out, buf.getvalue())
    click.echo(f"wrote {out} ({len(names)} records: {', '.join(names)})")
