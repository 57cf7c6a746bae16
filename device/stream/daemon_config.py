"""The daemon's settings (``vitaledge device run`` flags, or a TOML file with ``--config``):
:class:`DaemonConfig`, each key's type checked on load with a message naming it, the
cross-checks of its values (sources, sinks, OTA), and the tokens it names."""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from vitaledge.device.model.runtime import MAX_THREADS
from vitaledge.device.stream.auth import load_token
from vitaledge.device.stream.beat_watch import NO_BEATS_S
from vitaledge.device.stream.sinks import SINKS, sink_file
from vitaledge.device.stream.source_watch import NO_SIGNAL_S
from vitaledge.device.stream.sources import carries_rate, fs_range

#: The slowest replay: a thousandth of real time (1e-300 overflowed the wall clock).
MIN_SPEED = 1e-3
#: What ``emotion_model`` takes (manifest tasks): a stage that reads the beat model's ECG
#: stream. The main model takes any task with a stage, but a beat model when an emotion
#: model runs beside it.
EMOTION_MODEL_TASKS = ("emotion-ecg",)


@dataclass
class DaemonConfig:
    model: str = ""
    # Optional second model on the same stream (an emotion-ecg artifact beside the beat one).
    emotion_model: str = ""
    # Seconds between emotion estimates; 0 = the manifest's hop.
    emotion_hop_s: float = 0.0
    source: str = ""
    fs: float | None = None
    speed: str | float = "max"
    lead: str = "MLII"
    out: list[str] = field(default_factory=lambda: ["stdout"])
    fsync: str = "batch"
    api_host: str = "127.0.0.1"
    api_port: int = 0  # 0: no API
    # Bearer token for the API, read from this file (or $VITALEDGE_API_TOKEN); required for
    # a non-loopback api_host. Never a config value or a flag: those end up in ps and logs.
    api_token_file: str = ""
    api_rate: float = 20.0  # requests per second per client (burst twice that)
    # Token a tcp/frames+tcp source's clients must send first (or $VITALEDGE_SOURCE_TOKEN);
    # required when the source listens off loopback (docs/protocol.md, "Authentication").
    source_token_file: str = ""
    # Ed25519 public key (PEM): when set, only models whose manifest carries a valid
    # signature by this key load (device/model/signing.py).
    verify_key: str = ""
    threads: int = 1
    backend: str | None = None
    delegate: str = "xnnpack"
    fallback: str = "none"  # one of FALLBACKS
    queue_chunks: int = 256
    keep_events: int = 10_000
    max_jsonl_bytes: int = 50_000_000
    # Add this run's events to sink files that already hold events (else refused).
    append: bool = False
    # Seconds of present signal without a beat before a no_beats status event.
    no_beats_s: float = NO_BEATS_S
    # Seconds a live source may send nothing before a no_signal status event.
    no_signal_s: float = NO_SIGNAL_S
    # Signal-quality gating of the beat stage: no beats in unreadable stretches, doubtful
    # ones flagged (device/stream/pipeline.py); false for the ungated comparison.
    gating: bool = True
    # The MQTT sink's settings, TOML table [mqtt] (site, device, spool, rate, TLS ...;
    # device/stream/mqtt.py MqttOptions); a sink URL's query overrides them.
    mqtt: dict = field(default_factory=dict)
    # Over-the-air model updates, TOML table [ota] (enabled, models_dir, probation limits
    # ...; device/stream/ota.py OtaOptions); flags --ota, --models-dir, --probation.
    ota: dict = field(default_factory=dict)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides) -> DaemonConfig:
        import tomllib

        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"{path}: cannot read config: {exc}") from exc
        except UnicodeDecodeError as exc:  # a binary file: TOML is UTF-8 text
            raise ValueError(f"{path}: cannot read config: not UTF-8 text (byte "
                             f"{exc.start})") from exc
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
        hints = typing.get_type_hints(cls)
        for key, value in data.items():
            if not _type_ok(value, hints[key]):
                raise ValueError(f"{path}: {key} = {value!r}: expected "
                                 f"{_expected(key, hints[key])}")
        src = overrides.get("source") or data.get("source", "")
        own = dict(data, source=src)  # the rate bounds are those of the source that will run
        if overrides.get("fs") is not None or carries_rate(src):
            own.pop("fs", None)  # a file's fs that --fs replaces or the source ignores
        try:  # the file's own values, checked before flags are merged in
            cls(**own)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
        data.update({k: v for k, v in overrides.items() if v is not None})
        if overrides.get("fs") is None and carries_rate(data.get("source", "")):
            data.pop("fs", None)  # the file's fs is for sources without a rate of their own
        if data.get("out") == [] and not data.get("api_port"):  # ran, and wrote nothing
            raise ValueError(f"{path}: out = []: no sink and no API (api_port) to read the "
                             "events from, so every event would be lost; name a sink "
                             "(out = [\"stdout\"], a .jsonl file...) or remove the key")
        return cls(**data)

    def __post_init__(self) -> None:
        """Values a type cannot express; each message names the key and what it takes."""
        speed = self.speed
        if not (isinstance(speed, str) and speed == "max"):
            try:
                factor = float(speed)
            except (TypeError, ValueError):
                factor = math.nan
            if not (math.isfinite(factor) and MIN_SPEED <= factor):
                raise ValueError(f"speed {speed!r}: expected 'max' or a factor of real "
                                 f"time >= {MIN_SPEED:g} (1 = real time)")
        if self.fs is not None:  # the bounds open_source holds the source to, said now
            lo, hi = fs_range(self.source)
            if not (lo <= self.fs <= hi and self.fs > 0):  # NaN fails too
                raise ValueError(f"fs {self.fs!r}: expected a sample rate of {lo:g}-{hi:g} "
                                 f"Hz (the range {self.source or 'a source'} may have)"
                                 if math.isfinite(hi) else
                                 f"fs {self.fs!r}: expected a sample rate > 0 Hz")
        for key, low in (("threads", 1), ("queue_chunks", 1), ("keep_events", 1),
                         ("max_jsonl_bytes", 1)):
            if getattr(self, key) < low:
                raise ValueError(f"{key} {getattr(self, key)!r}: expected an integer >= {low}")
        if self.threads > MAX_THREADS:  # the interpreter would try to start them all
            raise ValueError(f"threads {self.threads!r}: expected at most {MAX_THREADS}")
        if not 0 <= self.api_port <= 65535:
            raise ValueError(f"api_port {self.api_port!r}: expected 0 (no API) to 65535")
        for key in ("emotion_hop_s", "api_rate"):
            v = getattr(self, key)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{key} {v!r}: expected a number >= 0")
        if self.fallback not in FALLBACKS:  # "cpuu" was taken as none
            raise ValueError(f"fallback {self.fallback!r}: expected one of {list(FALLBACKS)}")
        if not (math.isfinite(self.no_beats_s) and self.no_beats_s > 0):
            raise ValueError(f"no_beats_s {self.no_beats_s!r}: expected seconds > 0")
        if not (math.isfinite(self.no_signal_s) and self.no_signal_s > 0):
            raise ValueError(f"no_signal_s {self.no_signal_s!r}: expected seconds > 0")
        from vitaledge.device.stream import ota
        from vitaledge.device.stream.mqtt import check_table
        from vitaledge.device.stream.sinks import fsync_interval

        fsync_interval(self.fsync)

        check_table(self.mqtt)
        ota.check_table(self.ota)
        from vitaledge.device.stream.mqtt import parse_url
        from vitaledge.device.stream.sinks import sink_target

        seen: set[str] = set()
        spools: dict[str, str] = {}
        for spec in self.out:  # one file twice: every event written twice, +P 50 %
            f = sink_file(spec)
            scheme, _ = sink_target(spec)
            key = str(f.absolute()) if f is not None else "stdout" if scheme == "stdout" \
                else spec  # "-" is stdout too
            if key in seen:
                raise ValueError(f"out: sink {spec!r} given twice (every event would be "
                                 "written twice)")
            seen.add(key)
            if SINKS[scheme].broker:  # two sinks on one spool: each spooled twice
                spool = str(parse_url(spec, self.mqtt).spool_path.absolute())
                if spool in spools:
                    raise ValueError(f"out: sinks {spools[spool]!r} and {spec!r} would share "
                                     f"the spool {spool}; give each its own (?spool=FILE)")
                spools[spool] = spec
        for spool, spec in spools.items():  # the spool's tables written into an events file
            if spool in seen:
                raise ValueError(f"out: the spool of {spec!r} is the sink file {spool}; "
                                 "give it its own (?spool=FILE)")


#: What ``fallback`` (``--fallback``) takes: cpu runs on the CPU when the delegate cannot load.
FALLBACKS = ("none", "cpu")


def _type_ok(value, hint) -> bool:
    """Whether a config value (as TOML gives it) has the field's type; an int is a float,
    a bool is not a number."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if hint is type(None):
        return value is None
    if isinstance(value, bool):
        return hint is bool
    if hint is float:
        return isinstance(value, int | float)
    return isinstance(value, hint)


def _expected(key: str, hint) -> str:
    """What a config key takes, in words (with the fix for the common mistakes)."""
    if typing.get_origin(hint) is list:
        return f'a list of strings, e.g. {key} = ["events.jsonl"]'
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    args = [h for h in (typing.get_args(hint) or (hint,)) if h is not type(None)]
    return " or ".join(names.get(h, getattr(h, "__name__", str(h))) for h in args)


def api_token(cfg: DaemonConfig) -> str:
    """The API bearer token: ``api_token_file``'s content, else $VITALEDGE_API_TOKEN
    (either one held to :func:`~.auth.check_token`)."""
    return load_token(cfg.api_token_file, "VITALEDGE_API_TOKEN", "api_token_file")


def source_token(cfg: DaemonConfig) -> str:
    """The token a listening source's clients send first: ``source_token_file``'s
    content, else $VITALEDGE_SOURCE_TOKEN (the same rule as the API's)."""
    return load_token(cfg.source_token_file, "VITALEDGE_SOURCE_TOKEN", "source_token_file")
