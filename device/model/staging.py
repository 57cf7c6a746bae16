"""Model staging on the device: the models directory of a daemon taking over-the-air
deployments, and the checks a deployed model passes before it may serve.

Layout of the models directory (``[ota] models_dir``)::

    current -> releases/<name>     the model serving (the daemon loads MODELS_DIR/current)
    previous -> releases/<name>    the one before it: kept, the rollback target
    releases/<name>/               artifacts: manifest.json, manifest.sig, the model file,
                                   the self-test vectors; <name> = model sha256 (12 hex
                                   digits) + "-" + 8 hex digits of the signed manifest's hash
    incoming/<deployment>/         a deployment being checked (never loaded from here)
    probation.json                 present while a swapped-in model is on probation: what to
                                   restore when it fails, or when the daemon dies first

``current`` and ``previous`` are symlinks switched with ``os.replace`` (atomic: a crash
leaves the old link or the new one, never none), and the directory is fsync'd after. A
release stays while a link names it; the others are removed.

:func:`verify_deployment` is the gate: a valid Ed25519 signature by the configured key
over the manifest, model bytes and self-test vectors matching the manifest's sha256 and
size, self-test vectors present, and a model that fits the running one (same task, labels,
signal spec and input names and shapes: the stream's windows are made for them).
:func:`self_test` runs the vectors through the loaded model. Each refusal is a
:class:`StagingError` whose ``code`` says which check failed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from vitaledge.device.inputs.beat import DECISION_RULES
from vitaledge.device.io.atomic import write_atomic
from vitaledge.device.model.manifest import (
    Manifest,
    ManifestError,
    input_key,
    load_manifest,
    manifest_path,
    verify_model_file,
)
from vitaledge.device.model.selftest import SelfTestError, SelfTestResult, check, read_vectors
from vitaledge.device.model.signing import SIG_FILE, SignatureError, canonical_bytes

PENDING_FILE = "probation.json"
#: Signal-spec keys that decide classes rather than make inputs (the beat spec's rules).
DECISION_KEYS = DECISION_RULES


class StagingError(ManifestError):
    """A deployment refused; ``code`` names the check (``unsigned``, ``bad_signature``,
    ``bad_manifest``, ``tampered``, ``no_selftest``, ``wrong_task``, ``wrong_labels``,
    ``wrong_input``, ``selftest_failed``, ``storage``)."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


def check_fits(new: Manifest, running: Manifest) -> None:
    """Refuse a model the running stream cannot feed: another task, other labels, another
    signal spec (lead, windows, rate, filter, RR features, template; its decision rules,
    :data:`DECISION_KEYS`, may differ), other inputs (names, per-window shapes). Target,
    quantization and dtypes may differ: the stages hand the model float windows."""
    if new.task != running.task:
        raise StagingError(f"wrong task: a {new.task!r} model, the running model is "
                           f"{running.task!r}", "wrong_task")
    if new.labels != running.labels:
        raise StagingError(f"wrong labels: {new.labels}, the running model's are "
                           f"{running.labels}", "wrong_labels")
    a, b = ({k: v for k, v in m.signal.to_dict().items() if k not in DECISION_KEYS}
            for m in (new, running))
    if a != b:
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise StagingError(f"wrong input: signal spec differs from the running model's in "
                           f"{keys}", "wrong_input")
    want = [(input_key(t.name), t.shape[1:]) for t in running.inputs]
    got = [(input_key(t.name), t.shape[1:]) for t in new.inputs]
    if got != want:
        raise StagingError(f"wrong input: inputs {got}, the running model takes {want}",
                           "wrong_input")


def verify_deployment(artifact: str | Path, verify_key: str | Path,
                      running: Manifest) -> Manifest:
    """The checks before a deployed artifact is loaded (see the module docstring); returns
    its manifest."""
    from vitaledge.device.model.signing import verify_artifact

    artifact = Path(artifact)
    if not (artifact / SIG_FILE).is_file():
        raise StagingError("unsigned: the deployment carries no manifest.sig (sign the "
                           "artifact: vitaledge device sign ARTIFACT --key KEY)", "unsigned")
    try:
        signed = verify_artifact(artifact, verify_key)
    except SignatureError as exc:
        raise StagingError(f"bad signature: {exc}", "bad_signature") from exc
    try:
        m, model_path = load_manifest(artifact, verify_file=False)
    except ManifestError as exc:
        raise StagingError(f"bad manifest: {exc}", "bad_manifest") from exc
    if Manifest.from_dict(signed, where=str(artifact)) != m:
        raise StagingError(f"bad signature: {artifact}: manifest changed while it was read",
                           "bad_signature")
    try:
        verify_model_file(m, model_path)
    except ManifestError as exc:
        raise StagingError(f"tampered: {exc}", "tampered") from exc
    if m.selftest is None:
        raise StagingError("no self-test vectors: the manifest names none (convert it again "
                           "with this vitaledge)", "no_selftest")
    try:
        read_vectors(artifact, m)
    except SelfTestError as exc:
        raise StagingError(f"tampered: {exc}", "tampered") from exc
    check_fits(m, running)
    return m


def self_test(model, artifact: str | Path) -> SelfTestResult:
    """The vectors through the loaded ``model``; a failure is a :class:`StagingError`."""
    try:
        result = check(model, artifact)
    except SelfTestError as exc:
        raise StagingError(f"tampered: {exc}", "tampered") from exc
    if not result.passed:
        raise StagingError(f"self-test failed: {result.reason}", "selftest_failed")
    return result


def release_name(artifact: str | Path) -> str:
    """``<model sha256[:12]>-<manifest hash[:8]>``: one name per signed content."""
    mpath = manifest_path(artifact)
    try:
        raw = json.loads(mpath.read_text())
        digest = hashlib.sha256(canonical_bytes(raw)).hexdigest()
        sha = str(raw["sha256"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StagingError(f"{mpath}: cannot read the manifest: {exc}", "bad_manifest") \
            from exc
    return f"{sha[:12]}-{digest[:8]}"


@dataclass(frozen=True)
class Switch:
    """The links before a switch (release names, None when absent): what a rollback
    restores."""

    current: str | None
    previous: str | None


class ModelStore:
    """The models directory (layout in the module docstring)."""

    def __init__(self, root: str | Path):
        # absolute: an incoming directory is told from a release name by being a path
        # (with a relative --models-dir, refused deployments stayed in incoming/)
        self.root = Path(root).absolute()
        self._lock_fd: int | None = None
        self.releases = self.root / "releases"
        self.incoming = self.root / "incoming"
        try:
            self.releases.mkdir(parents=True, exist_ok=True)
            self.incoming.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StagingError(f"models_dir {self.root}: {exc.strerror or exc}",
                               "storage") from exc
        for link in ("current", "previous"):
            p = self.root / link
            if p.exists() and not p.is_symlink():
                raise StagingError(f"models_dir {self.root}: {link} is not a symlink (the "
                                   "daemon switches models by replacing it)", "storage")

    def lock(self) -> None:
        """Hold ``MODELS_DIR/.lock`` for as long as this process runs (or :meth:`unlock`):
        a second daemon on the same directory is refused before it touches it (one started
        by mistake rolled a running daemon's probation back and deleted the release it
        was serving, then failed to start)."""
        import fcntl

        path = self.root / ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StagingError(f"models_dir {self.root} is in use by another daemon (pid "
                               f"{holder}): one daemon per models directory", "storage"
                               ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    @property
    def current_link(self) -> Path:
        """What the daemon loads: ``MODELS_DIR/current``."""
        return self.root / "current"

    def _name(self, link: str) -> str | None:
        try:
            target = os.readlink(self.root / link)
        except OSError:
            return None
        name = Path(target).name
        return name if (self.releases / name).is_dir() else None

    @property
    def current(self) -> str | None:
        return self._name("current")

    @property
    def previous(self) -> str | None:
        return self._name("previous")

    def path(self, name: str) -> Path:
        return self.releases / name

    def _link(self, link: str, name: str | None) -> None:
        dest = self.root / link
        if name is None:
            dest.unlink(missing_ok=True)
            return
        tmp = self.root / f".{link}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(f"releases/{name}", tmp)
        os.replace(tmp, dest)

    def _sync(self) -> None:
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def seed(self, artifact: str | Path) -> tuple[Path, bool]:
        """The model to serve: ``current`` when the store has one (what the last
        deployment or rollback left), else ``artifact`` copied in as ``current``. Returns
        (``current`` link, whether ``artifact`` was copied in)."""
        if self.current is not None:
            return self.current_link, False
        src = Path(artifact)
        if not manifest_path(src).is_file():
            raise StagingError(f"{artifact}: no manifest.json to seed models_dir "
                               f"{self.root} with", "bad_manifest")
        name = release_name(src)
        dest = self.path(name)
        if not dest.is_dir():
            tmp = self.incoming / f"seed-{name}"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(src, tmp, symlinks=False)
            os.replace(tmp, dest)
        self._link("current", name)
        self._sync()
        return self.current_link, True

    def receive(self, deployment: str, files: dict[str, bytes]) -> Path:
        """Write a deployment's files into ``incoming/<deployment>`` (fsync'd)."""
        d = self.incoming / deployment
        shutil.rmtree(d, ignore_errors=True)
        try:
            d.mkdir(parents=True)
            for name, data in files.items():
                with open(d / name, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
        except OSError as exc:
            shutil.rmtree(d, ignore_errors=True)
            raise StagingError(f"cannot write the deployment into {d}: "
                               f"{exc.strerror or exc}", "storage") from exc
        return d

    def keep(self, incoming: Path) -> str:
        """Move a verified deployment into ``releases/`` (the same content already there is
        kept as it is); its release name."""
        name = release_name(incoming)
        dest = self.path(name)
        if dest.is_dir():
            shutil.rmtree(incoming, ignore_errors=True)
        else:
            os.replace(incoming, dest)
        return name

    def activate(self, name: str, note: dict) -> Switch:
        """``previous`` := ``current``, ``current`` := ``name``, after writing the
        probation marker (``note`` plus what to restore): a daemon that dies before the
        probation ends comes back on the model before (:meth:`recover`)."""
        before = Switch(self.current, self.previous)
        marker = {**note, "release": name, "before": {"current": before.current,
                                                      "previous": before.previous},
                  "time": time.time()}
        write_atomic(self.root / PENDING_FILE, json.dumps(marker) + "\n", fsync=True)
        self._link("previous", before.current)
        self._link("current", name)
        self._sync()
        return before

    def restore(self, before: Switch) -> None:
        """Put the links back as they were before :meth:`activate`; end the probation."""
        self._link("current", before.current)
        self._link("previous", before.previous)
        self._end_probation()

    def confirm(self) -> None:
        """The probation passed: the links stay, the marker goes."""
        self._end_probation()

    def _end_probation(self) -> None:
        (self.root / PENDING_FILE).unlink(missing_ok=True)
        self._sync()
        self.prune()

    def pending(self) -> dict | None:
        """The probation marker, when a probation was under way."""
        try:
            marker = json.loads((self.root / PENDING_FILE).read_text())
        except (OSError, ValueError):
            return None
        return marker if isinstance(marker, dict) else None

    def recover(self) -> dict | None:
        """At start: a probation the last run did not finish (it crashed, was killed or
        stopped) is failed; the links are restored. Returns the marker, else None."""
        marker = self.pending()
        if marker is None:
            (self.root / PENDING_FILE).unlink(missing_ok=True)
            return None
        before = marker.get("before") if isinstance(marker.get("before"), dict) else {}
        names = [before.get("current"), before.get("previous")]
        if not all(n is None or (isinstance(n, str) and self.path(n).is_dir()) for n in names):
            raise StagingError(f"{self.root / PENDING_FILE}: names releases that are not "
                               "there; cannot roll back", "storage")
        self.restore(Switch(*names))
        return marker

    def discard(self, name_or_dir: str | Path) -> None:
        """Remove a refused deployment (a release no link names, or an incoming dir)."""
        p = Path(name_or_dir)
        p = p if p.is_absolute() else self.path(str(name_or_dir))
        if p.parent == self.releases and p.name in (self.current, self.previous):
            return
        shutil.rmtree(p, ignore_errors=True)

    def prune(self) -> None:
        """Remove the releases no link (or probation marker) names, and leftovers in
        ``incoming/``."""
        keep = {self.current, self.previous}
        marker = self.pending()
        if marker is not None:
            keep.add(marker.get("release"))
        for p in self.releases.iterdir():
            if p.name not in keep:
                shutil.rmtree(p, ignore_errors=True)
        for p in self.incoming.iterdir():
            shutil.rmtree(p, ignore_errors=True)
        for p in self.root.glob(".*.tmp"):
            p.unlink(missing_ok=True)
