"""The CLI grammar every stage's commands share, below every command module: ``device/cli.py``,
``device/data_cli.py``, the command groups of the layers under it (``device/bench/cli.py``,
``device/fleet/cli.py``, ``device/bench/reliability/cli.py``) and the other stages' CLIs
(train, convert, firmware) take these from here. (``vitaledge data`` is not in ``device/io``
because these helpers read records with it.)

One name, one meaning: ``--data DIR`` a record/data directory, ``--records LIST`` a comma
list of record names, ``--n-records N`` a count, ``--sink SPEC`` a daemon event sink
(repeatable), ``--out DIR`` an output directory, ``--json FILE`` a results file,
``--key FILE`` a key file. A renamed option keeps its old spelling as a hidden alias that
still works and warns on stderr (:func:`deprecated_alias`)."""

from __future__ import annotations

import functools
import json
import math
import tempfile
from pathlib import Path

import click
from click.core import ParameterSource


class FiniteRange(click.FloatRange):
    """A :class:`click.FloatRange` that also refuses NaN (every comparison lets it
    through) and infinities."""

    def convert(self, value, param, ctx):
        rv = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(rv):  # first: "inf is not in the range 0<x<=1e9" named no inf
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(rv, param, ctx)

    def _describe_range(self) -> str:  # click's hook for the help's [range]
        if self.min is None and self.max is None:
            return "finite"  # click wrote "x<=None"
        return super()._describe_range()


#: A length, rate or speed: 0 makes no sense.
POSITIVE = FiniteRange(min=0, min_open=True)

#: A random seed: what numpy's generators take (a negative one is refused deep inside
#: numpy with its own words).
SEED = click.IntRange(0, 2**32 - 1)


def json_out_ready(path: str | Path | None, option: str = "--json") -> None:
    """Before a long run: ``--json FILE``'s folder made (as the sinks make theirs) and
    writable, so the result is not lost at the end of it."""
    if not path:
        return
    folder = Path(path).absolute().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"{option} {path}: cannot create {folder}: "
                                   f"{exc.strerror or exc}") from exc
    if Path(path).is_dir():
        raise click.ClickException(f"{option} {path}: a directory, not a file")
    why = unwritable(folder)
    if why:
        raise click.ClickException(f"{option} {path}: cannot write there ({why})")


def unwritable(folder: Path) -> str | None:
    """Why no file can be made in ``folder`` (None: one can), found by making one and
    removing it: permission bits say nothing to root, and /proc or a read-only mount
    refuse what os.access allows (results were printed, then the run failed writing)."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".vitaledge-probe-"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def out_dir_ready(path: str | Path | None, option: str = "--out") -> list[Path]:
    """Before a long run: an ``--out`` folder made and writable, so the results are not
    lost at the end of it. Returns the folders this call made, innermost first (empty: the
    caller removes them again if the run fails)."""
    if not path:
        return []
    folder = Path(path)
    made = [p for p in [folder, *folder.parents] if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file on the way, no permission
        raise click.ClickException(f"{option} {path}: cannot create it: "
                                   f"{exc.strerror or exc}") from exc
    why = unwritable(folder)
    if why:
        raise click.ClickException(f"{option} {path}: cannot write there ({why})")
    return made


def not_an_input(out: str | Path | None, option: str, inputs) -> None:
    """Refuse an output path that is one of the command's inputs (``inputs``: paths, None
    skipped): writing it would destroy what the command reads or what a run wrote."""
    if out is None:
        return
    target = Path(out).resolve()
    for given in inputs:
        if given is not None and Path(given).resolve() == target:
            raise click.BadParameter(f"{out} is also an input of this command ({given}); "
                                     "writing it would destroy that: choose another path",
                                     param_hint=option)


def record_files(record: str | Path) -> list[Path]:
    """The files a WFDB record path (given with or without an extension) stands for: the
    path itself, header, the signal files its header names, annotations."""
    from vitaledge.device.io.records import record_path, signal_files

    base = record_path(record)
    return [Path(record), base, base.with_suffix(".hea"), *signal_files(base),
            base.with_suffix(".atr")]


def artifact_files(path: str | Path | None) -> list[Path]:
    """The files of an artifact given as its folder or as one of its files (model, manifest):
    every file in that folder, which a command's output must not replace."""
    if not path:
        return []
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    return [f for f in folder.iterdir() if f.is_file()] if folder.is_dir() else []


def data_files(path: str | Path | None) -> list[Path]:
    """The files a ``--data`` path stands for: the file itself, or the files directly in a
    folder with the signal files its WFDB headers name (clips in subfolders are not
    listed: an output is refused only where it would replace one of these)."""
    if not path:
        return []
    p = Path(path)
    if not p.is_dir():
        return [p]
    return [*(f for f in p.iterdir() if f.is_file()),
            *(f for h in p.glob("*.hea") for f in record_files(h))]


def write_json(path: str | Path, obj) -> None:
    """Write a ``--json FILE`` result; an unwritable path is a one-line CLI error."""
    try:
        Path(path).write_text(json.dumps(obj, indent=2) + "\n")
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from exc


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
    """A sample rate in Hz inside :data:`~vitaledge.device.dsp.spec_fields.FS_RANGE`, the rates
    every record reader accepts; NaN and infinities fail too."""

    name = "hz"

    def convert(self, value, param, ctx):
        from vitaledge.device.dsp.spec_fields import FS_RANGE

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


def option_readers(reads: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """Option -> the values of a choice that read it, from each value's options (a
    registry's ``reads``), options in sorted order: what a command refuses an option
    with when the chosen value does not read it."""
    return {option: tuple(v for v, opts in reads.items() if option in opts)
            for option in sorted({o for opts in reads.values() for o in opts})}
