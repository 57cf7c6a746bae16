"""What ``vitaledge fleet`` shows, from the broker alone.

:func:`fleet_status` reads the retained ``status`` (birth / Last Will) and ``stats``
messages of every device under a prefix; :class:`Dedup` and :func:`tail` follow the
devices' events at least once from the broker and hand each one on exactly once, in the
order each device sent it (an event is known by its device, ``run`` and ``seq``).
Topics and payloads: :mod:`vitaledge.device.stream.mqtt`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from vitaledge.device.dsp.spec_fields import finite_number
from vitaledge.device.fleet import connect
from vitaledge.device.stream import mqtt

#: Seconds a device's clock may run ahead of this machine's before a time it sends (when
#: it started, when it sent its stats) is taken for invalid rather than shown as an age.
CLOCK_SKEW_S = 300.0


def fleet_status(url: str, wait_s: float = 1.0) -> list[dict]:
    """One row per device that left a retained status or stats message: its state, model,
    software version, uptime, events/s, drops, spool backlog and when it was last seen.
    OSError when the broker does not accept the connection or the subscription in time
    (:mod:`vitaledge.device.fleet.connect`)."""
    seen: dict[tuple[str, str], dict] = {}
    lock = threading.Lock()
    prefix = mqtt.parse_url(url).prefix

    def on_message(topic: str, body: dict | str) -> None:
        where = mqtt.parse_topic(prefix, topic)
        if where is None or not body:
            return
        site, device, rest = where
        with lock:
            seen.setdefault((site, device), {})[rest[0]] = body

    client, _ = connect.subscriber(url, [mqtt.topic(prefix, "+", "+", "status"),
                                         mqtt.topic(prefix, "+", "+", "stats")], on_message,
                                   on_invalid=on_message)  # a row, its message named invalid
    try:  # subscribed (connect.subscriber raised otherwise)
        time.sleep(wait_s)  # retained messages come right after subscribing
    finally:
        connect.stop(client)
    now = time.time()
    with lock:
        return [device_row(site, device, m.get("status", {}), m.get("stats", {}), now)
                for (site, device), m in sorted(seen.items())]


def device_row(site: str, device: str, status: dict | str, stats: dict | str, now: float) -> dict:
    """A device's row. A field of the wrong type (a device's bug, or anyone publishing
    under the prefix) reads as unknown and is named in ``invalid_fields``: one malformed
    message must not hide the other devices, nor this one's other fields. A message that
    is no JSON object (``status``/``stats`` given as why not) is named whole."""
    bad: list[str] = []
    if isinstance(stats, str):
        bad.append(f"stats ({stats})")
        stats = {}
    if isinstance(status, str):
        bad.insert(0, f"status ({status})")
        status, state = {}, "invalid"
    else:
        state = status.get("state", "unknown")
        if not isinstance(state, str):
            bad.append("status.state")
            state = "invalid"
    online = state == "online"
    model = _model(status, stats, bad)
    started = _time(status, "started_t", "status", bad, now)
    last = _time(stats, "t", "stats", bad, now)
    return {"site": site, "device": device, "state": state,
            "online": online, "reason": _text(status, "reason", "status", bad),
            "model_sha256": _text(model, "sha256", "model", bad),
            "model_task": _text(model, "task", "model", bad),
            "software_version": _text(status, "software_version", "status", bad)
            or _text(stats, "software_version", "stats", bad),
            "uptime_s": _age(now, started) if online else None,
            "events_per_s": _count(stats, "events_per_s", "stats", bad),
            "spool_dropped": _count(stats, "spool_dropped", "stats", bad),
            "dropped_samples": _count(stats, "dropped_samples", "stats", bad),
            "spool_backlog": _count(stats, "spool_backlog", "stats", bad),
            "last_seq": _count(stats, "last_seq", "stats", bad),
            "last_seen_s": _age(now, last),
            "invalid_fields": bad}


def _number(msg: dict, key: str, where: str, bad: list[str]) -> float | None:
    """``msg[key]`` if it is a finite number (JSON lets NaN through), else None; a value
    that is there but is no such number is named in ``bad`` as ``where.key``."""
    v = msg.get(key)
    if v is None or finite_number(v):
        return v
    bad.append(f"{where}.{key}")
    return None


def _age(now: float, t: float | None) -> float | None:
    """Seconds from ``t`` to ``now``; 0 for a ``t`` ahead of ``now`` by a clock skew."""
    return None if t is None else round(max(0.0, now - t), 1)


def _count(msg: dict, key: str, where: str, bad: list[str]) -> float | None:
    """``msg[key]`` if it is a finite number >= 0 (a counter or a rate), else None; one
    that is there but is no such number is named in ``bad``."""
    v = _number(msg, key, where, bad)
    if v is not None and v < 0:
        bad.append(f"{where}.{key}")
        return None
    return v


def _time(msg: dict, key: str, where: str, bad: list[str], now: float) -> float | None:
    """``msg[key]`` if it is a Unix time (a finite number >= 0) no more than
    :data:`CLOCK_SKEW_S` in the future of ``now``, else None; one that is there but is no
    such time is named in ``bad`` (an age from it would be absurd)."""
    v = _number(msg, key, where, bad)
    if v is not None and not 0 <= v <= now + CLOCK_SKEW_S:
        bad.append(f"{where}.{key}")
        return None
    return v


def _text(msg: dict, key: str, where: str, bad: list[str]) -> str | None:
    """``msg[key]`` if it is a string, else None; any other value is named in ``bad``."""
    v = msg.get(key)
    if v is None or isinstance(v, str):
        return v
    bad.append(f"{where}.{key}")
    return None


def _model(status: dict, stats: dict, bad: list[str]) -> dict:
    """The ``model`` object of the status message, else of the stats message; one that is
    not an object is named in ``bad`` and the other message's is used."""
    for where, msg in (("status", status), ("stats", stats)):
        m = msg.get("model")
        if isinstance(m, dict) and m:
            return m
        if m and not isinstance(m, dict):
            bad.append(f"{where}.model")
    return {}


class Dedup:
    """Each event once: an event whose (run, seq) its device already sent is a duplicate
    (the at-least-once delivery's re-sends). Remembers the last ``keep`` per device.
    ``malformed`` counts the events :func:`tail` skipped as malformed."""

    def __init__(self, keep: int = 200_000):
        self.keep = keep
        self._seen: dict[str, tuple[set, deque]] = {}
        self.duplicates = 0
        self.malformed = 0

    def first_time(self, device: str, event: dict) -> bool:
        """True the first time ``device`` sends this event; ValueError, naming the field,
        for a ``run`` that is no string or a ``seq`` that is no integer (no such event can
        be told from its re-sends)."""
        key = event_key(event)
        seen, order = self._seen.setdefault(device, (set(), deque()))
        if key in seen:
            self.duplicates += 1
            return False
        seen.add(key)
        order.append(key)
        if len(order) > self.keep:
            seen.discard(order.popleft())
        return True


def event_key(event: dict) -> tuple[str | None, int | None]:
    """(run, seq) of an event; ValueError naming the field when one has the wrong type."""
    run, seq = event.get("run"), event.get("seq")
    if seq is None:  # several such events would all read as re-sends of the first
        raise ValueError("no seq: it cannot be told from its re-sends")
    if run is not None and not isinstance(run, str):
        raise ValueError(f"run is a {type(run).__name__}, not a string")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool)):
        raise ValueError(f"seq is a {type(seq).__name__}, not an integer")
    return run, seq


def tail(url: str, on_event: Callable[[dict], None], device: str = "+", site: str = "+",
         client_id: str = "", stop: threading.Event | None = None,
         count: int = 0, idle_s: float = 0.0, timeout_s: float = 0.0,
         on_subscribed: Callable[[], None] | None = None,
         on_malformed: Callable[[str, str], None] | None = None) -> Dedup:
    """Follow events under the broker URL's prefix (one ``device``/``site`` or all),
    calling ``on_event`` once per event. Stops on ``stop``, after ``count`` events, after
    ``idle_s`` without one once events have begun, or after ``timeout_s`` (0: no such
    bound). ``client_id`` makes a persistent session: the broker keeps what arrives while
    this tail is away. ``on_subscribed`` is called when the subscription is granted.
    OSError when the broker does not accept the connection within
    :data:`~vitaledge.device.fleet.connect.CONNACK_TIMEOUT_S` (or ``timeout_s``, if less).
    A malformed event (see :meth:`Dedup.first_time`; ``on_event`` may refuse one too, by
    raising ValueError) is skipped, counted in ``Dedup.malformed`` and handed to
    ``on_malformed(topic, what was wrong)``: it must not stop the events after it."""
    stop = stop or threading.Event()
    dedup = Dedup()
    prefix = mqtt.parse_url(url).prefix
    state = {"n": 0, "last": time.monotonic()}
    lock = threading.Lock()

    def on_message(topic: str, body: dict) -> None:
        where = mqtt.parse_topic(prefix, topic)
        if where is None or not body:
            return
        with lock:
            if count and state["n"] >= count:  # stopping: what still arrives is not shown
                return
            try:
                if not dedup.first_time(f"{where[0]}/{where[1]}", body):
                    return
                on_event(body)
            except ValueError as exc:
                dedup.malformed += 1
                if on_malformed is not None:
                    on_malformed(topic, str(exc))
                return
            state["n"] += 1
            state["last"] = time.monotonic()
            if count and state["n"] >= count:
                stop.set()

    def on_invalid(topic: str, why: str) -> None:
        if mqtt.parse_topic(prefix, topic) is None:
            return
        with lock:
            dedup.malformed += 1
        if on_malformed is not None:
            on_malformed(topic, why)

    client, _ = connect.subscriber(url, [mqtt.topic(prefix, site, device, "events", "#")],
                                   on_message, client_id=client_id, on_invalid=on_invalid,
                                   on_subscribed=on_subscribed,
                                   timeout_s=min(timeout_s or math.inf,
                                                 connect.CONNACK_TIMEOUT_S))
    t0 = time.monotonic()
    try:
        while not stop.wait(0.1):
            now = time.monotonic()
            if timeout_s and now - t0 > timeout_s:
                break
            if idle_s and state["n"] and now - state["last"] > idle_s:
                break
    finally:
        connect.stop(client)
    return dedup
