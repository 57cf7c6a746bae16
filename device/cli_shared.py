"""What the command modules share, below every one of them: ``device/cli.py`` and the
command groups of the layers under it (``device/fleet/cli.py``,
``device/bench/reliability/cli.py``) take these from here."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import click


class FiniteRange(click.FloatRange):
    """A :class:`click.FloatRange` that also refuses NaN (every comparison lets it
    through) and infinities."""

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv

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
    if not os.access(folder, os.W_OK) or Path(path).is_dir():
        raise click.ClickException(f"{option} {path}: cannot write there")


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
    if not os.access(folder, os.W_OK):
        raise click.ClickException(f"{option} {path}: cannot write there")
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
