"""The router's metrics: the service's HTTP request metrics (service.metrics), plus what it
saw of each shard: latency by answer, failures by replica and reason, hedges, and the
readiness of every replica (read at scrape time)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.metrics import _LATENCY_BUCKETS, Metrics
from service.router.replicas import Shard


class RouterMetrics(Metrics):
    def __init__(self) -> None:
        super().__init__()
        self.shard_seconds = Histogram(
            "linr_router_shard_request_duration_seconds",
            "Time of one request to a shard replica, by shard and status of its answer.",
            ["shard", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.shard_failures = Counter(
            "linr_router_shard_failures",
            "Requests to a replica that failed (transport error or retryable status).",
            ["shard", "replica", "reason"],
            registry=self.registry,
        )
        self.hedges = Counter(
            "linr_router_hedges",
            "Requests also sent to another replica because the first was slow.",
            ["shard"],
            registry=self.registry,
        )
        self.unavailable = Counter(
            "linr_router_shard_unavailable",
            "Requests that no replica of a shard answered.",
            ["shard"],
            registry=self.registry,
        )

    def shard_latency(self, shard: int, status: int, seconds: float) -> None:
        self.shard_seconds.labels(str(shard), str(status)).observe(seconds)

    def shard_failed(self, shard: int, replica: str, reason: str) -> None:
        self.shard_failures.labels(str(shard), replica, reason).inc()

    def hedged(self, shard: int) -> None:
        self.hedges.labels(str(shard)).inc()

    def add_shards(self, shards: list[Shard]) -> None:
        self.registry.register(_ReplicaCollector(shards))


class _ReplicaCollector(Collector):
    def __init__(self, shards: list[Shard]) -> None:
        self.shards = shards

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        ready = GaugeMetricFamily(
            "linr_router_replica_ready",
            "1 when the replica is taking requests (ready and not failing).",
            labels=["shard", "replica"],
        )
        for s in self.shards:
            for r in s.replicas:
                ready.add_metric([str(s.index), r.url], 1.0 if r.usable else 0.0)
        yield ready
        yield GaugeMetricFamily(
            "linr_ready",
            "1 when /readyz answers 200.",
            1.0 if all(s.available for s in self.shards) else 0.0,
        )
