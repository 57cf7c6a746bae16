"""The MQTT sink: store and forward to a broker, at least once.

:meth:`MqttSink.write` only appends the events to the on-disk :class:`~.spool.Spool` (one
SQLite transaction) and wakes the sink's own thread; the pipeline never waits on the
network. That thread keeps one connection at a time: it publishes spooled events in order
with QoS 1 (at most ``max_inflight`` unacknowledged, at most ``rate`` messages per second,
so a backlog drains at a bounded rate after a reconnect) and deletes a row from the spool
only when paho's ``on_publish`` reports the broker's PUBACK for it (:mod:`.mqtt_acks`).
A lost connection drops the client; the next one (backoff 0.5 s doubling to 30 s)
publishes again from the oldest row still spooled, so an outage, a network cut or
``kill -9`` loses nothing that was spooled, and a consumer may see an event twice (same
``run`` and ``seq``: de-duplicate).

On connect it publishes the retained birth message on ``.../status`` (``state: online``,
model, software version, start time) after setting the retained Last Will (``state:
offline``); every ``stats_interval_s`` a retained ``.../stats`` message (events/s, spool
backlog and drops, uptime). A clean stop gives the spool ``drain_on_stop_s`` to empty,
then publishes ``state: offline`` itself. Topics and payloads: :mod:`.mqtt`.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable

from vitaledge.device.stream import mqtt
from vitaledge.device.stream.mqtt_acks import AckLedger
from vitaledge.device.stream.spool import Spool

log = logging.getLogger("vitaledge.mqtt")
BACKOFF_S = (0.5, 30.0)
CONNECT_TIMEOUT_S = 5.0
#: The broker unreachable this long (s) makes ``/health`` degraded (events are spooled).
DOWN_DEGRADED_S = 10.0
#: A full spool is warned about at most this often (s); the totals are in the summary.
WARN_EVERY_S = 60.0


def software_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vitaledge")
    except PackageNotFoundError:
        return "unknown"


class MqttSink:
    def __init__(self, opts: mqtt.MqttOptions, context: Callable[[], dict] | None = None):
        self.opts = opts
        self.site, self.device = opts.ids
        self.client_id = opts.client_id or f"vitaledge-{self.site}-{self.device}"
        self.path = f"mqtt{'s' if opts.tls else ''}://{opts.host}:{opts.port}/{opts.prefix}"
        self._context = context or dict
        self.spool = Spool(opts.spool_path, opts.spool_max_bytes)
        self.started = time.time()
        self._t0 = time.monotonic()
        self.written = self.acked = self.published = self.connects = 0
        self.connected = False
        self._ledger = AckLedger()
        self._wake = threading.Event()
        self._announce = threading.Event()
        self._stopping = threading.Event()
        self._deadline = 0.0
        self._gen = 0
        self.down_since: float | None = self._t0  # no broker yet (monotonic s), else None
        self._down_said = False        # this outage has had its warning
        self._full_said = -math.inf    # when the last spool-full warning went out
        self._final: dict | None = None  # stats() once closed
        self._thread = threading.Thread(target=self._run, name="mqtt-sink", daemon=True)
        self._thread.start()

    # -- the daemon's side ----------------------------------------------------------------
    def topic(self, *rest: str) -> str:
        return mqtt.topic(self.opts.prefix, self.site, self.device, *rest)

    def write(self, events: list[dict]) -> None:
        """Spool ``events`` (durable when this returns); the sink's thread publishes them."""
        if not events:
            return
        ids = {"schema": mqtt.SCHEMA, "site": self.site, "device": self.device}
        rows = [(e.get("seq"), self.topic("events", str(e.get("type", "status"))),
                 mqtt.payload({**e, **ids})) for e in events]
        dropped = self.spool.put(rows)
        self.written += len(events)
        now = time.monotonic()
        if dropped and now - self._full_said >= WARN_EVERY_S:  # not one line per batch
            self._full_said = now
            log.warning(json.dumps({"event": "mqtt_spool_full", "dropped": dropped,
                                    "dropped_total": self.spool.dropped,
                                    "max_bytes": self.opts.spool_max_bytes}))
        self._wake.set()

    @property
    def spool_error(self) -> str | None:
        """Why delivered events could not leave the spool (a full disk), None when they did."""
        return self._ledger.error

    def trouble(self) -> str | None:
        """Why this sink is not delivering, for ``/health``: the broker unreachable for
        longer than :data:`DOWN_DEGRADED_S` (events are spooled meanwhile)."""
        if self.spool_error is not None:  # delivered, but the spool cannot let them go
            return f"spool {self.spool.path}: {self.spool_error}"
        since = self.down_since
        if since is None or time.monotonic() - since < DOWN_DEGRADED_S:
            return None
        return (f"broker unreachable for {time.monotonic() - since:.0f} s, "
                f"{self.spool.count} events spooled")

    def _down(self, what: str, error: str) -> None:
        """The broker is gone or never came: a warning once per outage (the retries that
        follow are debug lines), and ``down_since`` for :meth:`trouble`."""
        if self.down_since is None:
            self.down_since = time.monotonic()
        if not self._down_said:
            self._down_said = True
            log.warning(json.dumps({"event": what, "broker": self.path, "error": error,
                                    "spooled": self.spool.count}))
        else:
            log.debug(json.dumps({"event": what, "error": error}))

    def last_seq(self) -> int:
        return self.spool.last_seq()

    def announce(self) -> None:
        """Publish the retained birth and stats messages again (from the sink's thread):
        what they say about the daemon changed, e.g. its model after a deployment."""
        self._announce.set()
        self._wake.set()

    def close(self) -> None:
        """Give the spool ``drain_on_stop_s`` to empty, say offline, disconnect. What is
        left stays spooled for the next run."""
        if self._stopping.is_set():
            return
        self._deadline = time.monotonic() + self.opts.drain_on_stop_s
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=self.opts.drain_on_stop_s + CONNECT_TIMEOUT_S + 3.0)
        left = self.spool.count
        if left:
            log.warning(json.dumps({"event": "mqtt_spool_kept", "messages": left,
                                    "spool": str(self.spool.path)}))
        self._final = self.stats()  # what the run's summary reads after the close
        self.spool.close()

    def delivery(self) -> dict:
        """Events dropped from the full spool, left in it for the next run, and acked."""
        st = self.stats()
        return {"spool_dropped": st["spool_dropped"], "spool_backlog": st["spool_backlog"],
                "acked": st["acked"]}

    def stats(self) -> dict:
        if self._final is not None:
            return self._final
        return {"connected": self.connected, "written": self.written, "acked": self.acked,
                "spool_backlog": self.spool.count, "spool_bytes": self.spool.bytes,
                "spool_dropped": self.spool.dropped, "connects": self.connects}

    # -- the sink's thread ----------------------------------------------------------------
    def _run(self) -> None:
        client, gen = None, 0
        backoff, next_try = BACKOFF_S[0], 0.0
        cursor, tokens, t_tok = 0, 0.0, time.monotonic()
        next_stats, last_written, t_stats = 0.0, 0, time.monotonic()
        while True:
            now = time.monotonic()
            if self._stopping.is_set() and (now > self._deadline or (
                    self.spool.count == 0 and not self._ledger.inflight and client is not None)):
                break
            if client is None or not self.connected:
                if client is not None:
                    self._drop(client)
                    client = None
                    next_try = now + backoff
                if now < next_try:
                    self._wake.wait(min(next_try - now, 0.2))
                    self._wake.clear()
                    continue
                gen += 1
                client = self._connect(gen)
                if client is None:
                    next_try = time.monotonic() + backoff
                    backoff = min(2 * backoff, BACKOFF_S[1])
                    continue
                backoff, cursor = BACKOFF_S[0], 0
                next_stats = 0.0
            if self._announce.is_set():
                self._announce.clear()
                self._birth(client)
                next_stats = 0.0
            self._settle()
            rate = self.opts.rate
            tokens = min(max(1.0, rate / 10), tokens + (now - t_tok) * rate)
            t_tok = now
            room = min(self.opts.max_inflight - self._ledger.inflight, int(tokens))
            if room > 0:
                for row_id, topic, body in self.spool.after(cursor, room):
                    info = client.publish(topic, body, qos=1)
                    if info.rc != 0:  # the connection went; the next one sends it again
                        break
                    self._ledger.published(info.mid, row_id)
                    cursor, tokens = row_id, tokens - 1
                    self.published += 1
            if now >= next_stats:
                dt = max(now - t_stats, 1e-3) if next_stats else None
                rate_now = (self.written - last_written) / dt if dt else 0.0
                self._publish_stats(client, round(rate_now, 2))
                next_stats = now + self.opts.stats_interval_s
                last_written, t_stats = self.written, now
            wait = 0.05 if room <= 0 or not tokens >= 1 else 0.2
            self._wake.wait(wait)
            self._wake.clear()
        if client is not None:
            self._settle()
            if self.connected:
                self._publish_stats(client, round((self.written - last_written) / max(
                    time.monotonic() - t_stats, 1e-3), 2))
                info = self._say(client, "status", {"state": "offline", "reason": "stopped",
                                                    "time": mqtt.now_iso()})
                if info is not None:
                    try:
                        info.wait_for_publish(2.0)
                    except (RuntimeError, ValueError):
                        pass
            self._drop(client, clean=True)

    def _connect(self, gen: int):
        """A new connected client with the Last Will set and the birth published; None when
        the broker cannot be reached (or refuses)."""
        o = self.opts
        will = mqtt.payload({"schema": mqtt.SCHEMA, "site": self.site, "device": self.device,
                             "state": "offline", "reason": "connection lost",
                             "started": mqtt.now_iso(self.started)})
        try:
            c = mqtt.new_client(o, self.client_id, will=(self.topic("status"), will))
        except (OSError, ValueError) as exc:
            log.error(json.dumps({"event": "mqtt_error", "error": str(exc)}))
            return None
        connack = threading.Event()

        def on_connect(client, userdata, flags, reason_code, properties):
            if gen == self._gen and not reason_code.is_failure:
                self.connected = True
            elif gen == self._gen:  # refused (credentials, ACL): said once per outage, as
                # an unreachable broker is, not at ERROR on every retry
                self._down("mqtt_refused", str(reason_code))
            connack.set()

        def on_disconnect(client, userdata, flags, reason_code, properties):
            if gen == self._gen:
                if self.connected and not self._stopping.is_set():
                    self._down("mqtt_disconnected", str(reason_code))
                self.connected = False
            self._wake.set()

        def on_publish(client, userdata, mid, reason_code, properties):
            if gen != self._gen:
                return
            self._ledger.puback(mid)
            self._wake.set()

        c.on_connect, c.on_disconnect, c.on_publish = on_connect, on_disconnect, on_publish
        c.connect_timeout = CONNECT_TIMEOUT_S
        self.connected, self._gen = False, gen
        try:
            c.connect(o.host, o.port, o.keepalive)
        except (OSError, ValueError) as exc:
            self._down("mqtt_unreachable", str(exc))
            return None
        c.loop_start()
        if not connack.wait(CONNECT_TIMEOUT_S) or not self.connected:
            self._drop(c)
            self._down("mqtt_unreachable", "no CONNACK" if not connack.is_set()
                       else "connection refused")
            return None
        self.down_since, self._down_said = None, False
        self.connects += 1
        log.info(json.dumps({"event": "mqtt_connected", "broker": self.path,
                             "backlog": self.spool.count}))
        self._announce.clear()
        self._birth(c)
        return c

    def _birth(self, client) -> None:
        """The retained ``state: online`` message with what the daemon says about itself."""
        ctx = self._context()
        self._say(client, "status", {"state": "online", "software_version": software_version(),
                                     "started": mqtt.now_iso(self.started),
                                     "started_t": round(self.started, 3), "client_id":
                                     self.client_id, "time": mqtt.now_iso(), **ctx})

    def _say(self, client, what: str, body: dict):
        """A retained message on ``.../<what>`` (not spooled: it only says the present)."""
        msg = {"schema": mqtt.SCHEMA, "site": self.site, "device": self.device, **body}
        try:
            return client.publish(self.topic(what), mqtt.payload(msg), qos=1, retain=True)
        except (OSError, ValueError) as exc:
            log.debug(json.dumps({"event": "mqtt_error", "error": str(exc)}))
            return None

    def _publish_stats(self, client, events_per_s: float) -> None:
        ctx = self._context()
        self._say(client, "stats", {
            "time": mqtt.now_iso(), "t": round(time.time(), 3),
            "uptime_s": round(time.monotonic() - self._t0, 1), "events_per_s": events_per_s,
            "events_written": self.written, "events_acked": self.acked,
            "spool_backlog": self.spool.count, "spool_bytes": self.spool.bytes,
            "spool_dropped": self.spool.dropped, "last_seq": self.spool.last_seq(),
            "connects": self.connects, "software_version": software_version(), **ctx})

    def _settle(self) -> None:
        """Acknowledged messages leave the spool (kept for the next time when it fails)."""
        self.acked += self._ledger.settle(self.spool.ack)

    def _drop(self, client, clean: bool = False) -> None:
        """Stop a client; its unacknowledged messages stay spooled and go out again."""
        if clean:
            deadline = time.monotonic() + 2.0
            while self._ledger.inflight and time.monotonic() < deadline and self.connected:
                time.sleep(0.02)
                self._settle()
            try:
                client.disconnect()
            except (OSError, ValueError):
                pass
        client.loop_stop()
        self._settle()
        if not clean:
            try:
                client.disconnect()
            except (OSError, ValueError):
                pass
        self._ledger.forget_inflight()
        self.connected = False


def open_mqtt(url: str, table: dict | None = None,
              context: Callable[[], dict] | None = None) -> MqttSink:
    """``mqtt://HOST:PORT/PREFIX[?options]`` over the ``[mqtt]`` config table."""
    return MqttSink(mqtt.parse_url(url, table), context)
