"""Over-the-air model updates, the daemon's side: deployments from the MQTT broker are
verified, staged, self-tested, swapped in without stopping the stream, watched on
probation and rolled back when they fail it.

The daemon (``[ota] enabled = true`` with an ``mqtt://`` sink and a ``verify_key``) starts
one :class:`Updater`. Its MQTT connection (client id ``<the sink's>-ota``, a persistent
session, the sink's broker options) subscribes with QoS 1 to
``PREFIX/v1/<site>/<device>/deploy`` and ``PREFIX/v1/<site>/all/deploy``; paho's thread
only reassembles messages (:class:`~.ota_wire.Assembler`), the updater's own thread does
the rest, one deployment at a time:

1. ``received`` (the header came), then the files whole — else ``refused`` (garbage,
   too large, incomplete, superseded);
2. the files are written to ``MODELS_DIR/incoming/<id>`` and checked
   (:func:`~vitaledge.device.model.staging.verify_deployment`: signature by the
   configured key, sha256 of the model and the vectors, a model that fits the running
   one) and moved to ``releases/``: ``staged``;
3. loaded the way the daemon loads models and run on its self-test vectors:
   ``selftest_passed``;
4. ``current`` switched to it (``previous`` := the model serving; a probation marker
   written first) and the model swapped into the running pipeline under the daemon's lock
   (:meth:`Daemon.swap_model`, the reload path): ``swapped``. The stream never stops; the
   next window is classified by the new model;
5. probation for ``probation_s`` seconds and at least ``probation_beats`` model outputs:
   the pipeline crashing ends it at once; then the chunks refused as bad signal per chunk
   processed (``max_error_rate``), the unreadable share of the stream
   (``max_unreadable``) and the p99 of the model's inference calls (``max_latency_ms``)
   are held to their limits: ``probation_passed``, or ``rolled_back`` (the model before
   swapped back in, the links restored) with the reason. A daemon that stops or dies
   during probation rolls back too (at the next start, from the marker, when it died).

A refusal at any step leaves the running model serving and deletes what was staged. Each
step is a JSON status message (QoS 1) on ``PREFIX/v1/<site>/<device>/deploy/status``
(:func:`status_message`); after a swap or rollback the MQTT sink publishes its retained
birth message again, with the new model's sha256. Outcomes are counted in
``vitaledge_deployments_total{outcome}``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Protocol

import numpy as np

from vitaledge.device.stream import mqtt
from vitaledge.device.stream.ota_wire import Assembler, Deployment, Outcome

log = logging.getLogger("vitaledge.ota")
#: States of a deployment's status messages; the last four end it.
STATES = ("received", "staged", "selftest_passed", "swapped", "refused", "unchanged",
          "probation_passed", "rolled_back")
#: A probation still short of ``probation_beats`` model outputs after this many times
#: ``probation_s`` fails: the model could not be judged.
PROBATION_WAIT_FACTOR = 10.0
GARBAGE_STATUS_EVERY_S = 1.0  # refusals of messages without a deployment id, at most


@dataclass(frozen=True)
class OtaOptions:
    """The ``[ota]`` table of the daemon's config (flags ``--ota``, ``--models-dir``,
    ``--probation``)."""

    enabled: bool = False
    models_dir: str = ""  # "" = $STATE_DIRECTORY (or .)/models
    max_bytes: int = 64_000_000  # a deployment larger than this is refused
    assembly_timeout_s: float = 60.0  # a deployment silent this long, incomplete: refused
    probation_s: float = 30.0
    probation_beats: int = 10  # model outputs (beats, emotion estimates) at least
    max_error_rate: float = 0.05  # chunks refused as bad signal, per chunk processed
    max_unreadable: float = 0.5  # share of the stream judged unreadable (beat models)
    max_latency_ms: float = 50.0  # p99 of the model's inference calls

    def __post_init__(self) -> None:
        for key in ("max_bytes", "assembly_timeout_s", "probation_s", "max_latency_ms"):
            v = getattr(self, key)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"ota {key} {v!r}: expected a number > 0")
        if self.probation_beats < 0:
            raise ValueError(f"ota probation_beats {self.probation_beats!r}: expected >= 0")
        for key in ("max_error_rate", "max_unreadable"):
            v = getattr(self, key)
            if not (np.isfinite(v) and 0 <= v <= 1):
                raise ValueError(f"ota {key} {v!r}: expected a fraction 0-1")

    @property
    def models_path(self) -> Path:
        if self.models_dir:
            return Path(self.models_dir)
        return Path(os.environ.get("STATE_DIRECTORY", ".").split(":")[0]) / "models"


_KEYS = {f.name: f.type for f in fields(OtaOptions)}


def check_table(table: dict) -> OtaOptions:
    """The ``[ota]`` table as options; unknown keys, wrong types or values refused."""
    unknown = set(table) - set(_KEYS)
    if unknown:
        raise ValueError(f"ota: unknown keys {sorted(unknown)}; known: {', '.join(_KEYS)}")
    for key, value in table.items():
        want = {"int": int, "float": (int, float), "bool": bool, "str": str}[_KEYS[key]]
        if isinstance(value, bool) and want is not bool or not isinstance(value, want):
            raise ValueError(f"ota {key} = {value!r}: expected {_KEYS[key]}")
    return OtaOptions(**table)


class Host(Protocol):
    """What the updater needs of the daemon."""

    reg: object  # the prometheus registry

    def serving(self): ...  # the main model serving now

    def load_model(self, path: str): ...  # loaded as the daemon loads its models

    def swap_model(self, model) -> None: ...  # under the daemon's lock; raises if unfit

    def probe(self) -> dict: ...  # items, signal_errors, failure, stopping, quality

    def announce(self) -> None: ...  # the MQTT sink's birth message again


class TimedModel:
    """A model whose ``predict`` calls are timed and counted (the probation's figures);
    everything else is the model's."""

    def __init__(self, model, keep: int = 20_000):
        self.model = model
        self.seconds: deque[float] = deque(maxlen=keep)
        self.outputs = 0

    def predict(self, x):
        t = time.perf_counter()
        y = self.model.predict(x)
        self.seconds.append(time.perf_counter() - t)
        self.outputs += len(y)
        return y

    def __getattr__(self, name):
        return getattr(self.model, name)


def unwrap(model):
    return model.model if isinstance(model, TimedModel) else model


class Probation:
    """A swapped-in model's probation: :meth:`verdict` says passed, failed (why) or not
    yet, from the daemon's counters since the swap."""

    def __init__(self, opts: OtaOptions, timed: TimedModel, start: dict, t0: float):
        self.opts, self.timed, self.start, self.t0 = opts, timed, start, t0

    def figures(self, probe: dict, now: float) -> dict:
        items = probe["items"] - self.start["items"]
        errors = probe["signal_errors"] - self.start["signal_errors"]
        lat = list(self.timed.seconds)
        q0, q1 = self.start.get("quality"), probe.get("quality")
        unreadable = None
        if q0 and q1:
            seconds = {k: q1[f"{k}_s"] - q0[f"{k}_s"] for k in ("good", "doubtful",
                                                                "unreadable")}
            judged = sum(seconds.values())
            unreadable = round(seconds["unreadable"] / judged, 4) if judged > 0 else None
        return {"seconds": round(now - self.t0, 2), "outputs": self.timed.outputs,
                "inference_calls": len(lat), "items": items, "signal_errors": errors,
                "error_rate": round(errors / items, 4) if items else 0.0,
                "unreadable_fraction": unreadable,
                "latency_p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 4)
                if lat else None}

    def verdict(self, probe: dict, now: float) -> tuple[bool, str, dict] | None:
        """(passed, reason, figures), or None while it goes on."""
        o = self.opts
        f = self.figures(probe, now)
        if probe.get("failure"):
            return False, f"the pipeline failed on probation: {probe['failure']}", f
        if probe.get("stopping"):
            return False, "the daemon stopped during probation", f
        if f["seconds"] < o.probation_s or f["outputs"] < o.probation_beats:
            if f["seconds"] >= PROBATION_WAIT_FACTOR * o.probation_s:
                return False, (f"only {f['outputs']} model outputs in {f['seconds']:g} s "
                               f"(probation_beats {o.probation_beats}): the model could not "
                               "be judged"), f
            return None
        why = []
        if f["error_rate"] > o.max_error_rate:
            why.append(f"error rate {f['error_rate']:g} > limit {o.max_error_rate:g} "
                       f"({f['signal_errors']} of {f['items']} chunks refused)")
        if f["unreadable_fraction"] is not None and f["unreadable_fraction"] > o.max_unreadable:
            why.append(f"unreadable fraction {f['unreadable_fraction']:g} > limit "
                       f"{o.max_unreadable:g}")
        if f["latency_p99_ms"] is not None and f["latency_p99_ms"] > o.max_latency_ms:
            why.append(f"inference latency p99 {f['latency_p99_ms']:g} ms > limit "
                       f"{o.max_latency_ms:g} ms over {f['inference_calls']} calls")
        return (not why), "; ".join(why), f


def status_message(site: str, device: str, deployment: str | None, state: str,
                   reason: str = "", **fields) -> dict:
    """One deploy/status payload."""
    now = time.time()
    return {"schema": mqtt.SCHEMA, "site": site, "device": device, "deployment": deployment,
            "state": state, "reason": reason or None, "time": mqtt.now_iso(now),
            "t": round(now, 3), **fields}


@dataclass
class _Active:
    """The deployment on probation."""

    id: str
    release: str
    switch: object
    old: object  # the model serving before: swapped back on a rollback
    probation: Probation
    received_t: float
    sha256: str
    previous_sha256: str


class Updater:
    """The daemon's over-the-air updater (see the module docstring)."""

    def __init__(self, opts: OtaOptions, mqtt_opts: mqtt.MqttOptions, store, verify_key: str,
                 host: Host, recovered: dict | None = None,
                 clock: Callable[[], float] = time.monotonic):
        from prometheus_client import Counter

        self.opts, self.mqtt_opts, self.store, self.key, self.host = (
            opts, mqtt_opts, store, verify_key, host)
        self.site, self.device = mqtt_opts.ids
        self.clock = clock
        self.m_deployments = Counter("vitaledge_deployments", "Over-the-air deployments, per "
                                     "outcome", ["outcome"], registry=host.reg)
        for outcome in ("probation_passed", "refused", "rolled_back", "unchanged"):
            self.m_deployments.labels(outcome)
        self.assembler = Assembler(opts.max_bytes, opts.assembly_timeout_s, clock)
        self._asm_lock = threading.Lock()
        self._work: queue.Queue[Deployment] = queue.Queue(maxsize=1)
        self._active: _Active | None = None
        self._last: dict = {}
        self._say_lock = threading.Lock()
        self._backlog: deque[dict] = deque(maxlen=100)
        self._infos: deque = deque(maxlen=200)
        self._connected = False
        self._garbage_t = -1e9
        self._stop = threading.Event()
        self.listening = threading.Event()  # the broker granted the deploy subscriptions
        self.client = None
        if recovered is not None:
            self._recovered(recovered)
        self._connect()
        self._thread = threading.Thread(target=self._run, name="ota", daemon=True)
        self._thread.start()

    # -- state for the daemon's birth message and /health ---------------------------------
    def summary(self) -> dict:
        """The last deployment, its state, and the model kept for a rollback."""
        prev = self.store.previous
        return {**self._last, "listening": self.listening.is_set(),
                "probation": self._active is not None, "current_release": self.store.current,
                "previous_release": prev}

    # -- MQTT -------------------------------------------------------------------------------
    def _topics(self) -> list[str]:
        p = self.mqtt_opts.prefix
        return [mqtt.deploy_topic(p, self.site, self.device),
                mqtt.deploy_topic(p, self.site, mqtt.ALL_DEVICES)]

    def _connect(self) -> None:
        o = self.mqtt_opts
        cid = (o.client_id or f"vitaledge-{self.site}-{self.device}") + "-ota"
        c = mqtt.new_client(o, cid, clean_session=False)
        c.reconnect_delay_set(min_delay=1, max_delay=10)

        def on_connect(client, userdata, flags, reason_code, properties):
            if reason_code.is_failure:
                log.error(json.dumps({"event": "ota_mqtt_refused", "reason": str(reason_code)}))
                return
            client.subscribe([(t, 1) for t in self._topics()])
            with self._say_lock:
                self._connected = True
                backlog = list(self._backlog)
                self._backlog.clear()
            for body in backlog:
                self._say(body)
            log.info(json.dumps({"event": "ota_listening", "topics": self._topics()}))

        def on_disconnect(client, userdata, flags, reason_code, properties):
            self.listening.clear()
            with self._say_lock:
                self._connected = False

        def on_subscribe(client, userdata, mid, reason_codes, properties):
            if not any(rc.is_failure for rc in reason_codes):
                self.listening.set()

        c.on_connect, c.on_disconnect, c.on_subscribe = on_connect, on_disconnect, on_subscribe
        c.on_message = lambda client, userdata, msg: self._message(msg.payload)
        self.client = c
        c.connect_async(o.host, o.port, o.keepalive)
        c.loop_start()

    def _say(self, body: dict) -> None:
        """A status message (QoS 1); kept until connected when the broker is away."""
        topic = mqtt.deploy_status_topic(self.mqtt_opts.prefix, self.site, self.device)
        with self._say_lock:
            if not self._connected:
                self._backlog.append(body)
                return
            try:
                self._infos.append(self.client.publish(topic, mqtt.payload(body), qos=1))
            except (OSError, ValueError) as exc:
                log.warning(json.dumps({"event": "ota_status_error", "error": str(exc)}))

    def _status(self, deployment: str | None, state: str, reason: str = "", **fields) -> None:
        body = status_message(self.site, self.device, deployment, state, reason, **fields)
        if deployment is not None:
            self._last = {"deployment": deployment, "state": state, "reason": reason or None,
                          "time": body["time"]}
        (log.warning if state in ("refused", "rolled_back") else log.info)(json.dumps(
            {"event": f"ota_{state}", "deployment": deployment,
             **({"reason": reason} if reason else {})}))
        self._say(body)

    def _message(self, payload: bytes) -> None:
        """paho's thread: reassembly only; a whole deployment goes to the updater thread."""
        with self._asm_lock:
            outcomes = self.assembler.feed(payload)
        self._outcomes(outcomes)

    def _outcomes(self, outcomes: list[Outcome]) -> None:
        for o in outcomes:
            if o.kind == "received":
                self._status(o.deployment_id, "received", **self._models(), **o.info)
            elif o.kind == "refused":
                self._refused(o.deployment_id, o.reason, "message")
            elif o.kind == "complete":
                try:
                    self._work.put_nowait(o.deployment)
                except queue.Full:
                    self._refused(o.deployment_id, "busy: another deployment is being "
                                  "installed", "busy")

    def _models(self) -> dict:
        return {"serving_sha256": self.host.serving().manifest.sha256}

    def _refused(self, deployment: str | None, reason: str, code: str, **fields) -> None:
        if deployment is None:  # garbage: counted always, reported at most once a second
            self.m_deployments.labels("refused").inc()
            now = self.clock()
            if now - self._garbage_t < GARBAGE_STATUS_EVERY_S:
                log.debug(json.dumps({"event": "ota_refused", "reason": reason}))
                return
            self._garbage_t = now
        else:
            self.m_deployments.labels("refused").inc()
        self._status(deployment, "refused", reason, code=code, **{**self._models(), **fields})

    # -- the updater's thread ---------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                dep = self._work.get(timeout=0.1)
            except queue.Empty:
                dep = None
            try:
                if dep is not None:
                    self._install(dep)
                with self._asm_lock:
                    expired = self.assembler.expire()
                self._outcomes(expired)
                self._watch()
            except Exception as exc:  # noqa: BLE001 - the updater must not take the daemon down
                log.exception("ota: unexpected error")
                if dep is not None and (self._active is None or self._active.id != dep.id):
                    self._refused(dep.id, f"internal error: {type(exc).__name__}: {exc}",
                                  "internal")
        if self._active is not None:  # the daemon stops: its probation ends here
            self._watch(final=True)

    def _install(self, dep: Deployment) -> None:
        from vitaledge.device.model.manifest import ManifestError
        from vitaledge.device.model.runtime import ModelLoadError
        from vitaledge.device.model.signing import SIG_FILE
        from vitaledge.device.model.staging import StagingError, self_test, verify_deployment

        t = lambda: round(self.clock() - dep.received_t, 4)  # noqa: E731
        old = self.host.serving()
        old_m = old.manifest
        new_sha = dep.manifest.get("sha256") if isinstance(dep.manifest.get("sha256"),
                                                           str) else None
        ids = {"model_sha256": new_sha, "serving_sha256": old_m.sha256}
        if self._active is not None:
            self._refused(dep.id, f"busy: deployment {self._active.id} is on probation",
                          "busy", model_sha256=new_sha, elapsed_s=t())
            return
        files = dict(dep.files)
        files["manifest.json"] = (json.dumps(dep.manifest, indent=2) + "\n").encode()
        if dep.signature is not None:
            files[SIG_FILE] = (json.dumps(dep.signature) + "\n").encode()
        incoming = release = None
        try:
            incoming = self.store.receive(dep.id, files)
            m = verify_deployment(incoming, self.key, old_m)
            unnamed = sorted(set(dep.files) - {m.model_file, m.selftest.file})
            if unnamed:
                raise StagingError(f"files the manifest does not name: {unnamed}",
                                   "bad_manifest")
            if new_sha == old_m.sha256:
                self.store.discard(incoming)
                self.m_deployments.labels("unchanged").inc()
                self._status(dep.id, "unchanged", "this model is already serving", **ids,
                             elapsed_s=t())
                return
            release = self.store.keep(incoming)
            incoming = None
            self._status(dep.id, "staged", release=release, **ids, elapsed_s=t())
            model = self.host.load_model(str(self.store.path(release)))
            result = self_test(model, self.store.path(release))
            self._status(dep.id, "selftest_passed", selftest=result.to_dict(), **ids,
                         elapsed_s=t())
        except (StagingError, ManifestError, ModelLoadError, OSError, ValueError) as exc:
            for leftover in (incoming, release):
                if leftover is not None and leftover not in (self.store.current,
                                                             self.store.previous):
                    self.store.discard(leftover)
            code = getattr(exc, "code", "load_failed")
            self._refused(dep.id, str(exc), code, model_sha256=new_sha, elapsed_s=t())
            return
        self._swap(dep, release, old, model, ids, t)

    def _swap(self, dep: Deployment, release: str, old, model, ids: dict, t) -> None:
        timed = TimedModel(model)
        try:
            switch = self.store.activate(release, {"deployment": dep.id,
                                                   "model_sha256": ids["model_sha256"]})
        except OSError as exc:
            self.store.discard(release)
            self._refused(dep.id, f"cannot switch models_dir links: {exc}", "storage", **ids,
                          elapsed_s=t())
            return
        start = self.host.probe()
        t0 = time.perf_counter()
        try:
            self.host.swap_model(timed)
        except ValueError as exc:  # SignalError: the stage would not take it
            self.store.restore(switch)
            self._refused(dep.id, f"the running pipeline refused the model: {exc}",
                          "wrong_input", **ids, elapsed_s=t())
            return
        swap_ms = round((time.perf_counter() - t0) * 1e3, 3)
        self._active = _Active(dep.id, release, switch, old,
                               Probation(self.opts, timed, start, self.clock()),
                               dep.received_t, ids["model_sha256"], ids["serving_sha256"])
        self._status(dep.id, "swapped", model_sha256=ids["model_sha256"],
                     serving_sha256=ids["model_sha256"],
                     previous_sha256=ids["serving_sha256"], swap_ms=swap_ms, elapsed_s=t(),
                     last_seq_before=start.get("last_seq"),
                     probation={"seconds": self.opts.probation_s,
                                "beats": self.opts.probation_beats})
        self.host.announce()

    def _watch(self, final: bool = False) -> None:
        a = self._active
        if a is None:
            return
        probe = self.host.probe()
        if final and not probe.get("failure"):
            probe = {**probe, "stopping": True}
        v = a.probation.verdict(probe, self.clock())
        if v is None:
            return
        passed, reason, figures = v
        elapsed = round(self.clock() - a.received_t, 4)
        if passed:
            self.store.confirm()
            try:  # the same model without the probation's timing
                self.host.swap_model(unwrap(self.host.serving()))
            except ValueError:
                pass
            self._active = None
            self.m_deployments.labels("probation_passed").inc()
            self._status(a.id, "probation_passed", model_sha256=a.sha256,
                         serving_sha256=a.sha256, previous_sha256=a.previous_sha256,
                         probation=figures, elapsed_s=elapsed)
        else:
            try:
                self.host.swap_model(a.old)
            except ValueError as exc:  # the old model fitted before; report, still restore
                log.error(json.dumps({"event": "ota_rollback_swap_failed", "error": str(exc)}))
            self.store.restore(a.switch)
            self._active = None
            self.m_deployments.labels("rolled_back").inc()
            self._status(a.id, "rolled_back", reason, model_sha256=a.sha256,
                         serving_sha256=a.previous_sha256, probation=figures,
                         elapsed_s=elapsed)
        self.host.announce()

    def _recovered(self, marker: dict) -> None:
        """A probation the last run did not finish was rolled back at start."""
        self.m_deployments.labels("rolled_back").inc()
        self._status(marker.get("deployment") if isinstance(marker.get("deployment"), str)
                     else None, "rolled_back", "the daemon exited during probation (crash, "
                     "kill or stop); rolled back at start",
                     model_sha256=marker.get("model_sha256"))

    def close(self, timeout: float = 3.0) -> None:
        """End (a probation going on fails: the daemon stops), send what is queued,
        disconnect."""
        self._stop.set()
        self._thread.join(timeout=timeout)
        deadline = time.monotonic() + timeout
        for info in list(self._infos):
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass
        try:
            self.client.disconnect()
        except (OSError, ValueError):
            pass
        self.client.loop_stop()
