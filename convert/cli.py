"""``vitaledge convert RUN_DIR --target ... --out DIR``."""

from __future__ import annotations

import contextlib
import sys
import zipfile
from pathlib import Path

import click

from vitaledge.device.cli_shared import FiniteRange
from vitaledge.device.model.runtime import MAX_THREADS
from vitaledge.train.run_dir import CONVERT_OUTPUTS, check_fresh, overwrite_option, replacing

from .targets import WEIGHT_ROUNDINGS, choices, quant_choices, quant_defaults


def _floats(value: str | None) -> list[float]:
    """``--prune``: one sparsity or a comma list, each in [0, 1) (0 = unpruned)."""
    if not value:
        return [0.0]
    out = []
    for v in value.split(","):
        try:
            f = float(v)
        except ValueError:
            raise click.BadParameter(f"{v.strip()!r} is not a number; expected sparsities in "
                                     "[0, 1), e.g. 0,0.5", param_hint="--prune") from None
        if not 0.0 <= f < 1.0:  # also NaN
            raise click.BadParameter(f"sparsity {f} not in [0, 1)", param_hint="--prune")
        if any(round(100 * g) == round(100 * f) for g in out):  # the same variant's name
            raise click.BadParameter(f"sparsity {f:g} given twice (the second would replace "
                                     "the first's artifacts)", param_hint="--prune")
        out.append(f)
    return out


def _check_prune(ctx, param, value: str | None) -> str | None:
    """``--prune`` checked as it is parsed, before any work."""
    _floats(value)
    return value


def _check_targets(ctx, param, value: str) -> str:
    """``--target``: a comma list of the target table's names, or ``all``."""
    names = [t.strip() for t in value.split(",")]
    bad = [t for t in names if t not in choices()]
    if bad:
        raise click.BadParameter(f"{', '.join(bad)}: expected {' | '.join(choices())}",
                                 param_hint="--target")
    twice = sorted({t for t in names if names.count(t) > 1})
    if twice:
        raise click.BadParameter(f"{', '.join(twice)} given twice", param_hint="--target")
    return value


@click.command("convert")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--target", "targets", default="cpu", show_default=True,
              callback=_check_targets,
              help=f"{' | '.join(choices())} (comma list allowed).")
@click.option("--quant", type=click.Choice(quant_choices()),
              help=f"Quantization (default: the target's own; beat runs: "
                   f"{quant_defaults('beat')}; emotion runs: {quant_defaults('emotion')}; "
                   "none is fp32). int8-fc: int8 matrix products, float elsewhere (recurrent "
                   "models).")
@click.option("--prune", "prune", callback=_check_prune,
              help="Target sparsity, or a comma list such as 0,0.5,0.75 (0 = unpruned).")
@click.option("--prune-epochs", type=click.IntRange(1, 1000), default=4, show_default=True,
              help="Fine-tuning epochs while pruning.")
@click.option("--qat", is_flag=True, help="Quantization-aware fine-tuning before int8.")
@click.option("--representative", type=click.IntRange(min=1), default=300, show_default=True,
              help="Calibration windows (class-stratified, from the training split).")
@click.option("--weight-rounding", type=click.Choice(WEIGHT_ROUNDINGS),
              default="compensated", show_default=True,
              help="Full int8: round Conv/Dense kernels compensating each rounding error "
                   "on the calibration inputs (GPTQ), or to the nearest step.")
@click.option("--max-drop", type=FiniteRange(min=0), default=1.0, show_default=True,
              help="Largest allowed accuracy drop vs Keras, in points.")
@click.option("--allow-drop", is_flag=True, help="Exit 0 even when an artifact drops more.")
@click.option("--threads", type=click.IntRange(1, MAX_THREADS), default=1, show_default=True)
@click.option("--name", default="vitaledge", show_default=True,
              help="C identifier prefix for the micro target.")
@click.option("--sign", "sign_key", type=click.Path(exists=True, dir_okay=False),
              help="Ed25519 private key (PEM): write manifest.sig beside every manifest "
                   "(vitaledge device keygen makes one).")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Directory for the artifacts (new or empty).")
@overwrite_option
def convert_cmd(run_dir, targets, quant, prune, prune_epochs, qat, representative,
                weight_rounding, max_drop, allow_drop, threads, name, sign_key, out,
                overwrite) -> None:
    """Prune, quantize and export a training run to TFLite; verify every artifact."""
    from vitaledge.train.run_files import check_keras_file

    ctx = click.get_current_context()
    if (ctx.get_parameter_source("prune_epochs") is click.core.ParameterSource.COMMANDLINE
            and not any(sp > 0 for sp in _floats(prune))):  # taken and ignored
        raise click.UsageError("--prune-epochs is the fine-tuning of --prune: give a "
                               "sparsity above 0 with it, or leave it out")
    try:  # a missing or corrupt model fails here, before TensorFlow and the data
        check_keras_file(Path(run_dir) / "model.keras")
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    check_fresh(out, overwrite)  # refused when it holds files and no --overwrite
    from .pipeline import DROP, FAIL, ConvertOptions, convert_run

    opts = ConvertOptions(targets=[t.strip() for t in targets.split(",")], quant=quant,
                          sparsities=_floats(prune), qat=qat, representative_size=representative,
                          max_drop=max_drop, prune_epochs=prune_epochs, threads=threads,
                          name=name, weight_rounding=weight_rounding)
    if sign_key:  # fail before the long conversion, not after
        from vitaledge.device.model.signing import load_private_key

        try:
            load_private_key(sign_key)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
    with contextlib.ExitStack() as earlier:
        def set_earlier_aside() -> None:  # once every option has passed its checks
            earlier.enter_context(replacing(Path(out), CONVERT_OUTPUTS, overwrite,
                                            artifacts=True))  # back if the conversion fails
        try:
            results = convert_run(Path(run_dir), Path(out), opts,
                                  before_writing=set_earlier_aside)
        except (ValueError, FileNotFoundError) as exc:
            raise click.ClickException(str(exc)) from exc
        except (OSError, zipfile.BadZipFile) as exc:  # a model file past the check, the disk
            where = getattr(exc, "filename", None) or run_dir
            raise click.ClickException(f"{where}: {getattr(exc, 'strerror', None) or exc}"
                                       ) from exc
        failed = [r.variant for r in results if r.status == FAIL]
        if failed and len(failed) == len(results):  # nothing made: the earlier comes back
            click.echo(f"failed: {', '.join(failed)}", err=True)
            sys.exit(2)
        if sign_key:  # a signature that cannot be written fails the run, earlier back too
            from vitaledge.device.model.signing import SignatureError, sign_artifact

            for r in results:
                if r.status != FAIL and (r.path / "manifest.json").exists():
                    try:
                        click.echo(f"signed {sign_artifact(r.path, sign_key)}")
                    except SignatureError as exc:
                        raise click.ClickException(str(exc)) from exc
    dropped = [r.variant for r in results if r.status == DROP]
    if failed:  # some made: they stay, and the exit says some failed
        click.echo(f"failed: {', '.join(failed)}", err=True)
        sys.exit(2)
    if dropped and not allow_drop:
        click.echo(f"accuracy dropped more than {max_drop} points: {', '.join(dropped)} "
                   "(--allow-drop to accept)", err=True)
        sys.exit(1)
