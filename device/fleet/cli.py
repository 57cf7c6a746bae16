"""``vitaledge fleet``: the devices and their events, seen from the MQTT broker."""

from __future__ import annotations

import json
import sys

import click

from vitaledge.device.cli_shared import POSITIVE, SEED, FiniteRange

BROKER_HELP = "mqtt://HOST:PORT/PREFIX (mqtts:// for TLS) of the broker the devices use."


@click.group("fleet")
def fleet_group() -> None:
    """Devices publishing to an MQTT broker: presence, counters, events."""


def _age(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else \
        f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _number(x: float | None, spec: str) -> str:
    """A number of a device's message, or "?" when the device left it out."""
    return "?" if x is None else format(x, spec)


#: The fields of the retained messages behind each column of ``fleet status`` that may be
#: named in a row's ``invalid_fields`` (then the column shows "?", not "-": not absent,
#: but unusable).
STATUS_SOURCES = {
    "model_sha256": ("status.model", "stats.model", "model.sha256"),
    "software_version": ("status.software_version", "stats.software_version"),
    "uptime_s": ("status.started_t",), "events_per_s": ("stats.events_per_s",),
    "spool_dropped": ("stats.spool_dropped",), "spool_backlog": ("stats.spool_backlog",),
    "last_seen_s": ("stats.t",)}


def _status_line(r: dict) -> tuple[str, ...]:
    """A row of ``fleet status`` as the table's cells: "-" for a value the device did not
    send, "?" for one it sent but is unusable (see ``invalid_fields``)."""

    def cell(key: str, show) -> str:
        if r[key] is not None and r[key] != "":
            return show(r[key])
        whole = {f.split(" ", 1)[0] for f in r["invalid_fields"]}  # "status (not JSON)"
        return "?" if any(src in whole or src.split(".")[0] in whole
                          for src in STATUS_SOURCES[key]) else "-"

    return (f"{r['site']}/{r['device']}", r["state"], cell("model_sha256", lambda v: v[:12]),
            cell("software_version", str), cell("uptime_s", _age),
            cell("events_per_s", lambda v: f"{v:g}"), cell("spool_dropped", str),
            cell("spool_backlog", str), cell("last_seen_s", lambda v: _age(v) + " ago"))


def shown(broker: str) -> str:
    """The broker URL as it may be printed: a user and password in it (refused later, but
    named in the error) are not."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(broker)
        host = parts.hostname
    except ValueError:
        return broker
    if parts.username is None and parts.password is None:
        return broker
    netloc = f"...@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def topic_id(ctx, param, value):
    """A --site or --device that is one topic level: ``+`` (all) where that is the default,
    never ``#``, ``/`` or a ``+`` inside a name (paho refused the filter with a traceback,
    or the tail listened to nothing)."""
    if value is None or (value == "+" and param.default == "+"):
        return value
    if not value or any(c in value for c in "#+/"):
        raise click.BadParameter(f"{value!r}: expected one id, without '#', '+' or '/'")
    return value


@fleet_group.command("status")
@click.option("--broker", required=True, help=BROKER_HELP)
@click.option("--wait", "wait_s", type=POSITIVE, default=1.0, show_default=True,
              help="Seconds to collect the retained messages.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def status_cmd(broker: str, wait_s: float, as_json: bool) -> None:
    """List devices: online, model, software version, uptime, events/s, drops, spool
    backlog, last seen (from the retained status and stats messages)."""
    from vitaledge.device.fleet.view import fleet_status

    try:
        rows = fleet_status(broker, wait_s)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"broker {shown(broker)}: {exc}") from exc
    for r in rows:
        if r["invalid_fields"]:
            click.echo(f"{r['site']}/{r['device']}: malformed retained message, shown as "
                       f"unknown: {', '.join(r['invalid_fields'])}", err=True)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no devices (no retained status under this prefix)")
        return
    head = ("SITE/DEVICE", "STATE", "MODEL", "VERSION", "UPTIME", "EV/S", "DROPS", "BACKLOG",
            "LAST SEEN")
    lines = [head] + [_status_line(r) for r in rows]
    widths = [max(len(x[i]) for x in lines) for i in range(len(head))]
    for line in lines:
        click.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


@fleet_group.command("tail")
@click.option("--broker", required=True, help=BROKER_HELP)
@click.option("--device", default="+", callback=topic_id,
              help="One device id (default: all).")
@click.option("--site", default="+", callback=topic_id, help="One site id (default: all).")
@click.option("--client-id", default="",
              help="Persistent session under this id: the broker keeps events for it "
                   "while it is away.")
@click.option("--count", type=click.IntRange(min=0), default=0,
              help="Stop after this many events (0: no such bound).")
@click.option("--idle", "idle_s", type=FiniteRange(min=0), default=0.0,
              help="Stop after this many seconds without an event, once events have begun "
                   "(0: no such bound).")
@click.option("--timeout", "timeout_s", type=FiniteRange(min=0), default=0.0,
              help="Stop after seconds (0: no such bound).")
def tail_cmd(broker: str, device: str, site: str, client_id: str, count: int, idle_s: float,
             timeout_s: float) -> None:
    """Follow events as JSON lines, each once (de-duplicated by device, run and seq) in
    the order each device sent them; counts on stderr at the end."""
    from vitaledge.device.fleet.view import tail

    n = 0

    def show(event: dict) -> None:
        """Print an event as a JSON line; one with NaN or an infinity in it would be no
        JSON for what reads the lines: ValueError, and tail skips it as malformed."""
        nonlocal n
        try:
            line = json.dumps(event, separators=(",", ":"), allow_nan=False)
        except ValueError:
            raise ValueError("a number in it is NaN or infinite") from None
        n += 1
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    try:
        dedup = tail(broker, show, device=device, site=site, client_id=client_id,
                     count=count, idle_s=idle_s, timeout_s=timeout_s,
                     on_subscribed=lambda: click.echo("subscribed", err=True),
                     on_malformed=lambda topic, why: click.echo(
                         f"skipped a malformed event on {topic}: {why}", err=True))
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"broker {shown(broker)}: {exc}") from exc
    except KeyboardInterrupt:  # Ctrl-C ends a tail: what it showed is still said
        click.echo(f"{n} events (interrupted)", err=True)
        return
    click.echo(f"{n} events, {dedup.duplicates} duplicates dropped"
               + (f", {dedup.malformed} malformed skipped" if dedup.malformed else ""),
               err=True)


@fleet_group.command("simulate")
@click.option("--broker", required=True, help=BROKER_HELP)
@click.option("--devices", type=click.IntRange(1, 100_000), required=True,
              help="How many simulated devices.")
@click.option("--seconds", type=FiniteRange(0.5, 3600), default=20.0, show_default=True,
              help="How long they publish.")
@click.option("--bpm", type=FiniteRange(1, 300), default=75.0, show_default=True,
              help="Beat events per device per minute.")
@click.option("--connections", type=click.IntRange(min=1), default=None,
              help="MQTT connections the devices share (default: min(devices, 20)).")
@click.option("--broker-pid", type=click.IntRange(min=1), default=None,
              help="The broker's pid, for its CPU (default: the owner of the listening "
                   "socket, for a broker on this machine).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def simulate_cmd(broker: str, devices: int, seconds: float, bpm: float,
                 connections: int | None,
                 broker_pid: int | None, seed: int, as_json: bool) -> None:
    """Simulated devices publishing beat events in real time, and a subscriber measuring
    messages/s, end-to-end latency, losses and the broker's CPU."""
    from vitaledge.device.fleet.simulate import simulate

    try:
        r = simulate(broker, devices, seconds, bpm=bpm, connections=connections,
                     broker_pid=broker_pid, seed=seed)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"broker {shown(broker)}: {exc}") from exc
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    lat = r["latency_ms"]
    cpu = "-" if r["broker_cpu_percent"] is None else f"{r['broker_cpu_percent']:g}%"
    click.echo(f"{r['devices']} devices over {r['connections']} connections, "
               f"{r['seconds']:g} s at {r['bpm']:g} beats/min "
               f"(expected {r['expected_per_s']:g} msg/s)")
    click.echo(f"published {r['published']} ({r['published_per_s']:g}/s), acked "
               f"{r['acked']}, received {r['unique']} ({r['received_per_s']:g}/s), "
               f"lost {r['lost']}, duplicates {r['duplicates']}")
    click.echo(f"latency ms p50 {lat['p50']} p90 {lat['p90']} p99 {lat['p99']} max "
               f"{lat['max']}; broker CPU {cpu}; simulator CPU "
               f"{r['simulator_cpu_percent']:g}%; payload {r['payload_bytes']} B")


@fleet_group.command("deploy")
@click.argument("artifact", type=click.Path(exists=True, file_okay=False))
@click.option("--broker", required=True, help=BROKER_HELP)
@click.option("--device", callback=topic_id, help="One device id.")
@click.option("--all", "all_devices", is_flag=True,
              help="Every device of the site(s): the site's all/deploy topic.")
@click.option("--site", callback=topic_id,
              help="The site (default: found from the devices' retained status).")
@click.option("--wait", "wait_s", type=FiniteRange(min=0), default=0.0,
              show_default=True,
              help="Seconds to follow the devices' status messages (longer than their "
                   "probation); 0: publish and return.")
def deploy_cmd(artifact: str, broker: str, device: str | None, all_devices: bool,
               site: str | None, wait_s: float) -> None:
    """Deploy a signed artifact with self-test vectors over the air: each device verifies,
    stages, self-tests, swaps it in and keeps it after a probation, or rolls back. With
    --wait, print each device's status messages; exit 1 when one refused, rolled back or
    gave no outcome in time."""
    from vitaledge.device.fleet.deploy import (
        DeployError,
        deploy,
        find_targets,
        new_deployment_id,
        read_artifact,
    )

    if bool(device) == all_devices:
        raise click.UsageError("give --device ID or --all (one of them)")
    try:
        bundle = read_artifact(artifact)
    except DeployError as exc:
        raise click.ClickException(str(exc)) from exc

    def show(s: dict, seconds: float) -> None:
        """One line per status message (checked by deploy: the fields have their types,
        though a device may leave any of them out)."""
        extra = ""
        if s.get("state") == "swapped":
            p = s.get("probation") or {}
            extra = (f"  swap {s.get('swap_ms')} ms, probation "
                     f"{_number(p.get('seconds'), 'g')} s")
        elif s.get("state") == "selftest_passed":
            st = s.get("selftest") or {}
            extra = (f"  {st.get('vectors')} vectors, max |diff| "
                     f"{_number(st.get('max_abs_diff'), '.3g')}")
        elif s.get("state") == "probation_passed":
            p = s.get("probation") or {}
            extra = (f"  {p.get('outputs')} outputs, p99 {p.get('latency_p99_ms')} ms, "
                     f"error rate {p.get('error_rate')}")
        if s.get("reason"):
            extra += f"  {s['reason']}"
        click.echo(f"{s.get('site')}/{s.get('device')}  {s.get('state', '?'):<16} "
                   f"{seconds:7.2f} s{extra}")

    try:
        targets, expected = find_targets(broker, device, site)
        where = ", ".join(f"{s}/{d}" for s, d in targets)
        size = sum(len(b) for b in bundle.files.values())
        dep = new_deployment_id()
        click.echo(f"deployment {dep}: {artifact} (model {bundle.sha256[:12]}, {size:,} "
                   f"bytes) to {where}" + (f" ({len(expected)} devices online)"
                                           if all_devices else ""))
        report = deploy(broker, bundle, targets, expected, wait_s, show, deployment=dep,
                        on_malformed=lambda key, why: click.echo(
                            f"{key[0]}/{key[1]}: ignored a malformed status message: {why}",
                            err=True))
    except DeployError as exc:
        raise click.ClickException(str(exc)) from exc
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"broker {shown(broker)}: {exc}") from exc
    if not wait_s:
        click.echo(f"deployment {report.deployment} published")
        return
    bad = report.failures()
    if bad:
        raise click.ClickException(f"{len(bad)} device(s) failed: " + "; ".join(bad))
    click.echo(f"all {len(report.expected | set(report.statuses))} device(s) took it")
