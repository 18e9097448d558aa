"""Through a real uvicorn on 127.0.0.1: every endpoint via linr.client, searches racing
writes (each answer explained by a prefix of the writes), and 429 under overload."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from svc_helpers import (
    assert_hits,
    build_index,
    exact,
    live_server,
    random_items,
    same_attributes,
)

import linr
from linr.client import ApiError, Client


def test_every_endpoint_through_the_client(rng: np.random.Generator) -> None:
    dim = 9
    items = random_items(rng, 64, dim)
    with live_server(build_index(items, dim)) as srv, Client(srv.url) as c:
        assert c.healthy() and c.ready()
        qv = rng.standard_normal(dim).astype(np.float32)
        assert_hits(c.search(qv, k=7), *exact(items, qv, 7))
        f = 'lang == "en" or ts < 100'
        assert_hits(c.search(qv, k=7, filter=f), *exact(items, qv, 7, filter=f))
        with_attrs = c.search(qv, k=3, include_attributes=True)
        assert all(
            same_attributes(h["attributes"], items["attributes"][h["id"]]) for h in with_attrs
        )
        multi = c.search(rng.standard_normal((2, dim)), k=4, aggregate="max")
        assert len(multi) == 4
        qs = rng.standard_normal((3, dim)).astype(np.float32)
        fs = [None, {"field": "flag", "eq": True}, 'tags in ["gpu"]']
        for hits, qq, ff in zip(c.search_batch(qs, k=5, filters=fs), qs, fs, strict=True):
            assert_hits(hits, *exact(items, qq, 5, filter=ff))

        v = rng.standard_normal(dim).astype(np.float32)
        assert c.upsert(1000, v, {"lang": "fr"}) == {"id": 1000, "created": True, "applied": True}
        got = c.get(1000)
        assert got is not None and got["attributes"] == {"lang": "fr"}
        np.testing.assert_array_equal(np.float32(got["vector"]), v)
        out = c.upsert_many([1001, 1002], rng.standard_normal((2, dim)), [{"ts": 1}, None])
        assert out == {"upserted": 2, "created": 2, "ignored": 0}
        assert c.stats()["count"] == 67
        assert c.delete(1000) is True and c.delete(1000) is False and c.get(1000) is None
        with pytest.raises(ApiError) as e:
            c.search(qv[:3])
        assert e.value.status == 422 and "dimension" in e.value.message
        text = c.metrics()
        assert 'linr_http_requests_total{endpoint="/v1/search",method="POST",status="200"}' in text
        assert "linr_index_items 66.0" in text


def _knn_ids(
    state: dict[int, np.ndarray], langs: dict[int, str], q: np.ndarray, k: int, only_en: bool
) -> tuple[tuple[int, ...], np.ndarray]:
    ids = [i for i in sorted(state) if not only_en or langs[i] == "en"]
    if not ids:
        return (), np.zeros(0)
    x = np.stack([state[i] for i in ids])
    s, r = linr.knn(q[None], x, k)
    keep = r[0] >= 0
    return tuple(ids[j] for j in r[0][keep].tolist()), s[0][keep].numpy()


def test_searches_during_writes_see_a_prefix_of_the_writes(rng: np.random.Generator) -> None:
    """Writes go one after another; every answer must equal the exact answer over the items
    after some prefix of them, no earlier than the writes acknowledged before the search was
    sent, no later than those sent before it returned, never going back in time."""
    dim, k = 6, 5
    base = random_items(rng, 40, dim)
    langs = {i: ("en" if rng.random() < 0.5 else "fr") for i in range(400)}
    for i, a in zip(base["ids"], base["attributes"], strict=True):
        a["lang"] = langs[i]
    state = dict(zip(base["ids"], base["vectors"], strict=True))
    # Steps: PUT (new or replace), DELETE, or a bulk POST of three new items (atomic).
    steps: list[tuple[str, Any]] = []
    states = [dict(state)]
    next_id = 100
    for _ in range(120):
        r = rng.random()
        if r < 0.4 or len(state) < 10:
            step_id, next_id = next_id, next_id + 1
            v = rng.standard_normal(dim).astype(np.float32)
            steps.append(("put", (step_id, v)))
            state[step_id] = v
        elif r < 0.6:
            step_id = int(rng.choice(sorted(state)))
            v = rng.standard_normal(dim).astype(np.float32)
            steps.append(("put", (step_id, v)))
            state[step_id] = v
        elif r < 0.85:
            step_id = int(rng.choice(sorted(state)))
            steps.append(("delete", step_id))
            del state[step_id]
        else:
            new = [(next_id + j, rng.standard_normal(dim).astype(np.float32)) for j in range(3)]
            next_id += 3
            steps.append(("bulk", new))
            state.update(new)
        states.append(dict(state))
    queries = [(rng.standard_normal(dim).astype(np.float32), only_en) for only_en in (0, 1, 0)]
    expected = [[_knn_ids(s, langs, qv, k, bool(en)) for qv, en in queries] for s in states]

    issued = acked = 0
    done = threading.Event()
    failures: list[str] = []
    seen_prefixes: set[int] = set()

    def writer(url: str) -> None:
        nonlocal issued, acked
        with httpx.Client(base_url=url) as h:
            for kind, arg in steps:
                issued += 1
                if kind == "put":
                    i, v = arg
                    r = h.put(
                        f"/v1/items/{i}",
                        json={"vector": v.tolist(), "attributes": {"lang": langs[i]}},
                    )
                elif kind == "delete":
                    r = h.delete(f"/v1/items/{arg}")
                else:
                    its = [
                        {"id": i, "vector": v.tolist(), "attributes": {"lang": langs[i]}}
                        for i, v in arg
                    ]
                    r = h.post("/v1/items", json={"items": its})
                assert r.status_code == 200, r.text
                acked += 1
        done.set()

    def reader(url: str, seed: int) -> None:
        prev = 0
        n = 0
        with httpx.Client(base_url=url) as h:
            while not done.is_set() or n < 5:
                j = (seed + n) % len(queries)
                qv, en = queries[j]
                lo = acked
                body: dict[str, Any] = {"vector": qv.tolist(), "k": k}
                if en:
                    body["filter"] = 'lang == "en"'
                r = h.post("/v1/search", json=body)
                hi = issued
                n += 1
                res = r.json()["results"]
                ids = tuple(x["id"] for x in res)
                scores = np.array([x["score"] for x in res])
                ok = [
                    p
                    for p in range(max(lo, prev), hi + 1)
                    if expected[p][j][0] == ids
                    and np.allclose(expected[p][j][1], scores, rtol=1e-5, atol=1e-5)
                ]
                if not ok:
                    failures.append(f"query {j}: {ids} matches no prefix in [{lo}, {hi}]")
                    return
                prev = ok[0]
                seen_prefixes.add(prev)

    index = build_index(base, dim)
    with live_server(index, batch_window_ms=1.0) as srv:
        threads = [threading.Thread(target=reader, args=(srv.url, s)) for s in range(4)]
        threads.append(threading.Thread(target=writer, args=(srv.url,)))
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads)
        assert not failures, failures[:3]
        assert acked == len(steps)
        # The race really happened: answers came from many states in the middle.
        assert len(seen_prefixes & set(range(1, len(steps)))) >= 10, sorted(seen_prefixes)
        final = {i: index.get(i).vector for i in index.ids()}  # type: ignore[union-attr]
        assert sorted(final) == sorted(states[-1])
        for i, v in final.items():
            assert torch.equal(torch.from_numpy(v), torch.from_numpy(states[-1][i]))


def test_overload_answers_429_quickly_and_the_rest_complete(rng: np.random.Generator) -> None:
    dim = 4
    index = build_index(random_items(rng, 10, dim), dim)
    with live_server(index, max_queue=2, batch_window_ms=0) as srv:
        body = {"vector": [1.0, 0.0, 0.0, 0.0], "k": 3}

        async def burst() -> list[int]:
            async with httpx.AsyncClient(base_url=srv.url, timeout=30) as h:
                index.lock.acquire()  # stall the worker: the queue fills up behind it
                try:
                    tasks = [asyncio.ensure_future(h.post("/v1/search", json=body))]
                    await asyncio.sleep(0.3)  # the worker took it and waits for the lock
                    tasks += [
                        asyncio.ensure_future(h.post("/v1/search", json=body)) for _ in range(9)
                    ]
                    done, _ = await asyncio.wait(tasks, timeout=1.0)
                    early = sorted(t.result().status_code for t in done)
                    assert early and set(early) == {429}, early  # refused while stalled
                finally:
                    index.lock.release()
                return [r.status_code for r in await asyncio.gather(*tasks)]

        codes = asyncio.run(burst())
        assert set(codes) <= {200, 429}
        assert codes.count(200) == 3  # 1 with the worker + 2 queued
        assert codes.count(429) == 7
        r = httpx.post(srv.url + "/v1/search", json=body)
        assert r.status_code == 200  # recovered
        metrics = httpx.get(srv.url + "/metrics").text
        assert 'endpoint="/v1/search",method="POST",status="429"' in metrics


def test_body_limit_over_real_http(rng: np.random.Generator) -> None:
    index = build_index(random_items(rng, 5, 4), 4)
    with live_server(index, max_body_bytes=2048) as srv:
        big = b'{"vector": [1, 2, 3, 4], "filter": "' + b"x" * 4000 + b'"}'

        def chunks() -> Iterator[bytes]:  # chunked transfer: no Content-Length to refuse on
            for i in range(0, len(big), 500):
                yield big[i : i + 500]

        with httpx.Client(base_url=srv.url) as h:
            for content in (big, chunks()):
                r = h.post("/v1/search", content=content)
                assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
            assert h.post("/v1/search", json={"vector": [1, 2, 3, 4]}).status_code == 200
