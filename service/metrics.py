"""Prometheus metrics, one registry per app (so tests and several apps in a process don't clash).

Request metrics are recorded by a plain ASGI middleware (cheaper than BaseHTTPMiddleware);
index and ingest figures are read when /metrics is scraped, by a collector.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "linr_http_requests",
            "HTTP requests by endpoint, method and status.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "linr_http_request_duration_seconds",
            "HTTP request latency by endpoint, method and status.",
            ["endpoint", "method", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "linr_search_batch_queries",
            "Queries answered by one scan of the micro-batcher.",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "linr_search_batch_duration_seconds",
            "Time of one micro-batch on the worker (all its scans and look-ups).",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe_batch(self, queries: int, seconds: float) -> None:
        self.batch_size.observe(queries)
        self.batch_seconds.observe(seconds)

    def add_state(self, read: Callable[[], dict[str, Any]]) -> None:
        self.registry.register(_StateCollector(read))


class _StateCollector(Collector):
    """Gauges read at scrape time from the app state: index size, queue, ingest progress."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self._read = read

    def describe(self) -> list[Metric]:
        return []  # collected lazily; nothing to check for name clashes up front

    def collect(self) -> Iterator[Metric]:
        s = self._read()
        yield GaugeMetricFamily("linr_ready", "1 when /readyz answers 200.", s["ready"])
        yield GaugeMetricFamily(
            "linr_search_queue_depth", "Jobs waiting for the worker.", s["queue_depth"]
        )
        idx = s.get("index")
        if idx is not None:
            yield GaugeMetricFamily("linr_index_items", "Items in the index.", idx["count"])
            yield GaugeMetricFamily("linr_index_capacity", "Allocated rows.", idx["capacity"])
            yield GaugeMetricFamily(
                "linr_index_memory_bytes", "Bytes held by the index.", idx["memory_bytes"]
            )
        ing = s.get("ingest")
        if ing is not None:
            yield from _ingest_metrics(ing)


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _ingest_metrics(ing: dict[str, Any]) -> Iterator[Metric]:
    counts = ("applied", "ignored_stale", "dead_lettered", "errors", "outages", "rebuilds")
    for key in (*counts, "snapshot_errors"):
        v = _num(ing.get(key))
        if v is not None:
            yield GaugeMetricFamily(f"linr_ingest_{key}", f"Ingester count: {key}.", v)
    lag = ing.get("lag")
    lag_total = _num(lag) if not isinstance(lag, dict) else sum(float(x) for x in lag.values())
    if lag_total is not None:
        yield GaugeMetricFamily(
            "linr_ingest_lag_messages", "Messages behind the log end.", lag_total
        )
    fresh = ing.get("freshness_ms")
    if isinstance(fresh, dict):
        g = GaugeMetricFamily(
            "linr_ingest_freshness_ms", "Produce-to-searchable time.", labels=["quantile"]
        )
        for name, v in fresh.items():
            if _num(v) is not None:
                g.add_metric([str(name)], float(v))
        yield g


class MetricsMiddleware:
    """Counts and times every HTTP request, labelled by route template (not raw path, whose
    item ids would make unbounded label sets)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            labels = (endpoint, scope["method"], str(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - t)
