"""What ``vitaledge fleet`` shows, from the broker alone.

:func:`fleet_status` reads the retained ``status`` (birth / Last Will) and ``stats``
messages of every device under a prefix; :class:`Dedup` and :func:`tail` follow the
devices' events at least once from the broker and hand each one on exactly once, in the
order each device sent it (an event is known by its device, ``run`` and ``seq``).
Topics and payloads: :mod:`vitaledge.device.stream.mqtt`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from vitaledge.device.stream import mqtt


def fleet_status(url: str, wait_s: float = 1.0) -> list[dict]:
    """One row per device that left a retained status or stats message: its state, model,
    software version, uptime, events/s, drops, spool backlog and when it was last seen."""
    seen: dict[tuple[str, str], dict] = {}
    lock = threading.Lock()
    prefix = mqtt.parse_url(url).prefix

    def on_message(topic: str, body: dict) -> None:
        where = mqtt.parse_topic(prefix, topic)
        if where is None or not body:
            return
        site, device, rest = where
        with lock:
            seen.setdefault((site, device), {})[rest[0]] = body

    client, _ = mqtt.subscriber(url, [mqtt.topic(prefix, "+", "+", "status"),
                                      mqtt.topic(prefix, "+", "+", "stats")], on_message)
    client.loop_start()
    try:
        time.sleep(wait_s)  # retained messages come right after subscribing
    finally:
        client.disconnect()
        client.loop_stop()
    now = time.time()
    with lock:
        return [_row(site, device, m.get("status", {}), m.get("stats", {}), now)
                for (site, device), m in sorted(seen.items())]


def _row(site: str, device: str, status: dict, stats: dict, now: float) -> dict:
    online = status.get("state") == "online"
    model = status.get("model") or stats.get("model") or {}
    started = status.get("started_t")
    last = stats.get("t")
    return {"site": site, "device": device, "state": status.get("state", "unknown"),
            "online": online, "reason": status.get("reason"),
            "model_sha256": model.get("sha256"), "model_task": model.get("task"),
            "software_version": status.get("software_version")
            or stats.get("software_version"),
            "uptime_s": round(now - started, 1) if online and started else None,
            "events_per_s": stats.get("events_per_s"),
            "spool_dropped": stats.get("spool_dropped"),
            "dropped_samples": stats.get("dropped_samples"),
            "spool_backlog": stats.get("spool_backlog"), "last_seq": stats.get("last_seq"),
            "last_seen_s": round(now - last, 1) if last else None}


class Dedup:
    """Each event once: an event whose (run, seq) its device already sent is a duplicate
    (the at-least-once delivery's re-sends). Remembers the last ``keep`` per device."""

    def __init__(self, keep: int = 200_000):
        self.keep = keep
        self._seen: dict[str, tuple[set, deque]] = {}
        self.duplicates = 0

    def first_time(self, device: str, event: dict) -> bool:
        key = (event.get("run"), event.get("seq"))
        seen, order = self._seen.setdefault(device, (set(), deque()))
        if key in seen:
            self.duplicates += 1
            return False
        seen.add(key)
        order.append(key)
        if len(order) > self.keep:
            seen.discard(order.popleft())
        return True


def tail(url: str, on_event: Callable[[dict], None], device: str = "+", site: str = "+",
         client_id: str = "", stop: threading.Event | None = None,
         count: int = 0, idle_s: float = 0.0, timeout_s: float = 0.0,
         on_subscribed: Callable[[], None] | None = None) -> Dedup:
    """Follow events under the broker URL's prefix (one ``device``/``site`` or all),
    calling ``on_event`` once per event. Stops on ``stop``, after ``count`` events, after
    ``idle_s`` without one once events have begun, or after ``timeout_s`` (0: no such
    bound). ``client_id`` makes a persistent session: the broker keeps what arrives while
    this tail is away. ``on_subscribed`` is called when the subscription is granted."""
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
            if not dedup.first_time(f"{where[0]}/{where[1]}", body):
                return
            state["n"] += 1
            state["last"] = time.monotonic()
            on_event(body)
            if count and state["n"] >= count:
                stop.set()

    client, _ = mqtt.subscriber(url, [mqtt.topic(prefix, site, device, "events", "#")],
                                on_message, client_id=client_id,
                                on_subscribed=on_subscribed)
    client.loop_start()
    t0 = time.monotonic()
    try:
        while not stop.wait(0.1):
            now = time.monotonic()
            if timeout_s and now - t0 > timeout_s:
                break
            if idle_s and state["n"] and now - state["last"] > idle_s:
                break
    finally:
        client.disconnect()
        client.loop_stop()
    return dedup
