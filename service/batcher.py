"""Micro-batching: concurrent searches share one scan, and one worker thread drives the index.

Requests enqueue jobs and await a future. The worker takes the oldest search once it has waited
`window_s` (or as soon as `max_queries` are queued), together with the searches queued behind
it, groups their queries by (aggregate, filter) and runs one `index.search` per group, the
largest k of a group trimmed per query. A request larger than one slice of scan time is cut
into slices taken round-robin with the other requests (service/schedule.py). So a request
waits at most the window plus the slice in progress plus its own scan. Writes from HTTP run
on the same worker, in arrival order: searches queued beside a write are concurrent with it,
so answering them either side of it is linearizable, and batches are never split by writes.

Each `index.search` is atomic to writes, and the attributes of its hits are read just after
it (`index.attributes`, without decoding vectors); the ingester's thread may write between
the two, so a hit deleted meanwhile is answered with empty attributes, and one replaced
meanwhile with its new attributes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from linr import Index
from service.errors import ApiError
from service.memory import release_freed_memory
from service.schedule import FairQueue, SliceClock, split, units

log = logging.getLogger("linr.service")

# No slice above this many units (16 queries at k = 1000), whatever the clock says: bounds
# the wait behind one slice while the clock is still learning a fast index.
_MAX_SLICE_UNITS = 16 * 1064
# Once idle after scanning this many units (64 queries at k = 1000), hand freed heap memory
# back to the OS: a large request left RSS 200 MB above its start (service/memory.py).
_RELEASE_UNITS = 64 * 1064


@dataclass(slots=True)
class Query:
    vectors: np.ndarray  # [D] one vector, or [m, D] with `aggregate`
    k: int
    filter: Any  # None, str or dict (docs/filters.md), validated before queueing
    filter_key: str  # canonical text of `filter`: equal keys share one scan
    aggregate: str | None = None
    include_attributes: bool = False
    oversample: int | None = None  # quantization 1bit (linr.onebit); None: the index default

    @property
    def units(self) -> int:
        """Estimated scan work, in service.schedule's units."""
        return units(1 if self.vectors.ndim == 1 else int(self.vectors.shape[0]), self.k)


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
        index: Index,
        *,
        window_s: float,
        max_queries: int,
        max_queue: int,
        on_batch: Callable[[int, float], None] | None = None,
        slice_s: float = 0.01,
    ) -> None:
        self.index = index
        self.window_s = window_s
        self.max_queries = max_queries
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._queue: FairQueue[_CallJob, _SearchJob] = FairQueue()
        self.clock = SliceClock(slice_s)
        self._since_release = 0  # units scanned since memory was last released
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="linr-search-worker", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        return len(self._queue)

    async def search(self, queries: list[Query]) -> list[Hits]:
        loop = asyncio.get_running_loop()
        costs = [q.units for q in queries]
        parts = split(costs, min(self.clock.budget, _MAX_SLICE_UNITS))
        t0 = time.monotonic()
        jobs = [
            _SearchJob(queries[r.start : r.stop], loop.create_future(), loop, t0) for r in parts
        ]
        sizes = [(len(r), sum(costs[i] for i in r)) for r in parts]
        last = jobs[-1].future
        with self._cond:
            if self._stopping:
                raise ApiError(503, "shutting_down", "the service is shutting down")
            if self._queue.requests >= self.max_queue:
                raise ApiError(
                    429,
                    "overloaded",
                    f"search queue is full ({self.max_queue} requests pending); retry later",
                    {"Retry-After": "1"},
                )
            self._queue.push_search(jobs, sizes, last.cancelled)
            self._cond.notify()
        if len(jobs) == 1:
            return await jobs[0].future

        async def answer(job: _SearchJob, start: int) -> list[Hits]:
            try:
                return await job.future
            except QueryError as e:  # its position in the slice -> in the request
                raise QueryError(start + e.position, e.error) from None

        try:
            answers = await asyncio.gather(
                *(answer(j, r.start) for j, r in zip(jobs, parts, strict=True))
            )
        finally:
            for j in jobs:  # the worker drops the rest of a failed or abandoned request
                j.future.cancel()
        return [h for part in answers for h in part]

    async def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the worker, in order with the other writes (not bounded by max_queue:
        writes carry data that must not be dropped, and the client waits for each)."""
        loop = asyncio.get_running_loop()
        job = _CallJob(fn, loop.create_future(), loop)
        with self._cond:
            if self._stopping:
                raise ApiError(503, "shutting_down", "the service is shutting down")
            self._queue.push_write(job)
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
            while not len(self._queue) and not self._stopping:
                self._cond.wait()
            head = self._queue.head()
            if head is None:
                return None
            if isinstance(head, _CallJob):
                return self._queue.pop_write()
            deadline = head.t0 + self.window_s
            while not self._stopping and self._queue.queries < self.max_queries:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            # Searches from the front, past any writes, up to max_queries (at least one).
            return self._queue.take_searches(self.max_queries, self.clock.budget)

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
            elif work:  # empty when the requests taken had all been abandoned
                n_units = sum(q.units for job in work for q in job.queries)
                t = time.perf_counter()
                self._run_searches(work)
                self.clock.observe(n_units, time.perf_counter() - t)
                self._since_release += n_units
            if self._since_release >= _RELEASE_UNITS and not len(self._queue):
                self._since_release = 0  # idle after a large request: a good time
                release_freed_memory()

    def _run_searches(self, jobs: list[_SearchJob]) -> None:
        flat = [(j, qi, q) for j, job in enumerate(jobs) for qi, q in enumerate(job.queries)]
        results: list[list[Hits | None]] = [[None] * len(job.queries) for job in jobs]
        failed: dict[int, BaseException] = {}
        groups: dict[tuple[str | None, str, int | None], list[tuple[int, int, Query]]] = {}
        for j, qi, q in flat:
            groups.setdefault((q.aggregate, q.filter_key, q.oversample), []).append((j, qi, q))
        t = time.perf_counter()
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


def search_group(index: Index, queries: list[Query]) -> list[Hits]:
    """One `index.search` for queries sharing aggregate, filter and oversample, then
    one attribute look-up for the hits of those that asked for attributes."""
    k = max(q.k for q in queries)
    first = queries[0]
    if first.aggregate is None:
        batch: Any = np.stack([q.vectors for q in queries])  # [B, D]
    else:
        batch = [q.vectors for q in queries]  # B arrays [m_i, D]
    res = index.search(
        batch, k=k, filter=first.filter, aggregate=first.aggregate, oversample=first.oversample
    )
    ids = [list(res.ids[i][: q.k]) for i, q in enumerate(queries)]
    asked = [hits for q, hits in zip(queries, ids, strict=True) if q.include_attributes]
    found = iter(index.attributes([hit for hits in asked for hit in hits]))
    out = []
    for i, q in enumerate(queries):
        attrs = None
        if q.include_attributes:
            attrs = [a if a is not None else {} for a in (next(found) for _ in ids[i])]
        out.append(Hits(ids[i], np.asarray(res.scores[i, : len(ids[i])]), attrs))
    return out
