"""Strict reading of spec dicts (signal, window and filter specs) into frozen dataclasses.

A spec arrives as a JSON dict (a run's config, a model's manifest). Every field must be
known, present and of the type its dataclass declares; an error is a :class:`SpecError`
naming the field by its path (``signal.window.length: expected int, got 'x'``), so a bad
manifest says where it is bad. Range checks stay with each spec (``__post_init__``).
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Callable
from dataclasses import fields
from typing import Any


class SpecError(ValueError):
    """A spec is invalid; ``path`` names the field (``window.length``), ``msg`` says why."""

    def __init__(self, path: str, msg: str):
        super().__init__(f"{path}: {msg}" if path else msg)
        self.path, self.msg = path, msg

    def under(self, where: str) -> SpecError:
        """The same error, its path prefixed with ``where`` (the enclosing field)."""
        return SpecError(f"{where}.{self.path}" if self.path else where, self.msg)


def finite_number(value: Any) -> bool:
    """A number as JSON carries one: a finite int or float; bools are not numbers."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _is(value: Any, annotation: str) -> bool:
    """Does ``value`` (from JSON) have the type of a dataclass field's string annotation?
    ``float`` takes finite ints and floats; bools are not numbers."""
    for alt in (a.strip() for a in annotation.split("|")):
        if alt == "None" and value is None:
            return True
        if alt == "str" and isinstance(value, str):
            return True
        if alt == "bool" and isinstance(value, bool):
            return True
        if isinstance(value, bool):
            continue
        if alt == "int" and isinstance(value, int):
            return True
        if alt == "float" and finite_number(value):
            return True
        if alt.startswith("list[") and isinstance(value, list) and all(
                _is(v, alt[5:-1]) for v in value):
            return True
    return False


def read_fields(cls, d: Any, where: str, nested: dict[str, Callable] | None = None,
                require_all: bool = True, word: str = "fields") -> dict:
    """The keyword arguments of dataclass ``cls`` from dict ``d``: unknown fields are
    errors, and so are missing ones with ``require_all`` (else the default is used); each
    value must match the field's annotation, or is read by ``nested[name](value, path)``."""
    if not isinstance(d, dict):
        raise SpecError(where, f"expected an object, got {type(d).__name__}")
    names = [f.name for f in fields(cls)]
    unknown = sorted((k for k in d if k not in names), key=str)
    missing = [n for n in names if n not in d] if require_all else []
    if unknown or missing:
        raise SpecError(where, f"unknown {word} {unknown}, missing {word} {missing}")
    kw = {}
    for f in fields(cls):
        if f.name not in d:
            continue
        value, path = d[f.name], f"{where}.{f.name}"
        if nested and f.name in nested:
            kw[f.name] = nested[f.name](value, path)
        elif not _is(value, str(f.type)):
            raise SpecError(path, f"expected {f.type}, got {reprlib.repr(value)}")
        else:
            kw[f.name] = value
    return kw


def construct(cls, kw: dict, where: str):
    """``cls(**kw)``; range errors from its ``__post_init__`` come out under ``where``."""
    try:
        return cls(**kw)
    except SpecError as exc:
        raise exc.under(where) from None
    except (ValueError, OverflowError) as exc:
        raise SpecError(where, str(exc)) from None


def require(ok: bool, path: str, msg: str) -> None:
    """Raise :class:`SpecError` at ``path`` unless ``ok``."""
    if not ok:
        raise SpecError(path, msg)


#: Sample rates a record or a model's signal may have (Hz). ECG is sampled at 100-1000 Hz
#: in practice; a header outside this range is a typo or an attack, not a recording (fs
#: 360,000,000 once made the daemon allocate 1.8 GB before it noticed; a manifest's window
#: rate of 1e9 Hz hung the benches in the resampler's filter design).
FS_RANGE = (10.0, 10_000.0)
#: The same for audio (a speech model's rate, a WAV file's).
AUDIO_FS_RANGE = (FS_RANGE[0], 192_000.0)


def sample_rate(spec, *names: str, bounds: tuple[float, float] = FS_RANGE) -> None:
    """Each named field of ``spec`` must be a sample rate within ``bounds`` (Hz)."""
    lo, hi = bounds
    for n in names:
        v = getattr(spec, n)
        require(lo <= v <= hi, n, f"{v!r} Hz is outside {lo:g}-{hi:g} Hz")


def positive(spec, *names: str) -> None:
    """Each named field of ``spec`` must be > 0."""
    for n in names:
        v = getattr(spec, n)
        require(v > 0, n, f"expected a positive number, got {v!r}")


def non_negative(spec, *names: str) -> None:
    """Each named field of ``spec`` must be >= 0."""
    for n in names:
        v = getattr(spec, n)
        require(v >= 0, n, f"expected a number >= 0, got {v!r}")
