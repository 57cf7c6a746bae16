"""The directory a training or conversion writes (``--out``): never one that already holds
files, unless the user says so with ``--overwrite``, so a mistyped path cannot replace an
earlier run's model, metrics or artifacts. No TensorFlow here: the check runs before it
loads.

In a multi-worker cluster (``train beat`` only) every worker is started with the same
``--out`` but only the chief writes it (:func:`chief_task`, the rule
:func:`vitaledge.train.fit.is_chief` applies to the running strategy); the other workers do
not check it, since the chief may already have written there when a slower worker starts.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import click

#: How many of the files found an error names.
SHOWN = 3


def chief_task(task_type: str | None, task_id: int, cluster: dict) -> bool:
    """Whether this task writes the run directory: a task of no cluster, the ``chief``,
    or ``worker`` 0 when the cluster names no chief."""
    if not task_type or task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def writes_out(environ=os.environ) -> bool:
    """:func:`chief_task` for this process, read from ``TF_CONFIG`` (a process with none
    writes its own ``--out``)."""
    try:
        config = json.loads(environ.get("TF_CONFIG") or "{}")
        task = config.get("task") or {}
        return chief_task(task.get("type"), int(task.get("index", 0)),
                          config.get("cluster") or {})
    except (ValueError, TypeError, AttributeError) as exc:
        raise click.ClickException(f"TF_CONFIG: not a cluster description ({exc})") from exc


def held_files(path: Path) -> list[str]:
    """The names of what ``path`` holds (empty: absent or an empty directory); a folder
    with no file anywhere in it holds nothing to lose and is not named (a run that failed
    before training left an empty ``fold-1/``, and the same command was then refused)."""
    path = Path(path)
    if not path.is_dir():
        return []
    return sorted(p.name for p in path.iterdir()
                  if not p.is_dir() or any(not q.is_dir() for q in p.rglob("*")))


def check_fresh(path: Path, overwrite: bool, option: str = "--out", cluster: bool = False,
                own: str | None = None) -> None:
    """Refuse (one line, exit 1) a ``path`` that holds files, unless ``overwrite``; refuse
    a ``path`` that is a file whatever ``overwrite`` says. ``cluster``: the command may run
    as one worker of a multi-worker cluster (``train beat``), where only the chief checks.
    ``own``: a regular expression of the names this run may find there already (the other
    folds of a fold-at-a-time run)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise click.ClickException(f"{option} {path}: is a file, not a directory")
    if overwrite or (cluster and not writes_out()):
        return
    held = [n for n in held_files(path) if own is None or not re.fullmatch(own, n)]
    if held:
        more = f" and {len(held) - SHOWN} more" if len(held) > SHOWN else ""
        raise click.ClickException(
            f"{option} {path}: already holds {', '.join(held[:SHOWN])}{more} (an earlier "
            "run?); give a new directory, or --overwrite to write over it")


def overwrite_option(fn):
    """The ``--overwrite`` flag that lets :func:`check_fresh` pass a directory in use."""
    return click.option("--overwrite", is_flag=True,
                        help="Write into --out even if it holds files (an earlier run's "
                             "files of the same names are replaced).")(fn)
