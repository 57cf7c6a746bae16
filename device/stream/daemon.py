"""The on-device inference daemon: source -> bounded queue -> beat pipeline -> sinks + API.

Operation:
* the source thread (:mod:`.source_reader`) reads chunks into a bounded queue; a live
  source (tcp, stdin) whose chunk finds the queue full drops it (counted in a
  :class:`~.drop_count.DropCount`, and the pipeline is told of the gap); a replay waits
  instead, so a file is never thinned;
* the worker classifies, numbers events (``seq``), writes them to every sink, keeps the
  most recent ones for ``/events``;
* SIGTERM/SIGINT: stop reading, drain the queue, flush the pipeline and sinks, exit 0;
  a worker still busy after STOP_GRACE_S is abandoned (what it had not written is lost,
  counted as ``abandoned_chunks``) so that a stop is always prompt;
* failures are loud: when the pipeline thread dies or the source raises, a
  ``pipeline_error``/``source_error`` status event is written, the run stops and
  :meth:`Daemon.run` raises :class:`DaemonFailure` (``device run`` exits 1, and the unit's
  ``Restart=always`` starts it again); so does a sink that still holds unwritten events at
  the end;
* a failing sink is isolated (:class:`~.sinks.GuardedSink`): the others get every event, it
  is retried with backoff, reported (``sink_error``/``sink_recovered`` status events on the
  healthy sinks, ``vitaledge_sink_errors_total{sink=...}``) and ``/health`` is
  ``degraded`` while it fails;
* a live source that goes quiet or sends at another rate than configured is reported
  (``no_signal``/``signal_resumed``, ``rate_mismatch``/``rate_ok``; :mod:`.source_watch`);
* beats that stop while the signal is present are reported (``no_beats``, then
  ``beats_resumed``; :mod:`.beat_watch`), ``/health`` is ``degraded`` meanwhile and
  ``vitaledge_seconds_since_last_beat`` says how long;
* every event carries ``seq`` and the ``run`` it belongs to; a sink file that already
  holds events is refused unless ``append`` is set;
* SIGHUP: load the model again from its artifact directory; a model that fails to load or
  does not fit the running pipeline is refused and the old one keeps serving;
* over-the-air updates (``[ota] enabled``, with an MQTT sink and a verify key): the model
  serves from ``MODELS_DIR/current``, and deployments from the broker are verified,
  self-tested, swapped in through the same swap as a reload, watched on probation and
  rolled back when they fail it (:mod:`.ota`).
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import threading
import time
import typing
from dataclasses import replace
from pathlib import Path

from vitaledge.device.dsp.signal_quality import Change, Fault, SignalMonitor
from vitaledge.device.model.manifest import ManifestError
from vitaledge.device.model.memory import rss_mb
from vitaledge.device.model.runtime import Model, ModelLoadError
from vitaledge.device.stream import events as event
from vitaledge.device.stream.beat_watch import BeatWatch
from vitaledge.device.stream.daemon_config import (
    EMOTION_MODEL_TASKS,
    DaemonConfig,
    api_token,
    source_token,
)
from vitaledge.device.stream.daemon_metrics import DaemonMetrics, StreamCollector
from vitaledge.device.stream.drop_count import DropCount
from vitaledge.device.stream.event_writer import EventWriter
from vitaledge.device.stream.notify import Watchdog, notify
from vitaledge.device.stream.pipeline import SignalError
from vitaledge.device.stream.protocol import Gap
from vitaledge.device.stream.queue_items import (
    DeviceStatus,
    Dropped,
    EndOfStream,
    FaceItem,
    QueueItem,
    Samples,
    WireGap,
)
from vitaledge.device.stream.sinks import GuardedSink, open_sink, sink_kind
from vitaledge.device.stream.source_reader import SourceReader
from vitaledge.device.stream.source_watch import SourceWatch
from vitaledge.device.stream.sources import (
    Source,
    check_source_safety,
    is_live,
    open_source,
)
from vitaledge.device.stream.stages import FanOut, Stage, stage_for

log = logging.getLogger("vitaledge.daemon")
STOP_GRACE_S = 1.5  # after a stop request the worker gets this long to drain, then is left


class DaemonFailure(RuntimeError):
    """The run failed (pipeline thread died, source raised, a sink lost events); the
    message says what, ``summary`` holds the run's summary."""

    def __init__(self, message: str, summary: dict | None = None):
        super().__init__(message)
        self.summary = summary or {}


class Daemon:
    def __init__(self, cfg: DaemonConfig):
        self.t_start = time.monotonic()
        self.cfg = cfg
        token = self._check_api_safety()  # refuse an unsafe API before loading anything
        self._source_token = source_token(cfg)  # and an unauthenticated open listener
        check_source_safety(cfg.source, self._source_token)
        self.store = self.ota = self._ota_recovered = None
        self.source = self.writer = self.api = None  # what a failed start closes
        try:
            self._prepare_store()  # inside: a failed recovery or seed lets go of the lock
            self._load_models()
            self._open_source()
            self._build_pipeline()
            self._reset_stream_watch()
            self._make_queue()
            self._make_metrics()
            self._make_reader()
            self._open_sinks()
            self._refuse_slow_source()
            self._start_api(token)
            self._start_ota()
        except BaseException:
            self._close_failed_start()
            raise
        self._log_ready()

    def _close_failed_start(self) -> None:
        """What a start that failed part-way had opened, closed: the API, the sinks (an
        event already written, as the slow-source refusal's, stays), the source and the
        models directory's lock. A step failing after the source opened left it (and an
        MQTT sink's thread) running."""
        if self.api is not None:
            self.api.shutdown()
            self.api.server_close()
        if self.writer is not None:
            self.writer.close()
        if self.source is not None:
            self.source.stop()
        if self.store is not None:  # a daemon that did not start holds no models dir
            self.store.unlock()

    # -- start-up steps ------------------------------------------------------------------
    def _check_api_safety(self) -> str:
        """The API's bearer token ("" without API or token); a non-loopback API needs one."""
        cfg = self.cfg
        if not cfg.api_port:
            return ""
        from vitaledge.device.stream.api import ApiSecurityError, is_loopback

        token = api_token(cfg)
        if not is_loopback(cfg.api_host) and not token:
            raise ApiSecurityError(f"api_host {cfg.api_host!r} is not loopback: a bearer "
                                   "token is required (api_token_file or "
                                   "VITALEDGE_API_TOKEN)")
        return token

    def _prepare_store(self) -> None:
        """With over-the-air updates: the models directory (a probation the last run left
        unfinished is rolled back), seeded with ``model`` when it has no current model;
        the daemon then serves ``MODELS_DIR/current``."""
        cfg = self.cfg
        from vitaledge.device.stream import ota

        opts = ota.check_table(cfg.ota)
        if not opts.enabled:
            return
        if not cfg.verify_key:
            raise ValueError("ota: over-the-air updates need verify_key (the public key "
                             "deployments must be signed by)")
        spec = self._mqtt_spec()
        if spec is None:
            raise ValueError("ota: over-the-air updates need an mqtt:// sink in out "
                             "(deployments come through the broker)")
        from vitaledge.device.stream import mqtt

        if mqtt.parse_url(spec, cfg.mqtt).ids[1] == mqtt.ALL_DEVICES:
            raise ValueError(f"mqtt device id {mqtt.ALL_DEVICES!r} is reserved for "
                             "deployments to every device of a site; choose another")
        if not cfg.model:
            raise ValueError("ota: give model (the artifact that seeds models_dir on the "
                             "first start)")
        from vitaledge.device.model.staging import ModelStore

        self.store = ModelStore(opts.models_path)
        self.store.lock()  # before anything in it is read or changed
        self._ota_recovered = self.store.recover()
        link, seeded = self.store.seed(cfg.model)
        if not seeded and Path(cfg.model).absolute() != link.absolute():
            log.info(json.dumps({"event": "ota_serving_store", "model": str(link),
                                 "configured": cfg.model, "release": self.store.current}))
        self.cfg = replace(cfg, model=str(link))

    def _mqtt_spec(self) -> str | None:
        return next((s for s in self.cfg.out if sink_kind(s).broker), None)

    def _start_ota(self) -> None:
        if self.store is None:
            return
        from vitaledge.device.stream import mqtt, ota

        cfg = self.cfg
        self.ota = ota.Updater(ota.check_table(cfg.ota), mqtt.parse_url(self._mqtt_spec(),
                                                                        cfg.mqtt),
                               self.store, cfg.verify_key, self, self._ota_recovered)

    def _load_models(self) -> None:
        """The main model and, when configured, the emotion model on the same stream."""
        from vitaledge.device.stream.stages import STAGES

        self.model = self.load_model()
        main_tasks = ("beat",) if self.cfg.emotion_model else tuple(STAGES)
        check_task("--model (model)", self.cfg.model, self.model, main_tasks)
        self._models = [self.model]
        if self.cfg.emotion_model:
            emotion = self.load_model(self.cfg.emotion_model)
            check_task("--emotion-model (emotion_model)", self.cfg.emotion_model, emotion,
                       EMOTION_MODEL_TASKS)
            self._models.append(emotion)
        if self.cfg.emotion_hop_s and all(m.manifest.task == "beat" for m in self._models):
            raise ValueError("emotion_hop_s (--emotion-hop) steps an emotion model's windows; "
                             "the model here is a beat model (give one with --emotion-model, "
                             "or leave it out)")

    def _open_source(self) -> None:
        cfg = self.cfg
        self.source: Source | None = open_source(cfg.source, cfg.fs, cfg.speed, cfg.lead,
                                                 token=self._source_token)
        self.live = is_live(cfg.source)

    def _build_pipeline(self) -> None:
        """One stage per model on the source's stream; the primary stage decides whether
        stream faults are cut out by a signal monitor first."""
        hop = self.cfg.emotion_hop_s or None
        lead = self.source.lead or self.cfg.lead
        self.pipeline = FanOut([stage_for(m, self.source.fs, hop, lead) for m in self._models])
        primary: Stage = self.pipeline.primary
        # stream faults (NaN, saturation, lead-off) are cut out and reported
        self.monitor = SignalMonitor(self.source.fs) if primary.wants_signal_monitor else None
        primary.set_gating(self.cfg.gating)
        self.beat_watch = (BeatWatch(self.source.fs, self.cfg.no_beats_s)
                           if primary.emits_beats else None)

    def _reset_stream_watch(self) -> None:
        """Bookkeeping of a live source's silences, arrival rate and drops."""
        self.source_watch = SourceWatch(self.source.fs, self.live, self.cfg.no_signal_s)
        self.drops = DropCount()  # recorded by the source thread, read by the others

    def _open_sinks(self) -> None:
        """Every sink, guarded (a failing one is retried, never stops the others); a file
        already holding events only with ``append``; the :class:`EventWriter` that
        numbers the events and writes them to all."""
        cfg = self.cfg
        sinks: list[GuardedSink] = []
        try:
            for spec in cfg.out:
                sink = open_sink(spec, cfg.fsync, cfg.max_jsonl_bytes, cfg.append,
                                 cfg.mqtt, self._sink_context)
                sinks.append(GuardedSink(spec, sink, lambda spec=spec: open_sink(
                    spec, cfg.fsync, cfg.max_jsonl_bytes, True, cfg.mqtt,
                    self._sink_context)))
            self.writer = EventWriter(sinks, self.meters, lambda: self._time(self.pipeline),
                                      cfg.keep_events)
        except Exception:
            for s in sinks:  # opened before one failed; the writer that closes them is not
                s.close()
            raise

    def _sink_context(self) -> dict:
        """What the MQTT sink's birth and stats messages say about this daemon (read from
        the sink's thread)."""
        m = self.model.manifest
        ctx = {"model": {"sha256": m.sha256, "task": m.task, "path": self.cfg.model,
                         "version": m.vitaledge_version, "created": m.created},
               "source": self.cfg.source, "dropped_samples": self.dropped_samples}
        if self.ota is not None:
            ctx["ota"] = self.ota.summary()
        return ctx

    def _refuse_slow_source(self) -> None:
        """A source slower than the model's windows is reported in the sinks, then refused."""
        model_fs = self.pipeline.primary.min_source_fs
        if not model_fs or self.source.fs >= float(model_fs):
            return
        msg = (f"source {self.source.name} is {self.source.fs:g} Hz, below the "
               f"{float(model_fs):g} Hz the model's windows are made at (manifest "
               "signal.window.fs): upsampling cannot restore it")
        self.writer.emit([event.sample_rate_mismatch(self.source.fs, float(model_fs), msg)])
        raise SignalError(msg)  # the sinks and the source are closed as the start fails

    def _make_queue(self) -> None:
        """The bounded queue between the threads and the flags the threads stop on."""
        self.watchdog = Watchdog()  # pings systemd from the worker loop ($WATCHDOG_USEC)
        self.q: queue.Queue[QueueItem] = queue.Queue(maxsize=self.cfg.queue_chunks)
        self.stop = threading.Event()
        self.source_done = threading.Event()
        self.lock = threading.Lock()  # the pipeline and models, swapped by a reload
        self.failure: str | None = None
        self.items_processed = 0  # queue items through the pipeline
        self.signal_errors = 0  # of them refused by a stage (signal_error events)

    def _make_metrics(self) -> None:
        """The /metrics registry (:class:`DaemonMetrics`; names and meanings:
        docs/metrics.md); ``reg`` is what the OTA updater registers its counter in."""
        since_beat = None
        if self.beat_watch is not None:
            def since_beat() -> float:
                return self.beat_watch.seconds_since_last_beat(self.pipeline.samples_in)
        self.meters = DaemonMetrics(self.q.qsize, since_beat, StreamCollector(self))
        self.reg = self.meters.reg
        self.meters.serving(self._models)

    def _make_reader(self) -> None:
        """The source thread's loop: a live source drops on a full queue (counted in
        ``drops`` and the metrics), a replay waits."""
        self.reader = SourceReader(self.source, self.q, self.live, self.stop,
                                   self.source_done, self.drops, self.meters.dropped.inc)

    def _start_api(self, token: str) -> None:
        if self.cfg.api_port:
            from vitaledge.device.stream.api import api_bind_error, make_server, serve_in_thread

            try:  # a failure: nothing written yet, the sink files are as they were
                api = make_server(self.cfg.api_host, self.cfg.api_port, self.health,
                                  self.metrics, self.events_since, token=token,
                                  rate=self.cfg.api_rate)
            except OSError as exc:
                raise ValueError(api_bind_error(self.cfg.api_host, self.cfg.api_port,
                                                exc)) from exc
            serve_in_thread(api)
            self.api = api  # serving: shut down by run(), or by a start that fails after

    def _log_ready(self) -> None:
        self.ready_s = time.monotonic() - self.t_start
        log.info(json.dumps({"event": "ready", "seconds": round(self.ready_s, 3),
                             "rss_mb": round(rss_mb(), 1), "model": self.cfg.model,
                             "source": self.source.name, "fs": self.source.fs,
                             "api": f"{self.cfg.api_host}:{self.api.server_address[1]}"
                             if self.api else None}))

    # -- what the over-the-air updater uses (device/stream/ota.py Host) --------------------
    def load_model(self, path: str | None = None) -> Model:
        """``path`` (the configured model without one) loaded as the daemon loads every
        model: the configured backend, delegate and verify key."""
        return Model(path or self.cfg.model, backend=self.cfg.backend, threads=self.cfg.threads,
                     delegate=self.cfg.delegate, fallback_cpu=self.cfg.fallback == "cpu",
                     verify_key=self.cfg.verify_key or None)

    def serving(self) -> Model:
        """The main model serving now."""
        return self.model

    def swap_model(self, model: Model) -> None:
        """Put ``model`` in the running pipeline in place of the main model (the swap of a
        reload); a model that does not fit raises SignalError and changes nothing."""
        self._swap_in(model, None)

    def probe(self) -> dict:
        """Counters a probation watches: queue items processed, of them refused as bad
        signal, the failure that ended the run, a stop requested, signal-quality seconds,
        the last event's ``seq``."""
        return {"items": self.items_processed, "signal_errors": self.signal_errors,
                "failure": self.failure, "stopping": self.stop.is_set(),
                "quality": self.quality_summary(), "last_seq": self.writer.seq}

    def announce(self) -> None:
        """The MQTT sinks publish their retained birth message again (the model changed)."""
        for s in self.writer.sinks:
            s.announce()

    # -- API callbacks -------------------------------------------------------------------
    def degraded(self) -> list[str]:
        """Why the daemon is not fully working: a live source silent (or every sample
        refused) or at another rate than configured, a pause without beats, failing sinks."""
        watch = self.source_watch
        why = ["no_signal"] * watch.silent + ["rate_mismatch"] * watch.rate_bad
        why += ["no_beats"] if self.beat_watch is not None and self.beat_watch.active else []
        why += [f"sink {s.name}: {s.error}" for s in self.writer.sinks if s.failing]
        for s in self.writer.sinks:  # a sink that writes but cannot deliver (a broker away)
            said = s.trouble()
            if said:
                why.append(f"sink {s.name}: {said}")
        return why

    def health(self) -> dict:
        degraded = self.degraded()
        status = ("failed" if self.failure else "stopping" if self.stop.is_set()
                  else "degraded" if degraded else "ok")
        return {"status": status, "degraded": degraded, "error": self.failure,
                "uptime_s": round(time.monotonic() - self.t_start, 1),
                "model": self.cfg.model, "model_sha256": self.model.manifest.sha256,
                "source": self.source.name, "fs": self.source.fs,
                "samples_in": self.pipeline.samples_in,
                "events_this_run": dict(self.writer.emitted),
                "dropped_samples": self.dropped_samples, "last_seq": self.writer.seq,
                "rhythm": self.pipeline.stats.summary(),
                "stages": self.pipeline.summary(), "source_stats": self.source.stats(),
                **({"ota": self.ota.summary()} if self.ota is not None else {})}

    def metrics(self) -> bytes:
        return self.meters.scrape()

    def events_since(self, since: int, limit: int) -> list[dict]:
        return self.writer.since(since, limit)

    # -- the worker thread (the source thread: :mod:`.source_reader`) --------------------
    def _work(self) -> None:
        """The worker thread: any exception it did not expect ends the run as a failure."""
        try:
            self._work_loop()
        except Exception as exc:
            self.failure = f"pipeline_error: {type(exc).__name__}: {exc}"
            log.error(json.dumps({"event": "pipeline_error", "error": self.failure}))
            self.stop.set()
            self.source.stop()
            self.source_done.set()
            try:
                self.writer.emit([event.failure("pipeline_error", self._time(self.pipeline),
                                                f"{type(exc).__name__}: {exc}")])
            except Exception:  # noqa: BLE001 - the failure is already recorded
                log.exception("could not report the pipeline error")

    def _work_loop(self) -> None:
        while True:
            self.watchdog.kick()  # systemd's WatchdogSec: a hung pipeline stops the pings
            if self.writer.abandoned.is_set():
                return
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
                events = self._handle(pipe, item)
            except SignalError as exc:
                events = [event.signal_error(str(exc))]
                self.signal_errors += 1
            self.items_processed += 1
            self.meters.latency.observe(time.perf_counter() - t)
            self.writer.emit(events)
        # drops that no later chunk got through to report (the reader may still be
        # inside a blocking read after a stop request; it cannot add drops then)
        self.reader.exited.wait(timeout=1.0)
        if self.writer.abandoned.is_set():
            return
        self.writer.emit(self._handle(self.pipeline, EndOfStream()))
        if self.reader.error:
            self.failure = f"source_error: {self.reader.error}"
            self.writer.emit([event.failure("source_error", self._time(self.pipeline),
                                            self.reader.error)])

    def _handle(self, pipe: FanOut, item: QueueItem) -> list[dict]:
        """The events one queue item makes."""
        match item:
            case Samples(chunk):
                self.meters.samples.inc(len(chunk))
                return self._samples(pipe, chunk)
            case WireGap(gap):
                return self._source_gap(pipe, gap)
            case FaceItem(frame):
                return pipe.face(frame)
            case DeviceStatus(info):
                return [event.device_status(info, self._time(pipe))]
            case Dropped(missing):
                events = self._gap(pipe, missing)
                return [*events, event.gap(self._time(pipe), missing)]
            case EndOfStream():
                return self._end_of_stream(pipe)
        raise TypeError(f"not a queue item: {item!r}")

    def _end_of_stream(self, pipe: FanOut) -> list[dict]:
        """Drops no later chunk got through to report, then what the stages still hold,
        with a pause up to the end of the stream reported (the beat check decides the
        last seconds' beats only here)."""
        n = self.drops.take_missing()
        events = self._handle(pipe, Dropped(n)) if n else []
        return events + self._watched(pipe.flush(), pipe.decided_samples)

    @staticmethod
    def _time(pipe: FanOut) -> float:
        """Where the stream is, in seconds: the time of a status event."""
        return round(pipe.samples_in / pipe.fs, 3)

    def _check_silence(self) -> None:
        """A live source that stops sending is reported once (:mod:`.source_watch`)."""
        self.writer.emit(self.source_watch.check_silence(time.monotonic(),
                                                         self._time(self.pipeline)))

    def _samples(self, pipe: FanOut, x) -> list[dict]:
        """Samples through the signal monitor: faulty stretches become gaps (never
        classified) with a status event where a fault starts and where it ends."""
        events = self.source_watch.arrived(len(x), self.dropped_samples, time.monotonic(),
                                           self._time(pipe))
        if self.monitor is None or getattr(x, "ndim", 1) != 1:
            return events + self._present(pipe, x)
        for part in self.monitor.split(x):
            if isinstance(part, Fault):
                events += self._gap(pipe, part.n)
            elif isinstance(part, Change):
                events.append(event.signal_change(part.kind, self._time(pipe), part.after,
                                                  part.samples))
            else:
                events += self._present(pipe, part)
        return events

    def _present(self, pipe: FanOut, x) -> list[dict]:
        """Present signal through the stages, and a pause without beats reported."""
        return self._watched(pipe.process(x), pipe.decided_samples)

    def _watched(self, events: list[dict], decided: int) -> list[dict]:
        """The stages' ``events`` with the pause watch's status events among them, its
        count running to ``decided``."""
        return events if self.beat_watch is None else self.beat_watch.update(events, decided)

    def _gap(self, pipe: FanOut, n_missing: int) -> list[dict]:
        """A hole of ``n_missing`` samples: the stages give what they still hold (the beat
        check up to 4 s of beats), seen by the pause watch up to where the signal stopped;
        then the watch counts again after the hole."""
        end = pipe.samples_in
        events = self._watched(pipe.gap(n_missing), end)
        if self.beat_watch is not None:
            self.beat_watch.gap(pipe.samples_in)
        return events

    def _source_gap(self, pipe: FanOut, gap: Gap) -> list[dict]:
        """Samples lost on the wire: a short hole is filled (the time axis and the
        detector's thresholds survive) and reported; a long one restarts detection."""
        status = event.wire_gap(gap.reason, self._time(pipe), gap.missing, gap.fill is not None)
        if gap.fill is not None:
            self.meters.samples.inc(len(gap.fill))
            return [status, *self._present(pipe, gap.fill)]
        return [*self._gap(pipe, gap.missing), status]

    def reload(self) -> bool:
        """Hot reload: load the artifact again; swap only if it loads and fits."""
        try:
            model = self.load_model()
            emotion = self.load_model(self.cfg.emotion_model) if self.cfg.emotion_model \
                else None
            self._swap_in(model, emotion)
        except (ManifestError, ModelLoadError, SignalError, ValueError, OSError) as exc:
            self.meters.reloads.labels("refused").inc()
            log.error(json.dumps({"event": "reload_refused", "error": str(exc)}))
            return False
        self.meters.reloads.labels("ok").inc()
        log.info(json.dumps({"event": "reloaded", "sha256": model.manifest.sha256}))
        return True

    def _swap_in(self, model: Model, emotion: Model | None) -> None:
        """The swap: ``model`` (and ``emotion``) into the running stages under the lock;
        the stream goes on and the next window is classified by them."""
        with self.lock:
            self.pipeline.swap_model(model)
            if emotion is not None:
                self.pipeline.swap_model(emotion)
            self.model = model
            self._models = [model, *([emotion] if emotion is not None else self._models[1:])]
            self.meters.serving(self._models)

    def position(self) -> dict:
        """Where the stream is, for a progress line: samples processed (and the source's
        length when it is a recording), the rate, events of this run per type."""
        return {"samples": self.pipeline.samples_in, "fs": self.source.fs,
                "length": self.source.length,
                "events": dict(self.writer.emitted), "source": self.source.name}

    def run(self, install_signals: bool = True,
            progress: typing.Callable[[dict], None] | None = None) -> dict:
        """Stream until the source ends or a stop is requested; return the summary.
        ``progress`` is called with :meth:`position` about five times a second."""
        if install_signals:
            signal.signal(signal.SIGTERM, lambda *_: self.request_stop())
            signal.signal(signal.SIGINT, lambda *_: self.request_stop())
            signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=self.reload,
                                                                      daemon=True).start())
        reader = threading.Thread(target=self.reader.run, name="source", daemon=True)
        # a daemon thread: a worker abandoned after STOP_GRACE_S does not hold the exit
        worker = threading.Thread(target=self._work, name="pipeline", daemon=True)
        t0 = time.perf_counter()
        # everything is loaded and open: ready (before the worker's first WATCHDOG=1)
        notify(f"READY=1\nSTATUS=serving {self.source.name}")
        reader.start()
        worker.start()
        stop_by: float | None = None
        while worker.is_alive():
            worker.join(timeout=0.1)
            if progress is not None:
                progress(self.position())
            if self.stop.is_set() and self.failure is None:
                stop_by = stop_by or time.monotonic() + STOP_GRACE_S
                if time.monotonic() > stop_by:
                    break
        abandoned = 0
        if worker.is_alive():  # busy past the grace time: leave it, write nothing more
            self.writer.abandon(0.5)  # once a batch being written is done
            abandoned = self.q.qsize() + 1
            log.warning(json.dumps({"event": "worker_abandoned", "after_s": STOP_GRACE_S,
                                    "chunks": abandoned}))
        wall = time.perf_counter() - t0
        if self.ota is not None:  # a probation going on ends (rolled back) before the sinks
            self.ota.close()
        if self.store is not None:
            self.store.unlock()
        lost = self.writer.close()
        if self.failure is None and any(st["unwritten"] for st in lost.values()):
            self.failure = "; ".join(f"sink {n}: {st['unwritten']} events never written "
                                     f"({st['error']})" for n, st in lost.items()
                                     if st["unwritten"])
        if self.api is not None:
            self.api.shutdown()
        summary = {"event": "stopped", "samples": self.pipeline.samples_in,
                   # asked to stop (a signal), not the source's end
                   "stop_requested": self.stop.is_set(),
                   "signal_seconds": round(self.pipeline.samples_in / self.source.fs, 1),
                   "wall_seconds": round(wall, 3),
                   "realtime_factor": round(self.pipeline.samples_in / self.source.fs
                                            / wall, 1) if wall > 0 else None,
                   "events": sum(self.writer.emitted.values()),
                   "last_seq": self.writer.seq, "events_this_run": dict(self.writer.emitted),
                   "sinks": [str(s.path) for s in self.writer.sinks],
                   "sink_delivery": self.writer.delivery(),
                   "dropped_chunks": self.dropped_chunks,
                   "dropped_samples": self.dropped_samples,
                   "dropped_edge_beats": self.pipeline.dropped_edge,
                   "signal_fault_samples": self.monitor.counts if self.monitor else None,
                   "signal_quality": self.quality_summary(),
                   "source_stats": self.source.stats(),
                   "rss_mb": round(rss_mb(), 1), "ready_seconds": round(self.ready_s, 3),
                   "rhythm": self.pipeline.stats.summary(),
                   "stages": self.pipeline.summary(),
                   "run": self.writer.run_id, "abandoned_chunks": abandoned, "sink_errors": lost,
                   "error": self.failure}
        log.info(json.dumps({k: summary[k] for k in ("event", "samples", "events",
                                                     "wall_seconds")}))
        log.debug(json.dumps(summary))  # whole: `device run --json FILE` writes it
        if self.failure:
            raise DaemonFailure(self.failure, summary)
        return summary

    @property
    def dropped_chunks(self) -> int:
        """Chunks of a live source dropped on a full queue."""
        return self.drops.chunks

    @property
    def dropped_samples(self) -> int:
        """The samples those chunks held."""
        return self.drops.samples

    def quality_summary(self) -> dict | None:
        """The beat stage's signal-quality figures (None for other stages)."""
        return self.pipeline.primary.quality_summary()

    def request_stop(self) -> None:
        """Graceful stop: no more input; what is queued is processed and flushed, for
        STOP_GRACE_S at most (then :meth:`run` returns without the worker)."""
        log.info(json.dumps({"event": "stopping"}))
        notify("STOPPING=1")
        self.stop.set()
        self.source.stop()
        self.source_done.set()


def check_task(option: str, path: str, model: Model, allowed: tuple[str, ...]) -> None:
    """Refuse a model whose manifest task ``option`` does not take."""
    task = model.manifest.task
    if task not in allowed:
        raise ValueError(f"{option}: {path} is a model of task {task!r}; tasks allowed here: "
                         f"{', '.join(allowed)}" + (" (an emotion model runs beside a beat "
                                                    "model)" if option.startswith("--model")
                                                    and allowed == ("beat",) else ""))
