"""Concurrent searches for one shard travel together: single-vector searches that wait
for the same shard go to it as one /v1/search/batch, which the shard answers with one scan
anyway (its micro-batcher, docs/service.md). This spares the router an HTTP request per
search per shard, the cost that dominates at concurrency (BENCHMARKS.md, "Router").

What waits is batched behind what is in flight: at most one batch per usable replica is
out at a time, and every search that arrives meanwhile joins the next one. Each search
keeps its own deadline; a batch runs until the latest of them. A batch that a shard
refuses (one bad query fails it whole) is sent again query by query, so each search gets
its own answer or error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from linr.limits import MAX_BATCH_QUERIES
from service.router.fanout import Answer, FanOut
from service.router.replicas import Shard

_Waiting = tuple[dict[str, Any], float, "asyncio.Future[Answer]"]


class Coalescer:
    def __init__(self, fanout: FanOut, shard: Shard) -> None:
        self.fanout, self.shard = fanout, shard
        self._waiting: list[_Waiting] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def search(self, body: dict[str, Any], deadline: float) -> Answer:
        fut: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append((body, deadline, fut))
        self._pump()
        try:
            return await asyncio.wait_for(
                asyncio.shield(fut), max(deadline - time.monotonic(), 0.0)
            )
        except asyncio.TimeoutError:
            return Answer(self.shard, None, error="no answer within the deadline")

    def _pump(self) -> None:
        limit = max(1, sum(r.usable for r in self.shard.replicas))
        while self._waiting and self._in_flight < limit:
            batch = self._waiting[:MAX_BATCH_QUERIES]
            del self._waiting[:MAX_BATCH_QUERIES]
            self._in_flight += 1
            task = asyncio.create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[_Waiting]) -> None:
        released = False

        def release() -> None:  # the next batch may go once this one's request is back
            nonlocal released
            if not released:
                released = True
                self._in_flight -= 1
                self._pump()

        try:
            answers = await self._ask(batch, release)
            for (_, _, fut), answer in zip(batch, answers):
                if not fut.done():
                    fut.set_result(answer)
        except BaseException as e:  # noqa: BLE001 - handed to every waiting search
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
            if not isinstance(e, Exception):
                raise
        finally:
            release()

    async def _ask(self, batch: list[_Waiting], release: Callable[[], None]) -> list[Answer]:
        ask, shard = self.fanout.ask, self.shard
        if len(batch) == 1:
            body, deadline, _ = batch[0]
            return [await ask(shard, "POST", "/v1/search", body, deadline)]
        deadline = max(d for _, d, _ in batch)
        queries = {"queries": [body for body, _, _ in batch]}
        a = await ask(shard, "POST", "/v1/search/batch", queries, deadline)
        release()
        if a.ok:
            return [Answer(shard, a.status, res) for res in a.body["results"]]
        if a.status is None:
            return [a] * len(batch)
        # A bad query fails the batch whole: each on its own, beside the next batches.
        singles = (ask(shard, "POST", "/v1/search", b, d) for b, d, _ in batch)
        return list(await asyncio.gather(*singles))
