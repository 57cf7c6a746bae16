"""The on-device inference daemon: source -> bounded queue -> beat pipeline -> sinks + API.

Operation:
* the source thread reads chunks into a bounded queue; a live source (tcp, stdin) whose
  chunk finds the queue full drops it (counted, and the pipeline is told of the gap); a
  replay waits instead, so a file is never thinned;
* the worker classifies, numbers events (``seq``), writes them to every sink, keeps the
  most recent ones for ``/events``;
* SIGTERM/SIGINT: stop reading, drain the queue, flush the pipeline and sinks, exit 0;
* SIGHUP: load the model again from its artifact directory; a model that fails to load or
  does not fit the running pipeline is refused and the old one keeps serving.
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from vitaledge.device.dsp.signal_quality import Change, Fault, SignalMonitor
from vitaledge.device.io.sessions import FaceFrame
from vitaledge.device.model.manifest import ManifestError
from vitaledge.device.model.memory import rss_mb
from vitaledge.device.model.runtime import Model, ModelLoadError
from vitaledge.device.stream.pipeline import BeatPipeline, SignalError
from vitaledge.device.stream.protocol import Gap, StatusEvent
from vitaledge.device.stream.sinks import open_sink
from vitaledge.device.stream.sources import Source, open_source
from vitaledge.device.stream.stages import FanOut, stage_for

log = logging.getLogger("vitaledge.daemon")
NO_SIGNAL_S = 5.0  # a live source silent this long gets a no_signal status event
RATE_WINDOW_S = 30.0  # a live source's arrival rate is measured over this much wall time


@dataclass
class DaemonConfig:
    model: str = ""
    # Optional second model on the same stream (an emotion-ecg artifact beside the beat one).
    emotion_model: str = ""
    # Seconds between emotion estimates; 0 = the manifest's hop.
    emotion_hop_s: float = 0.0
    source: str = ""
    fs: float | None = None
    speed: str = "max"
    lead: str = "MLII"
    out: list[str] = field(default_factory=lambda: ["stdout"])
    fsync: str = "batch"
    api_host: str = "127.0.0.1"
    api_port: int = 0  # 0: no API
    # Bearer token for the API, read from this file (or $VITALEDGE_API_TOKEN); required for
    # a non-loopback api_host. Never a config value or a flag: those end up in ps and logs.
    api_token_file: str = ""
    api_rate: float = 20.0  # requests per second per client (burst twice that)
    # Ed25519 public key (PEM): when set, only models whose manifest carries a valid
    # signature by this key load (device/model/signing.py).
    verify_key: str = ""
    threads: int = 1
    backend: str | None = None
    delegate: str = "xnnpack"
    fallback: str = "none"
    queue_chunks: int = 256
    keep_events: int = 10_000
    max_jsonl_bytes: int = 50_000_000

    @classmethod
    def from_toml(cls, path: str | Path, **overrides) -> DaemonConfig:
        import tomllib

        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"{path}: cannot read config: {exc}") from exc
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**data)


def api_token(cfg: DaemonConfig) -> str:
    """The API bearer token: ``api_token_file``'s first line, else $VITALEDGE_API_TOKEN."""
    import os

    if cfg.api_token_file:
        try:
            token = Path(cfg.api_token_file).read_text().strip()
        except OSError as exc:
            raise ValueError(f"api_token_file {cfg.api_token_file}: {exc}") from exc
        if len(token) < 16:
            raise ValueError(f"api_token_file {cfg.api_token_file}: token shorter than 16 "
                             "characters")
        return token
    return os.environ.get("VITALEDGE_API_TOKEN", "").strip()


class Daemon:
    def __init__(self, cfg: DaemonConfig):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.t_start = time.monotonic()
        self.cfg = cfg
        token = api_token(cfg) if cfg.api_port else ""
        if cfg.api_port:  # refuse an unsafe API before loading anything
            from vitaledge.device.stream.api import ApiSecurityError, is_loopback

            if not is_loopback(cfg.api_host) and not token:
                raise ApiSecurityError(f"api_host {cfg.api_host!r} is not loopback: a bearer "
                                       "token is required (api_token_file or "
                                       "VITALEDGE_API_TOKEN)")
        self.model = self._load_model()
        models = [self.model] + ([self._load_model(cfg.emotion_model)] if cfg.emotion_model
                                 else [])
        self.source: Source = open_source(cfg.source, cfg.fs, cfg.speed, cfg.lead)
        self.live = not cfg.source.startswith("replay:")
        hop = cfg.emotion_hop_s or None
        self.pipeline = FanOut([stage_for(m, self.source.fs, hop) for m in models])
        ecg = isinstance(self.pipeline.stages[0], BeatPipeline)
        model_fs = self.model.manifest.signal.get("window", {}).get("fs") if ecg else None
        # ECG stream faults (NaN, saturation, lead-off) are cut out and reported
        self.monitor = SignalMonitor(self.source.fs) if ecg else None
        self._last_data: float | None = None
        self._silent = False
        self._arrived = 0  # samples that reached the worker (drops are added apart)
        self._rate_t0: float | None = None
        self._rate_n0 = 0
        self._rate_bad = False
        self.sinks = [open_sink(s, cfg.fsync, cfg.max_jsonl_bytes) for s in cfg.out]
        self.seq = max((s.last_seq() for s in self.sinks), default=0)
        if model_fs and self.source.fs < float(model_fs):  # reported in the sinks, refused
            msg = (f"source {self.source.name} is {self.source.fs:g} Hz, below the "
                   f"{float(model_fs):g} Hz the model's windows are made at (manifest "
                   "signal.window.fs): upsampling cannot restore it")
            self.seq += 1
            for s in self.sinks:
                s.write([{"type": "status", "status": "sample_rate_mismatch", "time": 0.0,
                          "source_fs": self.source.fs, "model_fs": float(model_fs),
                          "error": msg, "seq": self.seq}])
                s.close()
            self.source.stop()
            raise SignalError(msg)
        self.q: queue.Queue = queue.Queue(maxsize=cfg.queue_chunks)
        self.recent: deque[dict] = deque(maxlen=cfg.keep_events)
        self.stop = threading.Event()
        self.source_done = threading.Event()
        self.reader_exited = threading.Event()
        self._missing = 0  # samples dropped since the last chunk that got through
        self.lock = threading.Lock()
        self.reg = CollectorRegistry()
        self.m_samples = Counter("vitaledge_samples", "Samples received", registry=self.reg)
        self.m_beats = Counter("vitaledge_beats", "Beats classified", ["cls"],
                               registry=self.reg)
        self.m_emotions = Counter("vitaledge_emotion_estimates", "Emotion estimates",
                                  ["task", "cls"], registry=self.reg)
        self.m_dropped = Counter("vitaledge_dropped_chunks", "Chunks dropped on a full queue",
                                 registry=self.reg)
        self.m_reloads = Counter("vitaledge_model_reloads", "Model reloads", ["result"],
                                 registry=self.reg)
        self.m_latency = Histogram("vitaledge_inference_seconds",
                                   "Pipeline time per chunk (filter, detect, classify)",
                                   buckets=(1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1),
                                   registry=self.reg)
        self.m_queue = Gauge("vitaledge_queue_chunks", "Chunks waiting", registry=self.reg)
        self.m_queue.set_function(self.q.qsize)
        self.dropped_chunks = 0
        self.dropped_samples = 0
        self.api = None
        if cfg.api_port:
            from vitaledge.device.stream.api import make_server, serve_in_thread

            self.api = make_server(cfg.api_host, cfg.api_port, self.health, self.metrics,
                                   self.events_since, token=token,
                                   rate=cfg.api_rate)
            serve_in_thread(self.api)
        self.ready_s = time.monotonic() - self.t_start
        log.info(json.dumps({"event": "ready", "seconds": round(self.ready_s, 3),
                             "rss_mb": round(rss_mb(), 1), "model": cfg.model,
                             "source": self.source.name, "fs": self.source.fs,
                             "api": f"{cfg.api_host}:{self.api.server_address[1]}"
                             if self.api else None}))

    def _load_model(self, path: str | None = None) -> Model:
        return Model(path or self.cfg.model, backend=self.cfg.backend, threads=self.cfg.threads,
                     delegate=self.cfg.delegate, fallback_cpu=self.cfg.fallback == "cpu",
                     verify_key=self.cfg.verify_key or None)

    # -- API callbacks -------------------------------------------------------------------
    def health(self) -> dict:
        return {"status": "ok" if not self.stop.is_set() else "stopping",
                "uptime_s": round(time.monotonic() - self.t_start, 1),
                "model": self.cfg.model, "model_sha256": self.model.manifest.sha256,
                "source": self.source.name, "samples_in": self.pipeline.samples_in,
                "last_seq": self.seq, "rhythm": self.pipeline.stats.summary(),
                "stages": self.pipeline.summary(), "source_stats": self.source.stats()}

    def metrics(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.reg)

    def events_since(self, since: int, limit: int) -> list[dict]:
        with self.lock:
            return [e for e in self.recent if e["seq"] > since][:limit]

    # -- threads -------------------------------------------------------------------------
    def _read(self) -> None:
        try:
            for chunk in self.source.chunks:
                if self.stop.is_set():
                    break
                if self.live:
                    try:
                        if self._missing:
                            self.q.put_nowait(("gap", self._missing))
                            self._missing = 0
                        self.q.put_nowait(chunk)
                    except queue.Full:
                        lost = 0 if isinstance(chunk, (Gap, StatusEvent, FaceFrame)) else len(chunk)
                        self.m_dropped.inc()
                        self.dropped_chunks += 1
                        self.dropped_samples += lost
                        # a dropped wire gap still moves the time axis
                        self._missing += lost + (chunk.missing if isinstance(chunk, Gap) else 0)
                else:
                    while not self.stop.is_set():
                        try:
                            self.q.put(chunk, timeout=0.2)
                            break
                        except queue.Full:
                            continue
        except Exception as exc:  # a broken source must not kill the daemon silently
            log.error(json.dumps({"event": "source_error", "error": str(exc)}))
        finally:
            self.reader_exited.set()
            self.source_done.set()

    def _emit(self, events: list[dict]) -> None:
        if not events:
            return
        for e in events:
            self.seq += 1
            e["seq"] = self.seq
            if e.get("type") == "beat":
                self.m_beats.labels(e["class"]).inc()
            elif e.get("type") == "emotion":
                self.m_emotions.labels(e["task"], e["class"]).inc()
        for s in self.sinks:
            s.write(events)
        with self.lock:
            self.recent.extend(events)

    def _work(self) -> None:
        while True:
            try:
                item = self.q.get(timeout=0.1)
            except queue.Empty:
                if self.source_done.is_set():
                    break
                self._check_silence()
                continue
            t = time.perf_counter()
            with self.lock:
                pipe = self.pipeline
            try:
                if isinstance(item, tuple):
                    events = pipe.gap(item[1])
                    events.append({"type": "status", "status": "gap",
                                   "time": round(pipe.samples_in / pipe.fs, 3),
                                   "missing_samples": item[1]})
                elif isinstance(item, Gap):
                    events = self._source_gap(pipe, item)
                elif isinstance(item, FaceFrame):
                    events = pipe.face(item)
                elif isinstance(item, StatusEvent):
                    events = [{"type": "status", **item.info,
                               "time": round(pipe.samples_in / pipe.fs, 3)}]
                else:
                    self.m_samples.inc(len(item))
                    events = self._samples(pipe, item)
            except SignalError as exc:
                events = [{"type": "status", "status": "signal_error", "error": str(exc)}]
            self.m_latency.observe(time.perf_counter() - t)
            self._emit(events)
        # drops that no later chunk got through to report (the reader may still be
        # inside a blocking read after a stop request; it cannot add drops then)
        self.reader_exited.wait(timeout=1.0)
        if self._missing:
            n, self._missing = self._missing, 0
            pipe = self.pipeline
            events = pipe.gap(n)
            events.append({"type": "status", "status": "gap",
                           "time": round(pipe.samples_in / pipe.fs, 3), "missing_samples": n})
            self._emit(events)
        self._emit(self.pipeline.flush())

    def _check_silence(self) -> None:
        """A live source that stops sending for NO_SIGNAL_S is reported once."""
        if (self.live and not self._silent and self._last_data is not None
                and time.monotonic() - self._last_data > NO_SIGNAL_S):
            self._silent = True
            pipe = self.pipeline
            self._emit([{"type": "status", "status": "no_signal",
                         "time": round(pipe.samples_in / pipe.fs, 3),
                         "silent_s": round(time.monotonic() - self._last_data, 1)}])

    def _check_rate(self, now: float) -> list[dict]:
        """A live source whose samples arrive, over RATE_WINDOW_S, more than 25 % away
        from the configured rate gets rate_mismatch (once), and rate_ok when it is back
        within 10 %: the stream's time axis and beat intervals assume that rate."""
        arrived = self._arrived + self.dropped_samples
        if self._rate_t0 is None:
            self._rate_t0, self._rate_n0 = now, arrived
            return []
        dt = now - self._rate_t0
        if dt < RATE_WINDOW_S:
            return []
        rate = (arrived - self._rate_n0) / dt
        self._rate_t0, self._rate_n0 = now, arrived
        off = abs(rate / self.source.fs - 1.0)
        if off > 0.25 and not self._rate_bad:
            self._rate_bad, status = True, "rate_mismatch"
        elif off < 0.1 and self._rate_bad:
            self._rate_bad, status = False, "rate_ok"
        else:
            return []
        pipe = self.pipeline
        return [{"type": "status", "status": status,
                 "time": round(pipe.samples_in / pipe.fs, 3),
                 "measured_hz": round(rate, 1), "configured_hz": self.source.fs}]

    def _samples(self, pipe, x) -> list[dict]:
        """Samples through the signal monitor: faulty stretches become gaps (never
        classified) with a status event where a fault starts and where it ends."""
        events: list[dict] = []
        now = time.monotonic()
        if self._silent:
            self._silent = False
            self._rate_t0 = None  # a silence is not a slow rate
            events.append({"type": "status", "status": "signal_resumed",
                           "time": round(pipe.samples_in / pipe.fs, 3),
                           "silent_s": round(now - (self._last_data or now), 1)})
        self._last_data = now
        self._arrived += len(x)
        if self.live:
            events += self._check_rate(now)
        if self.monitor is None or getattr(x, "ndim", 1) != 1:
            return events + pipe.process(x)
        for part in self.monitor.split(x):
            if isinstance(part, Fault):
                events += pipe.gap(part.n)
            elif isinstance(part, Change):
                ev = {"type": "status", "status": part.kind,
                      "time": round(pipe.samples_in / pipe.fs, 3)}
                if part.after:
                    ev.update(fault=part.after, fault_samples=part.samples)
                events.append(ev)
            else:
                events += pipe.process(part)
        return events

    def _source_gap(self, pipe: BeatPipeline, gap: Gap) -> list[dict]:
        """Samples lost on the wire: a short hole is filled (the time axis and the
        detector's thresholds survive) and reported; a long one restarts detection."""
        status = {"type": "status", "status": "gap", "reason": gap.reason,
                  "time": round(pipe.samples_in / pipe.fs, 3), "missing_samples": gap.missing,
                  "concealed": gap.fill is not None}
        if gap.fill is not None:
            self.m_samples.inc(len(gap.fill))
            return [status, *pipe.process(gap.fill)]
        return [*pipe.gap(gap.missing), status]

    def reload(self) -> bool:
        """Hot reload: load the artifact again; swap only if it loads and fits."""
        try:
            model = self._load_model()
            emotion = self._load_model(self.cfg.emotion_model) if self.cfg.emotion_model \
                else None
            with self.lock:
                self.pipeline.swap_model(model)
                if emotion is not None:
                    self.pipeline.swap_model(emotion)
                self.model = model
        except (ManifestError, ModelLoadError, SignalError, ValueError, OSError) as exc:
            self.m_reloads.labels("refused").inc()
            log.error(json.dumps({"event": "reload_refused", "error": str(exc)}))
            return False
        self.m_reloads.labels("ok").inc()
        log.info(json.dumps({"event": "reloaded", "sha256": model.manifest.sha256}))
        return True

    def run(self, install_signals: bool = True) -> dict:
        if install_signals:
            signal.signal(signal.SIGTERM, lambda *_: self.request_stop())
            signal.signal(signal.SIGINT, lambda *_: self.request_stop())
            signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=self.reload,
                                                                      daemon=True).start())
        reader = threading.Thread(target=self._read, name="source", daemon=True)
        worker = threading.Thread(target=self._work, name="pipeline")
        t0 = time.perf_counter()
        reader.start()
        worker.start()
        while worker.is_alive():
            worker.join(timeout=0.2)
        wall = time.perf_counter() - t0
        for s in self.sinks:
            s.close()
        if self.api is not None:
            self.api.shutdown()
        summary = {"event": "stopped", "samples": self.pipeline.samples_in,
                   "signal_seconds": round(self.pipeline.samples_in / self.source.fs, 1),
                   "wall_seconds": round(wall, 3),
                   "realtime_factor": round(self.pipeline.samples_in / self.source.fs
                                            / wall, 1) if wall > 0 else None,
                   "events": self.seq, "dropped_chunks": self.dropped_chunks,
                   "dropped_samples": self.dropped_samples,
                   "dropped_edge_beats": self.pipeline.dropped_edge,
                   "signal_fault_samples": self.monitor.counts if self.monitor else None,
                   "source_stats": self.source.stats(),
                   "rss_mb": round(rss_mb(), 1), "ready_seconds": round(self.ready_s, 3),
                   "rhythm": self.pipeline.stats.summary(),
                   "stages": self.pipeline.summary()}
        log.info(json.dumps(summary))
        return summary

    def request_stop(self) -> None:
        """Graceful stop: no more input; what is queued is processed and flushed."""
        log.info(json.dumps({"event": "stopping"}))
        self.stop.set()
        self.source.stop()
        self.source_done.set()
