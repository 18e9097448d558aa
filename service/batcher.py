"""Micro-batching: concurrent searches share one scan, and one worker thread drives the index.

Requests enqueue jobs and await a future. The worker takes the oldest search once it has waited
`window_s` (or as soon as `max_queries` are queued), together with every search queued behind
it, groups their queries by (aggregate, filter) and runs one `index.search` per group, the
largest k of a group trimmed per query. So a request waits at most the window plus the scan
in progress plus its own scan. Writes from HTTP run on the same worker, in arrival order:
searches queued beside a write are concurrent with it, so answering them either side of it
is linearizable, and batches are never split by writes.

Everything happens under `index.lock` (an RLock): the search and the attribute look-ups of
one batch see the same state even while the ingester's thread writes between batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.errors import ApiError

log = logging.getLogger("linr.service")


@dataclass(slots=True)
class Query:
    vectors: np.ndarray  # [D] one vector, or [m, D] with `aggregate`
    k: int
    filter: Any  # None, str or dict (contract syntax), validated before queueing
    filter_key: str  # canonical text of `filter`: equal keys share one scan
    aggregate: str | None = None
    include_attributes: bool = False
    oversample: int | None = None  # quantization 1bit (linr.onebit); None: the index default


@dataclass(slots=True)
class Hits:
    ids: list[Any]
    scores: np.ndarray  # float32 [n]
    attributes: list[dict[str, Any]] | None


@dataclass(slots=True)
class _SearchJob:
    queries: list[Query]
    future: asyncio.Future[list[Hits]]
    loop: asyncio.AbstractEventLoop
    t0: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class _CallJob:
    fn: Callable[[], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


def _deliver(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():  # the client went away and the request was cancelled
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


def _post(job: _SearchJob | _CallJob, result: Any, exc: BaseException | None = None) -> None:
    """Hand a result to the request's event loop (from the worker thread)."""
    # RuntimeError: that loop has closed, so nobody is waiting any more.
    with contextlib.suppress(RuntimeError):
        job.loop.call_soon_threadsafe(_deliver, job.future, result, exc)


class QueryError(Exception):
    """A query of a batch failed; `position` says which, for messages like `queries[3]`."""

    def __init__(self, position: int, error: BaseException) -> None:
        super().__init__(str(error))
        self.position = position
        self.error = error


class Batcher:
    def __init__(
        self,
        index: Any,
        *,
        window_s: float,
        max_queries: int,
        max_queue: int,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.index = index
        self.window_s = window_s
        self.max_queries = max_queries
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._pending: deque[_SearchJob | _CallJob] = deque()
        self._searches = 0  # search jobs in _pending
        self._queued_queries = 0  # queries in those jobs
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="linr-search-worker", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        return len(self._pending)

    async def search(self, queries: list[Query]) -> list[Hits]:
        loop = asyncio.get_running_loop()
        job = _SearchJob(queries, loop.create_future(), loop)
        with self._cond:
            if self._stopping:
                raise ApiError(503, "shutting_down", "the service is shutting down")
            if self._searches >= self.max_queue:
                raise ApiError(
                    429,
                    "overloaded",
                    f"search queue is full ({self.max_queue} requests pending); retry later",
                    {"Retry-After": "1"},
                )
            self._pending.append(job)
            self._searches += 1
            self._queued_queries += len(queries)
            self._cond.notify()
        return await job.future

    async def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the worker, in order with the other writes (not bounded by max_queue:
        writes carry data that must not be dropped, and the client waits for each)."""
        loop = asyncio.get_running_loop()
        job = _CallJob(fn, loop.create_future(), loop)
        with self._cond:
            if self._stopping:
                raise ApiError(503, "shutting_down", "the service is shutting down")
            self._pending.append(job)
            self._cond.notify()
        return await job.future

    def stop(self) -> None:
        """Refuse new work (503), answer what is queued, then end the worker."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()

    # -- worker thread -------------------------------------------------------------------

    def _take(self) -> _CallJob | list[_SearchJob] | None:
        with self._cond:
            while not self._pending and not self._stopping:
                self._cond.wait()
            if not self._pending:
                return None
            head = self._pending[0]
            if isinstance(head, _CallJob):
                self._pending.popleft()
                return head
            deadline = head.t0 + self.window_s
            while not self._stopping and self._queued_queries < self.max_queries:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            # Take searches from the front, past any writes, up to max_queries (at least one).
            batch: list[_SearchJob] = []
            kept: deque[_SearchJob | _CallJob] = deque()
            n = 0
            while self._pending:
                job = self._pending.popleft()
                if isinstance(job, _SearchJob) and (
                    not batch or n + len(job.queries) <= self.max_queries
                ):
                    batch.append(job)
                    n += len(job.queries)
                else:
                    kept.append(job)
                    if isinstance(job, _SearchJob):
                        break
            kept.extend(self._pending)
            self._pending = kept
            self._searches -= len(batch)
            self._queued_queries -= n
            return batch

    def _run(self) -> None:
        while True:
            work = self._take()
            if work is None:
                break
            if isinstance(work, _CallJob):
                try:
                    result, exc = work.fn(), None
                except BaseException as e:  # noqa: BLE001 - handed to the awaiting request
                    result, exc = None, e
                _post(work, result, exc)
            else:
                self._run_searches(work)

    def _run_searches(self, jobs: list[_SearchJob]) -> None:
        flat = [(j, qi, q) for j, job in enumerate(jobs) for qi, q in enumerate(job.queries)]
        results: list[list[Hits | None]] = [[None] * len(job.queries) for job in jobs]
        failed: dict[int, BaseException] = {}
        groups: dict[tuple[str | None, str, int | None], list[tuple[int, int, Query]]] = {}
        for j, qi, q in flat:
            groups.setdefault((q.aggregate, q.filter_key, q.oversample), []).append((j, qi, q))
        t = time.perf_counter()
        with self.index.lock:
            for members in groups.values():
                try:
                    hits = search_group(self.index, [q for _, _, q in members])
                except Exception as e:  # noqa: BLE001 - reported per request below
                    for j, qi, _ in members:
                        failed.setdefault(j, QueryError(qi, e))
                    continue
                for (j, qi, _), h in zip(members, hits, strict=True):
                    results[j][qi] = h
        if self._on_batch is not None:
            try:
                self._on_batch(len(flat), time.perf_counter() - t)
            except Exception:  # a metrics hook must never stop the worker
                log.exception("batch hook failed")
        for j, job in enumerate(jobs):
            exc = failed.get(j)
            _post(job, results[j], exc)


def search_group(index: Any, queries: list[Query]) -> list[Hits]:
    """One `index.search` for queries sharing aggregate, filter and oversample; the caller
    holds the lock."""
    k = max(q.k for q in queries)
    first = queries[0]
    if first.aggregate is None:
        batch: Any = np.stack([q.vectors for q in queries])  # [B, D]
    else:
        batch = [q.vectors for q in queries]  # B arrays [m_i, D]
    res = index.search(
        batch, k=k, filter=first.filter, aggregate=first.aggregate, oversample=first.oversample
    )
    out = []
    for i, q in enumerate(queries):
        ids = list(res.ids[i][: q.k])
        attrs = None
        if q.include_attributes:
            attrs = []
            for item_id in ids:
                item = index.get(item_id)
                attrs.append(dict(item.attributes) if item is not None else {})
        out.append(Hits(ids, np.asarray(res.scores[i, : len(ids)]), attrs))
    return out
