"""Asking a shard within a deadline: one replica first, the next one when it fails, or
when it is slower than its share of what is left (a hedge: both stay in flight and the first
answer wins). Asking every shard at once is a gather of those."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx

from service.router.metrics import RouterMetrics
from service.router.replicas import Replica, Shard

# Answers that say the request itself is wrong (or, 504, that the shard could not catch up
# with `after` in time): final, the same on every replica. Any other non-2xx (429, 5xx) and
# every transport error count against the replica, and the next one is asked.
_FINAL = frozenset(range(400, 429)) | frozenset(range(430, 500)) | {504}


@dataclass
class Answer:
    """A shard's answer: a final HTTP status with its JSON body; or, when `status` is None,
    no answer from any replica, `error` saying what each one did."""

    shard: Shard
    status: int | None
    body: Any = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class FanOut:
    def __init__(self, client: httpx.AsyncClient, metrics: RouterMetrics) -> None:
        self.client, self.metrics = client, metrics

    async def _attempt(
        self, shard: Shard, r: Replica, method: str, path: str, body: Any, deadline: float
    ) -> tuple[int | None, Any, str]:
        t0 = time.monotonic()
        try:
            resp = await self.client.request(
                method,
                r.url + path,
                json=body,
                timeout=max(deadline - t0, 0.001),
            )
        except httpx.HTTPError as e:
            reason = f"{r.url}: {type(e).__name__}"
            self.metrics.shard_failed(shard.index, r.url, type(e).__name__)
            r.failed(reason)
            return None, None, reason
        took = time.monotonic() - t0
        status = resp.status_code
        self.metrics.shard_latency(shard.index, status, took)
        if status < 300 or status in _FINAL:
            if status < 300:
                shard.observe(took)
            try:
                return status, resp.json(), ""
            except ValueError:
                reason = f"{r.url}: a {status} answer that is not JSON"
        else:
            reason = f"{r.url}: HTTP {status}"
        self.metrics.shard_failed(shard.index, r.url, f"http_{status}")
        r.failed(reason)
        return None, None, reason

    async def ask(self, shard: Shard, method: str, path: str, body: Any, deadline: float) -> Answer:
        """The shard's answer from the first of its replicas to give one before `deadline`
        (time.monotonic())."""
        order = shard.candidates()
        if not order:
            return Answer(shard, None, error="no replica is ready")
        errors: list[str] = []
        pending: set[asyncio.Task[tuple[int | None, Any, str]]] = set()
        tried = 0

        def launch() -> None:
            nonlocal tried
            coro = self._attempt(shard, order[tried], method, path, body, deadline)
            pending.add(asyncio.create_task(coro))
            tried += 1

        launch()
        try:
            while pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                untried = len(order) - tried
                wait = shard.hedge_delay(remaining, untried) if untried else remaining
                done, _ = await asyncio.wait(
                    pending, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:  # slower than its share: ask the next replica too
                    if untried:
                        self.metrics.hedged(shard.index)
                        launch()
                    continue
                for task in done:
                    pending.discard(task)
                    status, payload, error = task.result()
                    if status is not None:
                        return Answer(shard, status, payload)
                    errors.append(error)
                if not pending and tried < len(order):
                    launch()
        finally:
            for task in pending:
                task.cancel()
        if pending or not errors:
            errors.append(f"no answer within the deadline ({tried} of {len(order)} replicas)")
        return Answer(shard, None, error="; ".join(errors))
