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


def write_json(path: str | Path, obj) -> None:
    """Write a ``--json FILE`` result; an unwritable path is a one-line CLI error."""
    try:
        Path(path).write_text(json.dumps(obj, indent=2) + "\n")
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from exc
