"""vitaledge: biosignal models from training to the edge.

The stages live in their own import packages: ``vitaledge.train``, ``vitaledge.convert``,
``vitaledge.device`` and ``vitaledge.firmware_sim``. This root package only holds the
version and the Click entry point that composes one command group per stage.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vitaledge")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
