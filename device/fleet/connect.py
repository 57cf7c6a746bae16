"""How every ``vitaledge fleet`` command connects: a client counts as connected once the
broker has answered CONNECT with a CONNACK that accepts it, not when the TCP connection is
up. A listener that never speaks MQTT, or a broker that refuses the client (bad
credentials, ``allow_anonymous false``), is an :class:`OSError` naming what happened
within :data:`CONNACK_TIMEOUT_S`, never a command that waits forever or reports an empty
fleet. A subscriber counts as subscribed once the broker's SUBACK grants every topic: a
broker whose ACL denies one (SUBACK 0x80) is an OSError naming the topic, not a command
that listens to nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable

from vitaledge.device.stream import mqtt

#: Seconds to wait for the broker's CONNACK.
CONNACK_TIMEOUT_S = 10.0


class Outcome:
    """The first answer of the broker to one request, recorded from paho's thread; a
    subclass hooks the callback that carries it and names it in ``ANSWER``."""

    ANSWER = ""

    def __init__(self):
        self._done = threading.Event()
        self._problem: str | None = None

    def _settle(self, problem: str | None) -> None:
        """The first outcome counts (a refusal is followed by the broker closing)."""
        if not self._done.is_set():
            self._problem = problem
            self._done.set()

    def wait(self, timeout_s: float | None = None) -> None:
        """Return once the broker said yes; OSError when it refused, closed the connection
        or gave no answer within ``timeout_s`` (None: :data:`CONNACK_TIMEOUT_S`)."""
        timeout_s = CONNACK_TIMEOUT_S if timeout_s is None else timeout_s
        if not self._done.wait(timeout_s):
            raise OSError(f"no {self.ANSWER} within {timeout_s:g} s (is it an MQTT broker?)")
        if self._problem is not None:
            raise OSError(self._problem)


class Connack(Outcome):
    """The outcome of a client's connection attempt: set up before the client's network
    loop starts (after ``connect()`` is fine: the CONNACK is read by the loop)."""

    ANSWER = "CONNACK"

    def __init__(self, client):
        super().__init__()
        before_connect, before_disconnect = client.on_connect, client.on_disconnect

        def on_connect(c, userdata, flags, reason_code, properties):
            if before_connect is not None:
                before_connect(c, userdata, flags, reason_code, properties)
            if getattr(reason_code, "is_failure", False):
                self._settle(f"connection refused: {reason_code}")
            else:
                self._settle(None)

        def on_disconnect(c, userdata, flags, reason_code, properties):
            if before_disconnect is not None:
                before_disconnect(c, userdata, flags, reason_code, properties)
            self._settle("the connection closed before a CONNACK (is it an MQTT broker?)")

        client.on_connect, client.on_disconnect = on_connect, on_disconnect



class Suback(Outcome):
    """The outcome of a subscriber's first subscription (the one its on_connect sends):
    refused when the broker's SUBACK refuses any of ``topics`` (an ACL that denies it)."""

    ANSWER = "SUBACK"

    def __init__(self, client, topics: list[str]):
        super().__init__()
        before = client.on_subscribe

        def on_subscribe(c, userdata, mid, reason_codes, properties):
            if before is not None:
                before(c, userdata, mid, reason_codes, properties)
            self._settle(mqtt.refused(topics, reason_codes))

        client.on_subscribe = on_subscribe


def start(client, connack: Connack, timeout_s: float | None = None) -> None:
    """Start ``client``'s network loop and wait for ``connack``; on failure the client is
    stopped and the OSError raised."""
    client.loop_start()
    try:
        connack.wait(timeout_s)
    except OSError:
        stop(client)
        raise


def stop(client) -> None:
    """Disconnect and stop the network loop (no reconnects left behind)."""
    client.disconnect()
    client.loop_stop()


def subscriber(url: str, topics: list[str], on_message: Callable[[str, dict], None],
               client_id: str = "", on_subscribed: Callable[[], None] | None = None,
               timeout_s: float | None = None,
               on_invalid: Callable[[str, str], None] | None = None):
    """:func:`vitaledge.device.stream.mqtt.subscriber` with its network loop started, once
    the broker accepted the connection and granted the subscription (OSError otherwise,
    see :meth:`Outcome.wait`; each waits up to ``timeout_s``). Returns (client, options);
    :func:`stop` it when done."""
    client, opts = mqtt.subscriber(url, topics, on_message, client_id=client_id,
                                   on_subscribed=on_subscribed, on_invalid=on_invalid)
    suback = Suback(client, topics)
    start(client, Connack(client), timeout_s)
    try:
        suback.wait(timeout_s)
    except OSError:
        stop(client)
        raise
    return client, opts
