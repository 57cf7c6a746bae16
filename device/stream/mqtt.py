"""MQTT for the fleet: the topic scheme, the payloads, the connection options, and the one
module that imports paho-mqtt (2.x; the broker is Eclipse Mosquitto).

Topics (``PREFIX`` from the sink's URL, ``v1`` the topic scheme's version)::

    PREFIX/v1/<site>/<device>/events/<kind>   every event, kind = its type: beat, emotion,
                                              status, unreadable ...   QoS 1, not retained
    PREFIX/v1/<site>/<device>/status          birth {"state": "online", ...} on connect and
                                              the Last Will {"state": "offline"}; retained
    PREFIX/v1/<site>/<device>/stats           periodic counters (events/s, spool backlog,
                                              drops, uptime); retained
    PREFIX/v1/<site>/<device>/deploy          over-the-air model deployments to one device
    PREFIX/v1/<site>/all/deploy               ... and to every device of the site (QoS 1)
    PREFIX/v1/<site>/<device>/deploy/status   what the device did with each (QoS 1)

Every payload is one JSON object carrying ``schema`` (:data:`SCHEMA`), ``site`` and
``device``; an event payload is the daemon's event (with its per-device ``seq`` and its
``run``), so a consumer de-duplicates on (device, run, seq).
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import socket
import time
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger(__name__)

SCHEMA = 1
TOPIC_VERSION = "v1"
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


def default_ids() -> tuple[str, str]:
    """(site, device) from the hostname: the device is its first label, the site the
    rest of a fully qualified name (``pi7.ward3.example`` → ``ward3``), else ``default``."""
    name = socket.getfqdn() or socket.gethostname() or "device"
    parts = name.split(".")
    device = _topic_safe(parts[0] or "device")
    site = _topic_safe(parts[1]) if len(parts) > 2 else "default"
    return site, device


def _topic_safe(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in s) or "x"


def topic(prefix: str, site: str, device: str, *rest: str) -> str:
    """``PREFIX/v1/<site>/<device>/<rest...>``."""
    return "/".join([prefix, TOPIC_VERSION, site, device, *rest])


def event_topic(prefix: str, site: str, device: str, kind: str) -> str:
    return topic(prefix, site, device, "events", kind)


#: The device id of a site's deployment topic that every device of the site follows (so no
#: device may be called that).
ALL_DEVICES = "all"


def deploy_topic(prefix: str, site: str, device: str) -> str:
    """Where deployments for ``device`` (or :data:`ALL_DEVICES`) of ``site`` go."""
    return topic(prefix, site, device, "deploy")


def deploy_status_topic(prefix: str, site: str, device: str) -> str:
    """Where ``device`` says what it did with each deployment."""
    return topic(prefix, site, device, "deploy", "status")


def parse_topic(prefix: str, name: str) -> tuple[str, str, list[str]] | None:
    """(site, device, rest) of a topic under ``prefix``, or None for another scheme."""
    parts = name.split("/")
    head = prefix.split("/")
    if parts[:len(head)] != head or len(parts) < len(head) + 4:
        return None
    if parts[len(head)] != TOPIC_VERSION:
        return None
    return parts[len(head) + 1], parts[len(head) + 2], parts[len(head) + 3:]


#: The longest a clean stop waits for the spool to empty (an hour; nan or inf crashed the
#: stop and lost the run's summary).
MAX_DRAIN_S = 3600.0


@dataclass(frozen=True)
class MqttOptions:
    """The MQTT sink's settings: the TOML table ``[mqtt]`` and/or the sink URL's query
    (``mqtt://HOST:PORT/PREFIX?device=pi7&rate=200``; the URL wins). The password is read
    from ``password_file`` or ``$VITALEDGE_MQTT_PASSWORD``, never a config value."""

    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = "vitaledge"
    site: str = ""  # "" = from the hostname (default_ids)
    device: str = ""
    client_id: str = ""  # "" = vitaledge-<site>-<device>
    spool: str = ""  # "" = $STATE_DIRECTORY (or .)/mqtt-spool-<host>-<port>.db
    spool_max_bytes: int = 64_000_000
    rate: float = 200.0  # messages per second at most (drains a backlog at this rate)
    max_inflight: int = 100  # published, not yet acknowledged
    stats_interval_s: float = 10.0
    keepalive: int = 30
    drain_on_stop_s: float = 5.0  # on a clean stop, time given to empty the spool
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""  # client certificate (with key_file)
    key_file: str = ""
    username: str = ""
    password_file: str = ""

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("mqtt sink needs a broker: mqtt://HOST:PORT/PREFIX")
        if not 0 < self.port < 65536:
            raise ValueError(f"mqtt port {self.port!r}: expected 1-65535")
        for key in ("rate", "stats_interval_s", "spool_max_bytes", "max_inflight",
                    "keepalive"):
            if not getattr(self, key) > 0:
                raise ValueError(f"mqtt {key} {getattr(self, key)!r}: expected a number > 0")
        if self.keepalive > 65535:  # the CONNECT packet holds it in 16 bits
            raise ValueError(f"mqtt keepalive {self.keepalive!r}: expected 1-65535 seconds")
        for key in ("rate", "stats_interval_s", "drain_on_stop_s"):  # inf killed the sink
            if not math.isfinite(getattr(self, key)):
                raise ValueError(f"mqtt {key} {getattr(self, key)!r}: expected a finite number")
        if not 0 <= self.drain_on_stop_s <= MAX_DRAIN_S:
            raise ValueError(f"mqtt drain_on_stop_s {self.drain_on_stop_s!r}: expected 0 to "
                             f"{MAX_DRAIN_S:g} seconds")
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("mqtt cert_file and key_file go together (client certificate)")
        for key in ("ca_file", "cert_file", "key_file", "password_file"):
            path = getattr(self, key)
            if path and not Path(path).is_file():  # else retried forever, naming no file
                raise ValueError(f"mqtt {key} {path}: no such file")
        if "+" in self.prefix or "#" in self.prefix or not self.prefix.strip("/"):
            raise ValueError(f"mqtt prefix {self.prefix!r}: expected a topic without "
                             "wildcards, e.g. vitaledge")

    @property
    def ids(self) -> tuple[str, str]:
        site, device = default_ids()
        return _topic_safe(self.site) if self.site else site, \
            _topic_safe(self.device) if self.device else device

    @property
    def spool_path(self) -> Path:
        if self.spool:
            return Path(self.spool)
        base = Path(os.environ.get("STATE_DIRECTORY", ".").split(":")[0])
        return base / f"mqtt-spool-{_topic_safe(self.host)}-{self.port}.db"

    def password(self) -> str:
        if self.password_file:
            try:
                return Path(self.password_file).read_text().strip()
            except OSError as exc:
                raise ValueError(f"mqtt password_file {self.password_file}: {exc}") from exc
        return os.environ.get("VITALEDGE_MQTT_PASSWORD", "")


_KEYS = {f.name: f.type for f in fields(MqttOptions)}
#: What a URL's query may say for a yes/no option.
BOOLS = {"1": True, "true": True, "yes": True, "on": True,
         "0": False, "false": False, "no": False, "off": False}


def check_table(table: dict) -> None:
    """Refuse unknown keys or wrong types in the ``[mqtt]`` config table."""
    if "host" in table:  # the sink URL names the broker: a host here was ignored
        raise ValueError(f"mqtt host = {table['host']!r}: the broker is the sink URL's "
                         "(mqtt://HOST:PORT/PREFIX), not a [mqtt] key")
    unknown = set(table) - set(_KEYS)
    if unknown:
        raise ValueError(f"mqtt: unknown keys {sorted(unknown)}; known: "
                         f"{', '.join(k for k in _KEYS if k != 'host')}")
    for key, value in table.items():
        want = {"int": int, "float": (int, float), "bool": bool, "str": str}[_KEYS[key]]
        if isinstance(value, bool) and want is not bool or not isinstance(value, want):
            raise ValueError(f"mqtt {key} = {value!r}: expected {_KEYS[key]}")


def parse_url(url: str, table: dict | None = None) -> MqttOptions:
    """``mqtt://HOST[:PORT]/PREFIX[?key=value&...]`` (``mqtts://`` turns TLS on, port
    8883) over the ``[mqtt]`` table."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"mqtt sink {url!r}: expected mqtt://HOST:PORT/PREFIX")
    values: dict = dict(table or {})
    check_table(values)
    if parts.username is not None or parts.password is not None:  # ignored, and in ps
        raise ValueError(f"mqtt sink {parts.scheme}://...@{parts.hostname}: credentials do "
                         "not go in the URL (it shows in ps and logs); set username and "
                         "password_file in the [mqtt] table (or $VITALEDGE_MQTT_PASSWORD)")
    try:  # the URL's port, else the [mqtt] table's, else the scheme's
        port = parts.port if parts.port is not None else values.get(
            "port", DEFAULT_PORTS[parts.scheme])
    except ValueError as exc:
        raise ValueError(f"mqtt sink {url!r}: {exc}") from exc
    values.update(host=parts.hostname, port=port)
    if parts.path.strip("/"):
        values["prefix"] = parts.path.strip("/")
    if "#" in url:  # a URL fragment to urlsplit: the prefix was cut there, silently
        raise ValueError(f"mqtt sink {url!r}: '#' is MQTT's multi-level wildcard; a prefix "
                         "is a topic without wildcards, e.g. vitaledge")
    if parts.scheme == "mqtts":
        values["tls"] = True
    for key, raw in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _KEYS or key in ("host", "port", "prefix"):
            where = ("the URL's host, port and path say it" if key in ("host", "port", "prefix")
                     else "known: " + ", ".join(k for k in _KEYS
                                                if k not in ("host", "port", "prefix")))
            raise ValueError(f"mqtt sink {url!r}: unknown option {key!r} ({where})")
        kind = _KEYS[key]
        try:
            if kind == "bool" and raw.lower() not in BOOLS:  # tls=maybe meant off
                raise ValueError(raw)
            values[key] = (BOOLS.get(raw.lower()) if kind == "bool"
                           else int(raw) if kind == "int" else float(raw) if kind == "float"
                           else raw)
        except ValueError as exc:
            raise ValueError(f"mqtt sink option {key}={raw!r}: expected {kind}") from exc
    return MqttOptions(**values)


def payload(obj: dict) -> bytes:
    """A message as it goes to the broker (events, birth and stats messages, OTA
    deployments and outcomes): compact JSON."""
    return json.dumps(obj, separators=(",", ":")).encode()


def new_client(opts: MqttOptions, client_id: str, clean_session: bool = True,
               will: tuple[str, bytes] | None = None):
    """A paho client (callback API 2, MQTT 3.1.1) with TLS, credentials and the Last Will
    set from ``opts``; not connected yet."""
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                    clean_session=clean_session, protocol=mqtt.MQTTv311)
    if opts.tls:
        c.tls_set(ca_certs=opts.ca_file or None, certfile=opts.cert_file or None,
                  keyfile=opts.key_file or None)
    if opts.username:
        c.username_pw_set(opts.username, opts.password() or None)
    if will is not None:
        c.will_set(will[0], will[1], qos=1, retain=True)
    c.reconnect_delay_set(min_delay=60, max_delay=120)  # reconnects are ours, not paho's
    return c


#: What a payload that does not parse reads as (JSON null is a value: a cleared message).
NOT_JSON = object()


def subscriber(url: str, topics: list[str], on_message, client_id: str = "",
               table: dict | None = None, on_subscribed=None, on_invalid=None):
    """A connected client subscribed (QoS 1) to ``topics``, calling
    ``on_message(topic, dict)`` (an empty payload, a cleared retained message, as ``{}``)
    and ``on_invalid(topic, why)`` for a payload that is no JSON object (not JSON, or
    JSON of another kind); it subscribes again after every reconnect, and calls
    ``on_subscribed()`` when the broker has granted a subscription (the first refusal is
    the caller's to report, :class:`vitaledge.device.fleet.connect.Suback` makes it an
    OSError; a later one, after a reconnect, is logged as an error). Returns (client,
    options); ``client.loop_start()`` is the caller's."""
    opts = parse_url(url, table)
    cid = client_id or f"vitaledge-fleet-{socket.gethostname()}-{secrets.token_hex(4)}"
    c = new_client(opts, cid, clean_session=not client_id)
    c.reconnect_delay_set(min_delay=1, max_delay=10)

    def on_connect(client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            client.subscribe([(t, 1) for t in topics])

    def on_msg(client, userdata, msg):
        try:
            body = json.loads(msg.payload) if msg.payload else {}
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
            body = NOT_JSON
        if body is None:  # JSON null: cleared, as an empty payload is
            body = {}
        if isinstance(body, dict):
            on_message(msg.topic, body)
        elif on_invalid is not None:
            on_invalid(msg.topic, "not JSON" if body is NOT_JSON
                       else f"JSON {type(body).__name__}, not an object")

    answers = [0]

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        answers[0] += 1
        problem = refused(topics, reason_codes)
        if problem is not None:
            if answers[0] > 1:  # after a reconnect: say so, do not listen to nothing (the
                # first answer is the caller's to report: connect.Suback)
                log.error("broker %s:%s: %s", opts.host, opts.port, problem)
        elif on_subscribed is not None:
            on_subscribed()

    c.on_connect = on_connect
    c.on_message = on_msg
    c.on_subscribe = on_subscribe
    c.connect(opts.host, opts.port, opts.keepalive)
    return c, opts


def refused(topics: list[str], reason_codes) -> str | None:
    """What a SUBACK refused (None: every topic granted): the topics whose reason code is
    a failure (0x80 "Unspecified error" in MQTT 3.1.1, e.g. an ACL that denies it)."""
    bad = [f"{t} ({rc})" for t, rc in zip(topics, reason_codes, strict=False)
           if getattr(rc, "is_failure", False)]
    return f"the broker refused the subscription to {', '.join(bad)}" if bad else None


def now_iso(t: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))
