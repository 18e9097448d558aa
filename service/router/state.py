"""What a running router holds: the shards and their replicas, the HTTP client that asks
them, the prober, and the Kafka writer (with --kafka-bootstrap)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from service.errors import ApiError
from service.router.coalesce import Coalescer
from service.router.fanout import Answer, FanOut
from service.router.metrics import RouterMetrics
from service.router.replicas import Prober, Shard, make_shards
from service.router.settings import RouterSettings
from service.router.writes import KafkaWriter


class RouterState:
    def __init__(self, settings: RouterSettings, metrics: RouterMetrics) -> None:
        self.settings, self.metrics = settings, metrics
        self.shards: list[Shard] = make_shards(settings.shards)
        metrics.add_shards(self.shards)
        self.client: httpx.AsyncClient | None = None
        self.fanout: FanOut | None = None
        self.coalescers: list[Coalescer] = []
        self.prober: Prober | None = None
        self.writer: KafkaWriter | None = None

    async def start(self) -> None:
        limits = httpx.Limits(
            max_connections=self.settings.max_connections,
            max_keepalive_connections=self.settings.max_connections,
        )
        headers = {}
        if self.settings.api_key is not None:  # the shards take the router's key
            headers["authorization"] = f"Bearer {self.settings.api_key.get_secret_value()}"
        self.client = httpx.AsyncClient(
            limits=limits, headers=headers, timeout=self.settings.timeout_ms / 1e3
        )
        self.fanout = FanOut(self.client, self.metrics)
        self.coalescers = [Coalescer(self.fanout, s) for s in self.shards]
        if self.settings.kafka_bootstrap is not None:
            bootstrap, topic = self.settings.kafka_bootstrap, self.settings.topic
            self.writer = await asyncio.to_thread(KafkaWriter, bootstrap, topic)
        s = self.settings
        self.prober = Prober(self.shards, self.client, s.probe_every_s, s.probe_timeout_s)
        await self.prober.probe_once()
        self.prober.start()

    async def stop(self) -> None:
        if self.prober is not None:
            await self.prober.stop()
        if self.client is not None:
            await self.client.aclose()
        if self.writer is not None:
            await asyncio.to_thread(self.writer.close)

    # -- what the routes use ---------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return all(s.available for s in self.shards)

    def not_ready_reason(self) -> str:
        down = [s.name for s in self.shards if not s.available]
        return "no ready replica in " + "; ".join(down) if down else ""

    def deadline(self, timeout_ms: float | None) -> float:
        ms = self.settings.timeout_ms if timeout_ms is None else timeout_ms
        return time.monotonic() + ms / 1e3

    def stat(self, key: str) -> Any:
        """A figure of the shards' indexes that all share (dim, id_kind, metric), from the
        first shard that has reported it."""
        for s in self.shards:
            if s.stats is not None and s.stats.get(key) is not None:
                return s.stats[key]
        return None

    def owner(self, partition: int) -> Shard | None:
        for s in self.shards:
            if s.partitions is not None and partition in s.partitions:
                return s
        return None

    async def ask(self, shard: Shard, method: str, path: str, body: Any, deadline: float) -> Answer:
        assert self.fanout is not None
        answer = await self.fanout.ask(shard, method, path, body, deadline)
        if answer.status is None:
            self.metrics.unavailable.labels(str(shard.index)).inc()
        return answer

    async def search_all(self, bodies: list[dict[str, Any]], deadline: float) -> list[Answer]:
        """One search on every shard (`bodies[i]` for shard i), concurrent ones coalesced
        into batches (service/router/coalesce.py) unless they wait for `after`."""

        async def one(s: Shard, body: dict[str, Any]) -> Answer:
            if "after" in body or not self.settings.coalesce:
                return await self.ask(s, "POST", "/v1/search", body, deadline)
            answer = await self.coalescers[s.index].search(body, deadline)
            if answer.status is None:
                self.metrics.unavailable.labels(str(s.index)).inc()
            return answer

        return list(await asyncio.gather(*(one(s, b) for s, b in zip(self.shards, bodies))))

    async def ask_all(
        self, method: str, path: str, bodies: list[Any], deadline: float
    ) -> list[Answer]:
        return list(
            await asyncio.gather(
                *(self.ask(s, method, path, b, deadline) for s, b in zip(self.shards, bodies))
            )
        )


def unavailable(answers: list[Answer]) -> ApiError:
    """503 shard_unavailable naming every shard no replica answered for."""
    missing = [a for a in answers if a.status is None]
    names = "; ".join(f"{a.shard.name}: {a.error}" for a in missing)
    return ApiError(503, "shard_unavailable", f"no replica answered for {names}")


def passed_on(answer: Answer) -> ApiError:
    """A shard's own error answer (bad input, 404, 504), passed on as it is."""
    err = answer.body.get("error") if isinstance(answer.body, dict) else None
    if isinstance(err, dict) and "code" in err:
        return ApiError(int(answer.status or 502), str(err["code"]), str(err.get("message")))
    return ApiError(int(answer.status or 502), "shard_error", f"{answer.shard.name}: {answer.body}")
