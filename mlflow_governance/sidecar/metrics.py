"""Prometheus metrics of the sidecar, made with prometheus_client (never by hand).

Under gunicorn every worker is a process of its own, so the metrics use prometheus_client's
multiprocess mode: ``mlgov serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory
before gunicorn starts, each worker writes its values there, ``GET /metrics`` (answered by any
worker) aggregates all of them, and the master marks a worker's files dead when it exits (the
``child_exit`` hook). Without that variable (an app made in-process, e.g. in a test) the values
live in this process only.

Metrics are made when a `Metrics` is (in `create_app`, in the worker), not at import: in
multiprocess mode making one creates its file.
"""

from __future__ import annotations

import os
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class Metrics:
    """The sidecar's counters, gauges and latency histogram, with cached label children."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("mlgov_sidecar_requests", "HTTP requests answered, by endpoint and status code",
                                ["endpoint", "status"], registry=r)
        self.refusals = Counter("mlgov_sidecar_refusals", "Scoring requests refused, by reason (governance, "
                                "bad body, registry unavailable...)", ["reason"], registry=r)
        self.latency = Histogram("mlgov_sidecar_request_seconds", "Time to answer a request, by endpoint",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.rows_scored = Counter("mlgov_sidecar_rows_scored", "Rows scored", registry=r)
        self.rows_logged = Counter("mlgov_sidecar_rows_logged", "Scored rows stored in the payload table",
                                   registry=r)
        self.rows_explained = Counter("mlgov_sidecar_rows_explained", "Rows explained (POST /explain)", registry=r)
        self.feedback = Counter("mlgov_sidecar_feedback_labels", "Feedback labels stored", registry=r)
        self.spool_rows = Gauge("mlgov_sidecar_spool_rows", "Rows waiting in the spool for the payload database",
                                registry=r, multiprocess_mode="livesum")
        self.serving = Gauge("mlgov_sidecar_serving", "1 while the gate lets the sidecar score, 0 while it refuses",
                             registry=r, multiprocess_mode="livemin")
        self.served_version = Gauge("mlgov_sidecar_served_version", "The model version the gate serves (0: none)",
                                    registry=r, multiprocess_mode="livemax")
        self.monitor_value = Gauge("mlgov_sidecar_monitor_value", "Last production monitor figure of the served "
                                   "version", ["figure"], registry=r, multiprocess_mode="mostrecent")
        self.monitor_breached = Gauge("mlgov_sidecar_monitor_breached", "1 when the last evaluation breached",
                                      registry=r, multiprocess_mode="mostrecent")
        self.batch_requests = Histogram("mlgov_sidecar_predict_requests", "Requests scored by one predict call "
                                        "(micro-batching)", buckets=BATCH_BUCKETS, registry=r)
        self._children: dict[tuple[str, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric._name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def answered(self, endpoint: str, status: int, seconds: float) -> None:
        self._child(self.requests, endpoint, str(status)).inc()
        self._child(self.latency, endpoint).observe(seconds)

    def refused(self, reason: str) -> None:
        self._child(self.refusals, reason).inc()

    def evaluation(self, row: dict[str, Any] | None) -> None:
        """The last monitor figures (from the newest evaluation row) as gauges."""
        if not row:
            return
        for key, figure in (row.get("figures") or {}).items():
            value = figure.get("value") if isinstance(figure, dict) else None
            if isinstance(value, (int, float)):
                self._child(self.monitor_value, str(key)).set(float(value))
        self.monitor_breached.set(1.0 if str(row.get("verdict", "")).lower() == "breach" else 0.0)

    def render(self) -> tuple[bytes, str]:
        """The exposition text of every worker (multiprocess) or of this process, and its type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if multiprocess():
            from prometheus_client import multiprocess as mp

            registry = CollectorRegistry()
            mp.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def mark_dead(pid: int) -> None:
    """Forget a stopped worker's live gauges (gunicorn's ``child_exit`` hook, in the master)."""
    if multiprocess():
        from prometheus_client import multiprocess as mp

        mp.mark_process_dead(pid)
