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

import contextlib
import json
import os
import re
import shutil
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


#: What a training run writes (its model, config, metrics, splits, folds, plots, logs):
#: ``--overwrite`` sets an earlier run's aside while the new one writes (:func:`replacing`),
#: so no earlier model or fold is left beside the new config (evaluate and convert took the
#: earlier model, exit 0). Folds are ``fold-1`` … or, leave-one-record-out, ``fold-<record>``.
RUN_OUTPUTS = (r"model(-member\d+)?\.keras|config\.json|metrics\.json|splits\.npz|data\.npz"
               r"|test_predictions\.npz|classification_report\.txt|history(-member\d+)?\.csv"
               r"|ec57\.(json|md|png)|folds\.(json|md|png)|fold-[^/]+|logs(-member\d+)?"
               r"|loro\.json|loro_report\.txt|comparison\.md|roc_curves\.png"
               r"|confusion_matrix(_normalized)?\.png|training_history\.png|roc\.png")
#: What a conversion writes: its artifact folders (those holding a manifest.json), the
#: held-out inputs and the summary.
CONVERT_OUTPUTS = r"heldout\.npz|convert_summary\.(json|txt)"


def is_output(p: Path, names: str, artifacts: bool = False) -> bool:
    """Whether ``p`` is an earlier run's or conversion's output: its name matches ``names``
    or, with ``artifacts``, it is a folder holding a manifest.json (an artifact)."""
    return bool(re.fullmatch(names, p.name)) or (artifacts and p.is_dir()
                                                  and (p / "manifest.json").is_file())


def made_by_run(p: Path, names: str, artifacts: bool, moved: list[str]) -> bool:
    """Whether ``p``, new in ``--out`` since a run began, is that run's: an output
    (:func:`is_output`), a name an earlier output had, or with ``artifacts`` an artifact
    still being written (a folder holding its model file and no manifest.json yet, or
    nothing yet). Anything else (a cache folder the user pointed into ``--out``, a file put
    there meanwhile) is not the run's to remove."""
    if is_output(p, names, artifacts) or p.name in moved:
        return True
    return artifacts and p.is_dir() and not p.is_symlink() and (
        (p / "model.tflite").exists() or not any(p.iterdir()))


def remove(p: Path) -> None:
    """Remove the file or folder ``p`` (a link itself, not what it points to)."""
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    else:
        p.unlink()


#: Where :func:`replacing` keeps an earlier run's outputs while the new run writes.
ASIDE = ".vitaledge-earlier-run"


@contextlib.contextmanager
def replacing(path: Path, names: str, overwrite: bool, option: str = "--out",
              artifacts: bool = False):
    """With ``overwrite``, the earlier run's outputs in ``path`` (``names`` and, with
    ``artifacts``, artifact folders: :func:`is_output`) are moved aside into ``path/ASIDE``
    while the block writes the new run. If the block fails (a refused input, an error,
    Ctrl-C), what it made in ``path`` (:func:`made_by_run`: its outputs, a half-written
    artifact too, whose manifest.json is written last; not other files) is removed and the
    earlier outputs are put back: a run refused halfway no longer costs the earlier one.
    If it succeeds, the earlier outputs are removed. Without ``overwrite``, or with no
    earlier outputs, nothing is moved (and nothing removed)."""
    path = Path(path)
    aside = path / ASIDE
    moved: list[str] = []
    if overwrite and path.is_dir():
        try:
            if aside.exists():  # a run killed mid-way left it: those are the earlier outputs
                raise OSError(f"{aside} is left from an interrupted run: move its files "
                              "back or remove it")
            for p in sorted(path.iterdir()):
                if is_output(p, names, artifacts):
                    aside.mkdir(exist_ok=True)
                    p.rename(aside / p.name)
                    moved.append(p.name)
        except BaseException as exc:  # nothing written yet: the moved ones simply go back
            _return(path, aside, moved)
            if not isinstance(exc, OSError):
                raise
            where = f" ({exc.filename})" if exc.filename else ""
            raise click.ClickException(f"{option} {path}: cannot set the earlier outputs "
                                       f"aside{where}: {exc.strerror or exc}") from exc
    kept = {p.name for p in path.iterdir()} if moved else set()  # the user's, and ASIDE
    try:
        yield
    except BaseException:
        if moved:  # what the failed run made goes, the earlier comes back
            for p in sorted(path.iterdir()):
                if p.name not in kept and made_by_run(p, names, artifacts, moved):
                    remove(p)
            _return(path, aside, moved)
        raise
    if moved:
        shutil.rmtree(aside, ignore_errors=True)


def _return(path: Path, aside: Path, moved: list[str]) -> None:
    """Move the entries ``moved`` from ``aside`` back into ``path``."""
    for name in moved:
        (aside / name).rename(path / name)
    if moved:
        aside.rmdir()


def check_folder_path(path: Path, option: str = "--out") -> None:
    """Refuse (one line, exit 1) a ``path`` that is a file, or that lies below one (the
    nearest existing folder above it is not a folder: it cannot be made)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise click.ClickException(f"{option} {path}: is a file, not a directory")
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise click.ClickException(f"{option} {path}: {parent} is a file, not a "
                                           "directory")
            return


def check_fresh(path: Path, overwrite: bool, option: str = "--out", cluster: bool = False,
                own: str | None = None) -> None:
    """Refuse (one line, exit 1) a ``path`` that holds files, unless ``overwrite`` (the
    earlier outputs are then set aside by :func:`replacing` while the new run writes);
    refuse a ``path`` that is a file whatever ``overwrite`` says. ``cluster``: the command
    may run as one worker of a multi-worker cluster (``train beat``), where only the chief
    checks. ``own``: a regular expression of the names this run may find there already
    (the other folds of a fold-at-a-time run)."""
    path = Path(path)
    check_folder_path(path, option)
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
                             "outputs are replaced; other files are left).")(fn)
