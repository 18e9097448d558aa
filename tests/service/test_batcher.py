"""The micro-batcher on its own: grouping, the wait bound, overload, ordering, shutdown."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from typing import Any

import numpy as np
import pytest
from svc_helpers import build_index, random_items

from linr.filters import filter_to_json, parse_filter
from linr.testing.topk import assert_same_topk, scores_by_row
from service.batcher import Batcher, Query, QueryError
from service.errors import ApiError

DIM = 7


def q(vec: np.ndarray, k: int = 5, f: Any = None, agg: str | None = None) -> Query:
    node = parse_filter(f) if f is not None else None
    canon = filter_to_json(node) if node is not None else None
    key = json.dumps(canon, sort_keys=True) if canon is not None else ""
    return Query(vec, k, canon, key, agg)


def make(index: Any, **kw: Any) -> tuple[Batcher, list[int]]:
    sizes: list[int] = []
    opts = {"window_s": 0.05, "max_queries": 1000, "max_queue": 100, **kw}
    return Batcher(index, on_batch=lambda n, _t: sizes.append(n), **opts), sizes


def test_one_scan_per_window_and_answers_match_single_searches(rng: np.random.Generator) -> None:
    items = random_items(rng, 80, DIM)
    index = build_index(items, DIM)
    batcher, sizes = make(index)
    filters = [None, 'lang == "en"', {"field": "ts", "lt": 500}, None]
    queries = []
    for i in range(24):
        f = filters[i % len(filters)]
        if i % 5 == 4:
            queries.append(q(rng.standard_normal((2, DIM)).astype(np.float32), 3, f, "sum"))
        else:
            queries.append(q(rng.standard_normal(DIM).astype(np.float32), 1 + i, f))

    async def main() -> list[Any]:
        return await asyncio.gather(*(batcher.search([x]) for x in queries))

    try:
        answers = asyncio.run(main())
    finally:
        batcher.stop()
    assert sizes == [len(queries)]  # everything arrived within one window: one batch
    n = len(items["ids"])  # ids are 0..n-1, so an id is its row in `every` below
    for (hits,), x in zip(answers, queries, strict=True):
        batch = [x.vectors] if x.aggregate else x.vectors[None]
        ref = index.search(batch, k=x.k, filter=x.filter, aggregate=x.aggregate)
        full = index.search(batch, k=n, filter=x.filter, aggregate=x.aggregate)
        every = scores_by_row(full.scores, np.asarray(full.rows), n)
        # BLAS may round a [B, D] product differently from a [1, D] one (an ulp apart on AMD
        # EPYC at D = 7): each fp32 score of m query vectors is within gamma_(D+m) *
        # sum |q_i x_i| of the exact one (D products summed, then m scores), so the two
        # answers within twice that.
        m = len(batch[0]) if x.aggregate else 1
        mags = np.abs(np.atleast_2d(x.vectors)).astype(np.float64) @ np.abs(items["vectors"]).T
        g = (DIM + m) * 2.0**-24
        atol = 2 * g / (1 - g) * float(mags.sum(0).max())
        assert len(hits.ids) == len(ref.ids[0])
        assert_same_topk(
            [hits.ids], [hits.scores], ref.ids, ref.scores[:, : len(hits.ids)], 0.0, atol, every
        )


def test_a_lone_request_waits_the_window_and_no_longer(rng: np.random.Generator) -> None:
    index = build_index(random_items(rng, 10, DIM), DIM)
    batcher, _ = make(index, window_s=0.2)
    vec = rng.standard_normal(DIM).astype(np.float32)

    async def timed(n: int) -> float:
        t = time.perf_counter()
        await asyncio.gather(*(batcher.search([q(vec)]) for _ in range(n)))
        return time.perf_counter() - t

    try:
        assert 0.2 <= asyncio.run(timed(1)) < 1.0
        batcher.max_queries = 2  # a full batch goes at once, without waiting the window
        assert asyncio.run(timed(2)) < 0.15
    finally:
        batcher.stop()


def test_overload_gives_429_and_the_queue_drains(rng: np.random.Generator) -> None:
    index = build_index(random_items(rng, 10, DIM), DIM)
    batcher, sizes = make(index, window_s=0.0, max_queue=3)
    vec = rng.standard_normal(DIM).astype(np.float32)

    async def main() -> list[Any]:
        with index.lock:  # the worker blocks on its first batch; the queue fills behind it
            first = asyncio.ensure_future(batcher.search([q(vec)]))
            await asyncio.sleep(0.2)  # the worker has taken `first` and waits for the lock
            queued = [asyncio.ensure_future(batcher.search([q(vec)])) for _ in range(3)]
            await asyncio.sleep(0)
            with pytest.raises(ApiError) as over:
                await batcher.search([q(vec)])
            assert over.value.status == 429 and over.value.headers == {"Retry-After": "1"}
        return await asyncio.gather(first, *queued)

    try:
        done = asyncio.run(main())
    finally:
        batcher.stop()
    assert len(done) == 4 and all(len(h[0].ids) == 5 for h in done)
    assert sizes == [1, 3]  # the three queued while blocked share one scan


def test_writes_run_in_order_between_batches(rng: np.random.Generator) -> None:
    index = build_index(random_items(rng, 5, DIM), DIM)
    batcher, _ = make(index, window_s=0.01)
    log: list[int] = []

    async def main() -> None:
        await asyncio.gather(*(batcher.call(functools.partial(log.append, i)) for i in range(50)))

    try:
        asyncio.run(main())
    finally:
        batcher.stop()
    assert log == list(range(50))


def test_a_bad_group_fails_only_its_own_requests(rng: np.random.Generator) -> None:
    index = build_index(random_items(rng, 20, DIM), DIM)
    batcher, sizes = make(index)
    vec = rng.standard_normal(DIM).astype(np.float32)
    bad = Query(vec, 3, {"field": "nope", "eq": 1}, "bad")

    async def main() -> tuple[Any, Any]:
        return await asyncio.gather(
            batcher.search([q(vec)]), batcher.search([q(vec), bad]), return_exceptions=True
        )

    try:
        good, failed = asyncio.run(main())
    finally:
        batcher.stop()
    assert len(good[0].ids) == 5
    assert isinstance(failed, QueryError) and failed.position == 1 and "nope" in str(failed)
    assert sizes == [3]


def test_stop_drains_the_queue_then_refuses(rng: np.random.Generator) -> None:
    index = build_index(random_items(rng, 5, DIM), DIM)
    batcher, _ = make(index, window_s=0.0)
    vec = rng.standard_normal(DIM).astype(np.float32)

    async def main() -> tuple[Any, Any]:
        index.lock.acquire()
        try:
            first = asyncio.ensure_future(batcher.search([q(vec)]))
            await asyncio.sleep(0.2)
            later = asyncio.ensure_future(batcher.search([q(vec)]))
            await asyncio.sleep(0)
            stopper = asyncio.get_running_loop().run_in_executor(None, batcher.stop)
            await asyncio.sleep(0.1)
        finally:
            index.lock.release()
        await stopper
        return await asyncio.gather(first, later, return_exceptions=True)

    first, later = asyncio.run(main())
    assert len(first[0].ids) == 5 and len(later[0].ids) == 5  # queued work is answered
    with pytest.raises(ApiError) as after:
        asyncio.run(batcher.search([q(vec)]))
    assert after.value.status == 503


def test_a_large_request_in_slices_answers_as_one_scan(rng: np.random.Generator) -> None:
    """A one-unit clock budget cuts the request into one-query slices: the answers are
    those of the unsliced search, and a failing query is named by its place in the request."""
    items = random_items(rng, 300, DIM)
    index = build_index(items, DIM)
    batcher, sizes = make(index, slice_s=1e-9)
    vecs = rng.standard_normal((12, DIM)).astype(np.float32)
    queries = [q(v, 1000, 'lang == "en"' if i % 3 else None) for i, v in enumerate(vecs)]
    bad = Query(vecs[0], 3, {"field": "nope", "eq": 1}, "bad")
    try:
        hits = asyncio.run(batcher.search(queries))
        with pytest.raises(QueryError) as failed:
            asyncio.run(batcher.search([*queries[:7], bad, *queries[7:]]))
    finally:
        batcher.stop()
    assert failed.value.position == 7 and "nope" in str(failed.value)
    assert sizes[:12] == [1] * 12  # one slice a batch, the budget holding one query
    for h, x in zip(hits, queries, strict=True):
        ref = index.search(x.vectors[None], k=x.k, filter=x.filter)
        assert h.ids == ref.ids[0]  # a one-query slice scores exactly as the single search


def test_a_small_search_overtakes_a_large_request(rng: np.random.Generator) -> None:
    index = build_index(random_items(rng, 1500, DIM), DIM)
    batcher, sizes = make(index, window_s=0.0, slice_s=1e-9)  # one k = 1000 query a slice
    big = [q(v, 1000) for v in rng.standard_normal((8, DIM)).astype(np.float32)]
    order: list[str] = []

    async def main() -> None:
        async def run(name: str, queries: list[Query]) -> None:
            await batcher.search(queries)
            order.append(name)

        with index.lock:  # the worker blocks on the first slice; the small search queues
            large = asyncio.ensure_future(run("large", big))
            await asyncio.sleep(0.2)
            small = asyncio.ensure_future(run("small", [q(big[0].vectors, 5)]))
            await asyncio.sleep(0.05)
        await asyncio.gather(large, small)

    try:
        asyncio.run(main())
    finally:
        batcher.stop()
    assert order == ["small", "large"]
    # The small search waited for the slice in progress and the next one, not for all 8.
    assert sizes == [1] * 9


def test_an_abandoned_request_is_not_scanned(rng: np.random.Generator) -> None:
    index = build_index(random_items(rng, 1500, DIM), DIM)
    batcher, sizes = make(index, window_s=0.0, slice_s=1e-9)
    big = [q(v, 1000) for v in rng.standard_normal((8, DIM)).astype(np.float32)]

    async def main() -> None:
        with index.lock:
            large = asyncio.ensure_future(batcher.search(big))
            await asyncio.sleep(0.2)  # the worker holds the first slice
            large.cancel()  # the client went away
            await asyncio.sleep(0)
        await asyncio.sleep(0.3)
        assert len(await batcher.search([q(big[0].vectors, 5)])) == 1

    try:
        asyncio.run(main())
    finally:
        batcher.stop()
    assert sizes == [1, 1]  # the slice in progress, then the next search: 7 slices dropped
