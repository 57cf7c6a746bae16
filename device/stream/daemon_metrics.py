"""The daemon's Prometheus metrics (names and meanings: docs/metrics.md): the counters,
histogram and gauges the daemon updates as it runs (:class:`DaemonMetrics`), and the
counters it keeps elsewhere, read at scrape time (:class:`StreamCollector`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class DaemonMetrics:
    """One daemon's registry (``reg``) and what it updates: ``samples``, ``beats`` (per
    class), ``emotions`` (per task and class), ``dropped`` chunks, model ``reloads`` (per
    result), pipeline ``latency``, events ``written`` and ``sink_errors`` (per sink), and
    the ``model`` serving (:meth:`serving`). ``queue_size`` and ``since_last_beat`` (None
    without a beat watch) are read at scrape time; ``collector`` is registered too."""

    def __init__(self, queue_size: Callable[[], int],
                 since_last_beat: Callable[[], float] | None, collector: Any):
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            ProcessCollector,
            disable_created_metrics,
        )

        disable_created_metrics()  # no ``*_created`` series beside every counter
        self.reg = reg = CollectorRegistry()
        self.samples = Counter("vitaledge_samples", "Samples received", registry=reg)
        self.beats = Counter("vitaledge_beats", "Beats classified", ["cls"], registry=reg)
        self.emotions = Counter("vitaledge_emotion_estimates", "Emotion estimates",
                                ["task", "cls"], registry=reg)
        self.dropped = Counter("vitaledge_dropped_chunks", "Chunks dropped on a full queue",
                               registry=reg)
        self.reloads = Counter("vitaledge_model_reloads", "Model reloads", ["result"],
                               registry=reg)
        # the whole pipeline per queue item, not the model alone (was
        # vitaledge_inference_seconds until 0.x; renamed for what it measures)
        self.latency = Histogram("vitaledge_pipeline_seconds",
                                 "Wall time per queue item through the pipeline: signal "
                                 "monitor, filter, R-peak detection, windows and model "
                                 "inference of every stage",
                                 buckets=(1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1),
                                 registry=reg)
        self.queue = Gauge("vitaledge_queue_chunks", "Chunks waiting", registry=reg)
        self.queue.set_function(queue_size)
        self.written = Counter("vitaledge_events_written", "Events written, per sink",
                               ["sink"], registry=reg)
        self.sink_errors = Counter("vitaledge_sink_errors", "Failed writes per sink (the "
                                   "sink is retried with backoff)", ["sink"], registry=reg)
        if since_last_beat is not None:
            Gauge("vitaledge_seconds_since_last_beat", "Stream seconds since the last beat "
                  "event (since the start before the first)",
                  registry=reg).set_function(since_last_beat)
        self.model = Gauge("vitaledge_model_info", "The model(s) serving (value 1)",
                           ["role", "task", "sha256"], registry=reg)
        ProcessCollector(registry=reg)  # process_resident_memory_bytes, CPU, fds
        reg.register(collector)

    def serving(self, models: list) -> None:
        """``vitaledge_model_info``: the main model and, when there is one, the emotion
        model, by task and sha256 (after every swap)."""
        self.model.clear()
        for role, m in zip(("main", "emotion"), models, strict=False):
            self.model.labels(role, m.manifest.task, m.manifest.sha256).set(1)

    def scrape(self) -> bytes:
        """The registry in Prometheus's text format (the API's ``/metrics``)."""
        from prometheus_client import generate_latest

        return generate_latest(self.reg)


class StreamCollector:
    """Counters the daemon keeps elsewhere, read at scrape time from ``daemon`` (its
    ``dropped_samples``, ``monitor``, ``source`` and ``quality_summary()``): samples
    dropped on a full queue, samples cut out by the signal monitor per fault, the framed
    protocol's errors per kind (serial and frames+tcp sources), and with gating the
    stream seconds and beats per signal-quality state."""

    PROTOCOL_ERRORS = {"crc_errors": "crc", "header_errors": "header",
                       "truncated": "truncated", "unknown_frames": "unknown_frame"}

    def __init__(self, daemon: Any):
        self.d = daemon

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        dropped = CounterMetricFamily("vitaledge_dropped_samples",
                                      "Samples dropped on a full queue (live sources)")
        dropped.add_metric([], self.d.dropped_samples)
        yield dropped
        faults = CounterMetricFamily("vitaledge_signal_fault_samples",
                                     "Samples cut out before the pipeline: non-finite, "
                                     "saturated, lead off", labels=["kind"])
        for kind, n in ((self.d.monitor.counts if self.d.monitor else None) or {}).items():
            faults.add_metric([kind], n)
        yield faults
        stats = self.d.source.stats() or {}
        errors = CounterMetricFamily("vitaledge_protocol_errors",
                                     "Framed protocol errors from the sensor board link",
                                     labels=["kind"])
        for key, kind in self.PROTOCOL_ERRORS.items():
            if key in stats:
                errors.add_metric([kind], stats[key])
        yield errors
        q = self.d.quality_summary()
        if q is not None and q["gating"]:
            secs = CounterMetricFamily("vitaledge_signal_quality_seconds",
                                       "Stream seconds judged per signal-quality state",
                                       labels=["state"])
            for state in ("good", "doubtful", "unreadable"):
                secs.add_metric([state], q[f"{state}_s"])
            yield secs
            beats = CounterMetricFamily("vitaledge_quality_beats",
                                        "Beats flagged doubtful or gated (unreadable: no "
                                        "event)", labels=["kind"])
            beats.add_metric(["flagged"], q["flagged_beats"])
            beats.add_metric(["gated"], q["gated_beats"])
            yield beats
        if q is not None and "checked_out_beats" in q:
            checked = CounterMetricFamily("vitaledge_beat_check_dropped",
                                          "Detections the beat check dropped as noise (no "
                                          "event)")
            checked.add_metric([], q["checked_out_beats"])
            yield checked
            added = CounterMetricFamily("vitaledge_beat_check_added",
                                        "Beats the beat check added where the detector had "
                                        "none (the network's confident R peaks)")
            added.add_metric([], q.get("added_beats", 0))
            yield added
        if q is not None and q.get("beat_check"):
            adding = GaugeMetricFamily("vitaledge_beat_check_adding",
                                       "1 when the beat check adds beats on this stream's "
                                       "lead (one its network was trained on), else 0",
                                       labels=["lead"])
            adding.add_metric([q["beat_check"]["lead"]], int(q["beat_check"]["adds"]))
            yield adding
