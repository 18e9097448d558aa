"""The search worker's queue: large requests in slices, taken round-robin, so a small search
waits for one slice, not for a whole large request.

A search request is split into slices (consecutive runs of its queries) whose estimated scan
time is about `slice_s` (`SliceClock`). The queue holds writes and requests in arrival order.
The worker takes a write alone when it is at the head; otherwise one slice from each request
from the front, past any writes, while the batch stays within the query and time budgets,
and sends a request that has slices left to the back of the queue. So a small search that
arrives while a large request runs is in the next batch, or the one after.

Each query is answered from one state of the index; a request answered in several slices
may see a write that arrived while it ran between two of them (the write is concurrent with
the request, so either order is linearizable for each query).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

S = TypeVar("S")  # one slice: what the worker scans in one go
W = TypeVar("W")  # one write

# Cost units of a query: vectors x (k + _SCAN_K). Measured over 20,000 x 64 fp32 items on the
# 2-core dev machine: ~0.2 ms a query at k = 10, 2-5 ms at k = 1000 (the top-k selection),
# so the scan itself weighs about as much as k = 64 (benchmarks/bench_service_cost.py).
_SCAN_K = 64
# Before any batch has been timed: seconds per unit, 2 ms per query at k = 1000.
_FIRST_UNIT_S = 2e-6
# A slice holds at least this many units (one k = 1000 query), so that per-scan overhead
# does not shrink slices to nothing on a slow index.
_MIN_SLICE_UNITS = 1064
# Weight of the newest batch in the running estimate of seconds per unit.
_EWMA = 0.2


def units(vectors: int, k: int) -> int:
    return vectors * (k + _SCAN_K)


class SliceClock:
    """Running estimate of scan seconds per cost unit, from the batches the worker ran."""

    def __init__(self, slice_s: float) -> None:
        self.slice_s = slice_s
        self._unit_s = _FIRST_UNIT_S

    def observe(self, n_units: int, seconds: float) -> None:
        if n_units > 0 and seconds > 0:
            self._unit_s += _EWMA * (seconds / n_units - self._unit_s)

    @property
    def budget(self) -> int:
        """Units of one slice (and of one batch)."""
        return max(_MIN_SLICE_UNITS, int(self.slice_s / self._unit_s))


def split(costs: Sequence[int], budget: int) -> list[range]:
    """Consecutive runs of positions whose costs sum to at most `budget` (at least one each)."""
    out: list[range] = []
    start, acc = 0, 0
    for i, c in enumerate(costs):
        if i > start and acc + c > budget:
            out.append(range(start, i))
            start, acc = i, 0
        acc += c
    if start < len(costs):
        out.append(range(start, len(costs)))
    return out


@dataclass(slots=True)
class _Request(Generic[S]):
    slices: deque[S]
    done: Callable[[], bool]  # the client is gone: its slices are dropped, not scanned
    sizes: deque[tuple[int, int]] = field(default_factory=deque)  # (queries, units) a slice


class FairQueue(Generic[W, S]):
    """Writes and sliced search requests; the caller holds the lock around every call."""

    def __init__(self) -> None:
        self._entries: deque[W | _Request[S]] = deque()
        self.requests = 0  # search requests with slices queued
        self.queries = 0  # queries in those slices

    def __len__(self) -> int:
        return len(self._entries)

    def push_write(self, w: W) -> None:
        self._entries.append(w)

    def push_search(
        self, slices: Sequence[S], sizes: Sequence[tuple[int, int]], done: Callable[[], bool]
    ) -> None:
        self._entries.append(_Request(deque(slices), done, deque(sizes)))
        self.requests += 1
        self.queries += sum(n for n, _ in sizes)

    def head(self) -> W | S | None:
        """The oldest entry: a write, or the next slice of the oldest request."""
        if not self._entries:
            return None
        e = self._entries[0]
        return e.slices[0] if isinstance(e, _Request) else e

    def pop_write(self) -> W:
        e = self._entries.popleft()
        assert not isinstance(e, _Request)
        return e

    def take_searches(self, max_queries: int, budget: int) -> list[S]:
        """One slice from each request from the front, while they fit (at least one)."""
        batch: list[S] = []
        n = cost = 0
        kept: deque[W | _Request[S]] = deque()
        again: list[_Request[S]] = []  # requests with slices left: to the back
        entries = self._entries
        while entries:
            e = entries.popleft()
            if not isinstance(e, _Request):
                kept.append(e)
                continue
            if e.done():  # cancelled: drop what is left of it
                self.requests -= 1
                self.queries -= sum(q for q, _ in e.sizes)
                continue
            q, u = e.sizes[0]
            if batch and (n + q > max_queries or cost + u > budget):
                kept.append(e)
                break
            batch.append(e.slices.popleft())
            e.sizes.popleft()
            n, cost = n + q, cost + u
            self.queries -= q
            if e.slices:
                again.append(e)
            else:
                self.requests -= 1
        kept.extend(entries)
        kept.extend(again)
        self._entries = kept
        return batch

    def __iter__(self) -> Iterator[W | _Request[S]]:
        return iter(self._entries)
