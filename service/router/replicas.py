"""Replica sets: which replicas of a shard may take a request, in what order, and when to
hedge. Readiness comes from each replica's own /readyz, probed in the background; a replica
that fails requests is taken out at once and comes back when a probe finds it ready."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

log = logging.getLogger("linr.router")

# Latencies kept per shard for the hedge delay, and the least before the percentile is used.
_LATENCY_WINDOW = 512
_LATENCY_MIN_SAMPLES = 32
# Hedge after this percentile of the shard's recent latencies (a request slower than 99 in
# 100 is more likely on a sick replica than a slow query), never sooner than _HEDGE_FLOOR_S:
# on the 2-core CI machine a healthy replica's p99 jitters up to ~20 ms.
_HEDGE_PERCENTILE = 99.0
_HEDGE_FLOOR_S = 0.02


@dataclass
class Replica:
    """`ready`: its last answer to /readyz was 200 (a 503, catching up, clears it: its
    results would be stale). `healthy`: nothing has failed on it since. A replica that is
    ready but not healthy (refused a connection, timed out) is asked only when no healthy
    one is left: a dead one refuses at once, and a busy one is better than none."""

    url: str
    ready: bool = False
    healthy: bool = False
    last_error: str | None = None

    @property
    def usable(self) -> bool:
        return self.ready and self.healthy

    def failed(self, reason: str) -> None:
        if self.healthy:
            log.warning("replica %s set aside: %s", self.url, reason)
        self.healthy = False
        self.last_error = reason


@dataclass
class Shard:
    index: int
    replicas: list[Replica]
    # Learnt from a ready replica's /v1/stats: the Kafka partitions it reads (None: not
    # known, or no Kafka), the dimension and id kind of its index.
    partitions: set[int] | None = None
    stats: dict[str, Any] | None = None
    _latencies: deque[float] = field(default_factory=lambda: deque(maxlen=_LATENCY_WINDOW))
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def name(self) -> str:
        return f"shard {self.index} ({','.join(r.url for r in self.replicas)})"

    def candidates(self) -> list[Replica]:
        """The replicas to try, in order: the usable ones, rotated so that requests spread
        over them, then the ready ones set aside since their last probe."""
        usable = [r for r in self.replicas if r.usable]
        start = next(self._turn) % len(usable) if usable else 0
        aside = [r for r in self.replicas if r.ready and not r.healthy]
        return usable[start:] + usable[:start] + aside

    @property
    def available(self) -> bool:
        return any(r.usable for r in self.replicas)

    def observe(self, seconds: float) -> None:
        self._latencies.append(seconds)

    def hedge_delay(self, remaining_s: float, untried: int) -> float:
        """How long to wait on an attempt before asking the next replica as well: the
        attempt's share of what is left of the deadline, or sooner, once the shard's
        latency percentile is known."""
        share = remaining_s / (untried + 1)
        if len(self._latencies) < _LATENCY_MIN_SAMPLES:
            return share
        p = float(np.percentile(np.fromiter(self._latencies, float), _HEDGE_PERCENTILE))
        return min(share, max(_HEDGE_FLOOR_S, p))


def make_shards(urls: list[list[str]]) -> list[Shard]:
    return [Shard(i, [Replica(u) for u in replicas]) for i, replicas in enumerate(urls)]


class Prober:
    """Probes every replica's /readyz every `every_s`; learns each shard's partitions from
    /v1/stats of a ready replica."""

    def __init__(
        self,
        shards: list[Shard],
        client: httpx.AsyncClient,
        every_s: float,
        timeout_s: float,
    ) -> None:
        self.shards, self.client = shards, client
        self.every_s, self.timeout_s = every_s, timeout_s
        self._task: asyncio.Task[None] | None = None

    async def probe_once(self) -> None:
        await asyncio.gather(*(self._probe(s, r) for s in self.shards for r in s.replicas))

    async def _probe(self, shard: Shard, r: Replica) -> None:
        try:
            resp = await self.client.get(r.url + "/readyz", timeout=self.timeout_s)
        except httpx.HTTPError as e:
            # No answer: set aside, but still ready (a timeout on a busy machine is no reason
            # to think its index stale).
            r.failed(f"/readyz: {type(e).__name__}: {e}")
            return
        ready = resp.status_code == 200
        if ready != r.usable:
            what = "ready" if ready else f"not ready (/readyz {resp.status_code})"
            log.info("replica %s of shard %d %s", r.url, shard.index, what)
        r.ready = r.healthy = ready
        if not ready:
            r.last_error = f"/readyz {resp.status_code}"
        elif shard.stats is None or shard.stats.get("id_kind") is None:
            # Again while the index is empty: its id kind comes with the first item.
            await self._learn(shard, r)

    async def _learn(self, shard: Shard, r: Replica) -> None:
        try:
            resp = await self.client.get(r.url + "/v1/stats", timeout=self.timeout_s * 4)
            resp.raise_for_status()
            stats = resp.json()
        except (httpx.HTTPError, ValueError):
            return
        offsets = (stats.get("ingest") or {}).get("offsets")
        shard.partitions = {int(p) for p in offsets} if offsets else None
        shard.stats = stats

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="linr-router-prober")

    async def _loop(self) -> None:
        while True:
            t0 = time.monotonic()
            try:
                await self.probe_once()
            except Exception:  # noqa: BLE001 - a probe bug must not stop probing
                log.exception("probe round failed")
            await asyncio.sleep(max(self.every_s - (time.monotonic() - t0), 0.01))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
