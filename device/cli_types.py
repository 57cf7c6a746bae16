"""Click parameter types the commands share, below every command module: ``device/cli.py``
and ``device/fleet/cli.py`` (a layer under it) both take them from here."""

from __future__ import annotations

import math

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
