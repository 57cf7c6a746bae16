"""A simulated fleet against a broker: how many devices one broker carries, measured.

``N`` simulated devices each publish beat events at a real-time rate (``bpm`` a minute,
each RR interval jittered by +-5%, random phase), with the daemon's topics and payloads
(:mod:`vitaledge.device.stream.mqtt`, :mod:`vitaledge.device.stream.events`; QoS 1, not
retained, ``seq`` and ``run`` per device, plus ``sent_t``: the wall clock at publish). What
is simulated is the traffic, not the devices: one scheduler thread publishes every
device's beats over ``connections`` shared MQTT connections (devices round-robin over
them), because a thread and a socket per device is more than 1000 devices on a 2-core
machine hold in one Python process. No spool, no retained birth/stats messages.

One subscriber (QoS 1, its own connection, same process) counts what arrives: messages
per second, end-to-end latency (receive time minus ``sent_t``; both clocks are this
machine's), duplicates, and losses (published and never received once the publishers
stop and ``drain_s`` has passed). The broker's CPU is read from
``/proc/<pid>/stat`` (utime + stime) over the publishing window, when its pid is given or
found as the owner of the listening socket. A simulator that falls behind real time
counts ``late_publishes`` (> 100 ms late) and stops at 1.5 x ``seconds``, leaving
``unsent`` the beats that were due.
"""

from __future__ import annotations

import heapq
import math
import os
import random
import secrets
import threading
import time
from pathlib import Path

from vitaledge.device.dsp.spec_fields import finite_number
from vitaledge.device.fleet import connect
from vitaledge.device.io.aami import CLASSES
from vitaledge.device.stream import events, mqtt

LABELS = CLASSES  # the AAMI classes a simulated beat is called
CONNECT_TIMEOUT_S = 10.0


def proc_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) the process ``pid`` has used, from /proc; None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def listener_pid(port: int, host: str = "127.0.0.1") -> int | None:
    """The pid owning the TCP socket listening on ``port`` (Linux /proc), or None."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                inodes.add(f[9])
    if not inodes:
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(pid)
        except OSError:
            continue
    return None


def _percentile(sorted_xs: list[float], q: float) -> float | None:
    if not sorted_xs:
        return None
    i = min(len(sorted_xs) - 1, max(0, round(q / 100 * (len(sorted_xs) - 1))))
    return sorted_xs[i]


def _ours(body: dict) -> bool:
    """Whether ``body`` is a simulated beat: a finite ``sent_t``, an integer ``seq``.
    Anything else published under this run's site is not counted (nor crashes the
    subscriber's thread)."""
    t, seq = body.get("sent_t"), body.get("seq")
    return finite_number(t) and isinstance(seq, int) and not isinstance(seq, bool)


class _Receiver:
    """The subscriber's side: arrivals, latencies, duplicates."""

    def __init__(self, prefix: str, site: str):
        self.prefix, self.site = prefix, site
        self.lock = threading.Lock()
        self.seen: set[tuple[str, int]] = set()
        self.latencies: list[float] = []
        self.received = self.duplicates = 0

    def __call__(self, topic: str, body: dict) -> None:
        t = time.time()
        where = mqtt.parse_topic(self.prefix, topic)
        if where is None or where[0] != self.site or not _ours(body):
            return
        key = (where[1], body.get("seq"))
        with self.lock:
            self.received += 1
            if key in self.seen:
                self.duplicates += 1
                return
            self.seen.add(key)
            self.latencies.append(t - body["sent_t"])


def simulate(url: str, devices: int, seconds: float, bpm: float = 75.0,
             connections: int | None = None, broker_pid: int | None = None, seed: int = 0,
             drain_s: float = 5.0) -> dict:
    """Run the simulated fleet for ``seconds`` and return the measured report (a dict).
    ``connections``: how many MQTT connections the devices share (None: min(devices, 20))."""
    if devices < 1 or not 0 < seconds < math.inf or not 0 < bpm < math.inf:  # NaN too
        raise ValueError("expected devices >= 1, finite seconds > 0 and bpm > 0")
    opts = mqtt.parse_url(url)
    k = min(devices, 20) if connections is None else connections
    if not 1 <= k <= devices:
        raise ValueError(f"connections {k}: expected 1..{devices}")
    site = "sim-" + secrets.token_hex(3)  # this run's devices only
    run = secrets.token_hex(4)
    if broker_pid is None and opts.host in ("127.0.0.1", "localhost", "::1"):
        broker_pid = listener_pid(opts.port)
    rng = random.Random(seed)

    recv = _Receiver(opts.prefix, site)
    sub, _ = connect.subscriber(url, [mqtt.topic(opts.prefix, site, "+", "events", "#")],
                                recv, timeout_s=CONNECT_TIMEOUT_S)  # subscribed, or OSError
    pubs = []
    try:
        acked = [0] * k
        connacks = []
        for i in range(k):
            c = mqtt.new_client(opts, f"vitaledge-sim-{run}-{i}")
            c.max_inflight_messages_set(100)

            def on_publish(client, userdata, mid, reason_code, properties, i=i):
                acked[i] += 1

            c.on_publish = on_publish
            connacks.append(connect.Connack(c))
            c.connect(opts.host, opts.port, opts.keepalive)
            c.loop_start()
            pubs.append(c)
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        for i, connack in enumerate(connacks):
            try:
                connack.wait(max(0.1, deadline - time.monotonic()))
            except OSError as exc:
                raise OSError(f"publisher {i + 1} of {k}: {exc}") from exc

        rr = 60.0 / bpm
        names = [f"dev{d:05d}" for d in range(devices)]
        topics = [mqtt.event_topic(opts.prefix, site, n, "beat") for n in names]
        seq = [0] * devices
        t0 = time.time()
        heap = [(t0 + rng.uniform(0, rr), d) for d in range(devices)]
        heapq.heapify(heap)
        end = t0 + seconds
        published = late = 0
        cpu0, sim0 = (proc_cpu_s(broker_pid) if broker_pid else None), time.process_time()
        while heap and heap[0][0] < end:
            if time.time() > end + 0.5 * seconds:  # too far behind real time: stop
                break
            due, d = heapq.heappop(heap)
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
            elif wait < -0.1:
                late += 1  # the scheduler fell behind real time by > 100 ms
            interval = rr * rng.uniform(0.95, 1.05)
            seq[d] += 1
            p = rng.random()
            label = "N" if p < 0.9 else LABELS[1 + int((p - 0.9) * 40) % 4]
            scores = [0.9 if lab == label else 0.025 for lab in LABELS]
            e = events.beat(due - t0, int((due - t0) * 360), label,
                            events.probabilities(LABELS, scores), interval)
            e.update(seq=seq[d], run=run, schema=mqtt.SCHEMA, site=site, device=names[d],
                     sent_t=time.time())
            pubs[d % k].publish(topics[d], mqtt.payload(e), qos=1)
            published += 1
            heapq.heappush(heap, (due + interval, d))
        window = time.time() - t0
        cpu1, sim1 = (proc_cpu_s(broker_pid) if broker_pid else None), time.process_time()
        with recv.lock:
            in_window = len(recv.seen)
        # drain: every event received by the subscriber and acknowledged to its publisher
        # (the broker may forward an event before its PUBACK reaches the publisher; a
        # publisher disconnected in between would count an acknowledged event as not)
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline:
            with recv.lock:
                if len(recv.seen) >= published and sum(acked) >= published:
                    break
            time.sleep(0.05)
    finally:
        for c in pubs:
            connect.stop(c)
        connect.stop(sub)

    with recv.lock:
        lat = sorted(x * 1000 for x in recv.latencies)
        unique, received, dups = len(recv.seen), recv.received, recv.duplicates
    sample = mqtt.payload(e) if published else b""
    cpu = None if cpu0 is None or cpu1 is None else round(100 * (cpu1 - cpu0) / window, 1)
    return {
        "devices": devices, "connections": k, "seconds": round(window, 2), "bpm": bpm,
        "expected_per_s": round(devices * bpm / 60, 1),
        "published": published, "acked": sum(acked), "received": received,
        "unique": unique, "duplicates": dups, "lost": published - unique,
        "loss_rate": round((published - unique) / published, 6) if published else None,
        "published_per_s": round(published / window, 1),
        "received_per_s": round(in_window / window, 1),
        "latency_ms": {q: None if not lat else round(_percentile(lat, v), 2)
                       for q, v in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))},
        "late_publishes": late, "unsent": sum(1 for due, _ in heap if due < end),
        "payload_bytes": len(sample),
        "broker_pid": broker_pid, "broker_cpu_percent": cpu,
        "simulator_cpu_percent": round(100 * (sim1 - sim0) / window, 1),
        "site": site, "run": run,
    }
