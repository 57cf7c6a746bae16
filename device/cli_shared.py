"""What the command modules share, below every one of them: ``device/cli.py`` and the
command groups of the layers under it (``device/fleet/cli.py``,
``device/bench/reliability/cli.py``) take these from here."""

from __future__ import annotations

import json
import math
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


def write_json(path: str | Path, obj) -> None:
    """Write a ``--json FILE`` result; an unwritable path is a one-line CLI error."""
    try:
        Path(path).write_text(json.dumps(obj, indent=2) + "\n")
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from exc
