"""Baseline row providers for the bench that other stages register (the root CLI registers
the Keras baseline, which needs TensorFlow; the device side never imports it). Kept apart
from :mod:`.bench` so registering costs no imports."""

from __future__ import annotations

from collections.abc import Callable

BASELINES: dict[str, Callable[..., list]] = {}

#: Beat windows for ``bench`` when it is given no data: ``(spec, n, seed) -> (X, y)``. The
#: root registers the simulated patient (firmware_sim), which device never imports.
DEFAULT_INPUTS: dict[str, Callable[..., tuple]] = {}
