"""``vitaledge fleet deploy``: publish a signed artifact to devices over MQTT and follow
what each one does with it.

:func:`read_artifact` takes what a device needs from an artifact directory — the manifest,
its signature and the files the manifest names (the model, the self-test vectors) — and
refuses, before anything is sent, an artifact that is unsigned, has no self-test vectors or
whose files do not match its manifest. :func:`publish` sends it chunked (QoS 1) to
``PREFIX/v1/<site>/<device>/deploy`` or ``PREFIX/v1/<site>/all/deploy``
(:mod:`~vitaledge.device.stream.ota_wire`); :func:`deploy` does that after subscribing to
the devices' ``deploy/status`` and hands each status message of this deployment to a
callback until every device has an outcome or the wait is over.
"""

from __future__ import annotations

import json
import queue
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vitaledge.device.dsp.spec_fields import finite_number
from vitaledge.device.fleet import connect
from vitaledge.device.stream import mqtt, ota_wire

#: States that end a deployment on a device, and those of them that are a success.
FINAL = {"refused", "unchanged", "probation_passed", "rolled_back"}
GOOD = {"unchanged", "probation_passed"}
#: The objects a status message may carry, and their numbers (each may be null).
STATUS_NUMBERS = {"": ("swap_ms", "elapsed_s"),
                  "probation": ("seconds", "outputs", "latency_p99_ms", "error_rate"),
                  "selftest": ("vectors", "max_abs_diff")}


class DeployError(ValueError):
    """The artifact cannot be deployed, or the targets cannot be found."""


@dataclass
class Bundle:
    """What a deployment carries: the manifest and signature objects, and the files the
    manifest names."""

    path: Path
    manifest: dict
    signature: dict
    files: dict[str, bytes]

    @property
    def sha256(self) -> str:
        return self.manifest["sha256"]


def read_artifact(path: str | Path) -> Bundle:
    """The deployable parts of an artifact directory; an unsigned artifact, one without
    self-test vectors or with files that do not match the manifest is refused."""
    from vitaledge.device.model.manifest import ManifestError, load_manifest
    from vitaledge.device.model.selftest import SelfTestError, read_vectors
    from vitaledge.device.model.signing import SIG_FILE

    path = Path(path)
    try:
        m, model_path = load_manifest(path)
    except ManifestError as exc:
        raise DeployError(str(exc)) from exc
    if m.selftest is None:
        raise DeployError(f"{path}: no self-test vectors (manifest schema "
                          f"{m.schema_version}): devices refuse such models; convert it "
                          "again with this vitaledge, which writes selftest.npz")
    try:
        read_vectors(path, m)
    except SelfTestError as exc:
        raise DeployError(str(exc)) from exc
    try:
        signature = json.loads((path / SIG_FILE).read_text())
    except FileNotFoundError as exc:
        raise DeployError(f"{path}: unsigned (no {SIG_FILE}): devices refuse unsigned "
                          "models; sign it: vitaledge device sign ARTIFACT --key KEY") from exc
    except (OSError, ValueError) as exc:
        raise DeployError(f"{path / SIG_FILE}: unreadable: {exc}") from exc
    if not isinstance(signature, dict):
        raise DeployError(f"{path / SIG_FILE}: not a signature object")
    raw = json.loads((path / "manifest.json").read_text())
    files = {m.model_file: model_path.read_bytes(),
             m.selftest.file: (path / m.selftest.file).read_bytes()}
    return Bundle(path, raw, signature, files)


def new_deployment_id() -> str:
    return "d-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def messages(bundle: Bundle, deployment: str,
             chunk_bytes: int = ota_wire.CHUNK_BYTES) -> list[bytes]:
    """The header and chunk payloads of a deployment of ``bundle``."""
    head = ota_wire.header(deployment, bundle.manifest, bundle.signature, bundle.files,
                           chunk_bytes, sent=mqtt.now_iso())
    return [mqtt.payload(head)] + [mqtt.payload(c) for c in
                                   ota_wire.chunks(deployment, bundle.files, chunk_bytes)]


def publish(client, prefix: str, targets: list[tuple[str, str]], payloads: list[bytes],
            timeout_s: float = 30.0) -> None:
    """Every payload to every ``(site, device)`` deploy topic (QoS 1), each acknowledged
    by the broker before this returns."""
    infos = [client.publish(mqtt.deploy_topic(prefix, site, device), p, qos=1)
             for site, device in targets for p in payloads]
    deadline = time.monotonic() + timeout_s
    for info in infos:
        info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        if not info.is_published():
            raise DeployError("the broker did not acknowledge the deployment within "
                              f"{timeout_s:g} s")


def find_targets(url: str, device: str | None, site: str | None,
                 wait_s: float = 1.0) -> tuple[list[tuple[str, str]], set[tuple[str, str]]]:
    """(deploy topics as (site, device or ``all``), the devices expected to answer). A
    device or site not given is looked up in the devices' retained status messages."""
    from vitaledge.device.fleet.view import fleet_status

    rows = [] if device and site else fleet_status(url, wait_s)
    if device:
        if device == mqtt.ALL_DEVICES:
            raise DeployError(f"--device {device}: reserved; use --all")
        sites = [site] if site else sorted({r["site"] for r in rows if r["device"] == device})
        if not sites:
            raise DeployError(f"device {device!r} has no retained status under this prefix "
                              "(never connected?); give --site")
        return [(s, device) for s in sites], {(s, device) for s in sites}
    online = [r for r in rows if r["online"] and (site is None or r["site"] == site)]
    if not online:  # nobody would take it (deployments are not retained)
        raise DeployError(f"no online devices at site {site}" if site else
                          "no online devices under this prefix")
    sites = [site] if site else sorted({r["site"] for r in online})
    return ([(s, mqtt.ALL_DEVICES) for s in sites],
            {(r["site"], r["device"]) for r in online})


def status_problem(body: dict) -> str | None:
    """What makes a device's deploy status message unusable, or None: a ``state`` or
    ``reason`` that is no string, a ``probation``/``selftest`` that is no object, one of
    their numbers that is no finite number. Such a message (a device's bug, or anyone
    publishing under the prefix) is ignored, not taken for the device's outcome."""
    if not isinstance(body.get("state"), str):
        return "state is not a string"
    if body.get("reason") is not None and not isinstance(body["reason"], str):
        return "reason is not a string"
    for part, numbers in STATUS_NUMBERS.items():
        obj = body.get(part) if part else body
        if obj is None:
            continue
        if not isinstance(obj, dict):
            return f"{part} is not an object"
        for name in numbers:
            v = obj.get(name)
            if v is not None and not finite_number(v):
                return f"{part + '.' if part else ''}{name} is not a finite number"
    return None


@dataclass
class Report:
    """Each device's status messages of one deployment, in arrival order; ``malformed``
    counts the ones ignored (see :func:`status_problem`)."""

    deployment: str
    expected: set[tuple[str, str]]
    statuses: dict[tuple[str, str], list[dict]] = field(default_factory=dict)
    malformed: int = 0

    def final(self, key: tuple[str, str]) -> dict | None:
        got = [s for s in self.statuses.get(key, []) if s.get("state") in FINAL]
        return got[-1] if got else None

    @property
    def done(self) -> bool:
        keys = self.expected | set(self.statuses)
        return bool(keys) and all(self.final(k) is not None for k in keys)

    def failures(self) -> list[str]:
        """One phrase per device that refused, rolled back or did not finish."""
        out = []
        for key in sorted(self.expected | set(self.statuses)):
            f = self.final(key)
            if f is None:
                last = (self.statuses.get(key) or [{}])[-1].get("state")
                out.append(f"{key[0]}/{key[1]}: no outcome in time" +
                           (f" (last state {last})" if last else " (no answer)"))
            elif f["state"] not in GOOD:
                out.append(f"{key[0]}/{key[1]} {f['state']}: {f.get('reason')}")
        return out


def deploy(url: str, bundle: Bundle, targets: list[tuple[str, str]],
           expected: set[tuple[str, str]], wait_s: float = 0.0,
           on_status: Callable[[dict, float], None] | None = None,
           chunk_bytes: int = ota_wire.CHUNK_BYTES, deployment: str | None = None,
           on_malformed: Callable[[tuple[str, str], str], None] | None = None) -> Report:
    """Publish ``bundle`` to ``targets``; with ``wait_s``, follow the devices' status
    messages of this deployment (``on_status(message, seconds since publishing)``, called
    in this thread) until each expected device (and any other that answers) has an
    outcome, or ``wait_s``. A malformed status message is counted and handed to
    ``on_malformed((site, device), what was wrong)`` instead; the wait goes on."""
    deployment = deployment or new_deployment_id()
    report = Report(deployment, set(expected))
    prefix = mqtt.parse_url(url).prefix
    arrived = queue.Queue()
    t0 = [time.monotonic()]

    def on_message(topic: str, body: dict) -> None:  # paho's thread
        where = mqtt.parse_topic(prefix, topic)
        if where is not None and body.get("deployment") == deployment:
            arrived.put(((where[0], where[1]), body, time.monotonic() - t0[0]))

    sites = sorted({s for s, _ in targets})
    topics = [mqtt.deploy_status_topic(prefix, s, "+") for s in sites]
    client, _ = connect.subscriber(url, topics, on_message)  # subscribed, or OSError
    try:
        payloads = messages(bundle, deployment, chunk_bytes)
        t0[0] = time.monotonic()
        publish(client, prefix, targets, payloads)
        deadline = time.monotonic() + wait_s
        while wait_s > 0 and time.monotonic() < deadline:
            try:
                key, body, seconds = arrived.get(timeout=0.05)
            except queue.Empty:
                continue
            problem = status_problem(body)
            if problem is not None:
                report.malformed += 1
                if on_malformed is not None:
                    on_malformed(key, problem)
                continue
            report.statuses.setdefault(key, []).append(body)
            if on_status is not None:
                on_status(body, seconds)
            if report.done and report.expected <= set(report.statuses):
                break
    finally:
        connect.stop(client)
    return report
