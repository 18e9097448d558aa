"""The router over in-process shards (real uvicorn servers on loopback, no Kafka): exact
merged results, the error shapes of `linr serve`, auth, the partial-result policy, stats,
item reads, metrics."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import numpy as np

from service.router import RouterSettings, create_router_app
from tests.service.svc_helpers import (
    LiveServer,
    assert_hits,
    build_index,
    error_of,
    exact,
    live_server,
    random_items,
)

DIM = 12  # not a multiple of any block
SHARDS = 3


def _subset(items: dict[str, Any], keep: list[int]) -> dict[str, Any]:
    return {
        "ids": [items["ids"][i] for i in keep],
        "vectors": items["vectors"][keep],
        "attributes": [items["attributes"][i] for i in keep],
    }


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed once this returns


def _client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=30)  # past the router's 10 s deadline


@contextmanager
def cluster(
    items: dict[str, Any], replicas: list[int], down: int | None = None, **router: Any
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """SHARDS shards of `items` (item i on shard i % SHARDS), shard s with replicas[s]
    servers (shard `down` with closed ports only), and a router; (router url, shard items)."""
    api_key = router.get("api_key")
    parts = [_subset(items, list(range(s, len(items["ids"]), SHARDS))) for s in range(SHARDS)]
    with ExitStack() as stack:
        urls = []
        for s, part in enumerate(parts):
            if s == down:
                urls.append([_closed_port_url() for _ in range(replicas[s])])
                continue
            urls.append(
                [
                    stack.enter_context(live_server(build_index(part, DIM), api_key=api_key)).url
                    for _ in range(replicas[s])
                ]
            )
        # A 10 s deadline: shards, router and test client share one process and its GIL.
        router.setdefault("timeout_ms", 10_000)
        settings = RouterSettings(shards=urls, probe_every_s=0.2, probe_timeout_s=2, **router)
        srv = stack.enter_context(LiveServer(create_router_app(settings)))
        yield srv.url, parts


def test_results_equal_one_index_over_all_items(rng: np.random.Generator) -> None:
    items = random_items(rng, 157, DIM)
    with cluster(items, [2, 1, 1]) as (url, _), _client(url) as c:
        assert c.get("/readyz").status_code == 200
        for flt in (None, 'lang == "fr"', {"field": "tags", "all": ["ml", "gpu"]}, "ts < 0"):
            for k in (1, 10, 200):  # 200: more than every shard holds
                q = rng.standard_normal(DIM).astype(np.float32)
                r = c.post("/v1/search", json={"vector": q.tolist(), "k": k, "filter": flt})
                body = r.json()
                assert r.status_code == 200, body
                assert body["shards"] == {"asked": 3, "answered": 3}
                assert body["count"] == len(body["results"])
                assert_hits(body["results"], *exact(items, q, k, filter=flt))
        qs = rng.standard_normal((5, DIM)).astype(np.float32)
        batch = {"queries": [{"vector": q.tolist(), "k": 7, "filter": 'lang != "en"'} for q in qs]}
        body = c.post("/v1/search/batch", json=batch).json()
        assert body["shards"] == {"asked": 3, "answered": 3}
        for q, res in zip(qs, body["results"]):
            assert_hits(res["results"], *exact(items, q, 7, filter='lang != "en"'))


def test_errors_are_the_services(rng: np.random.Generator) -> None:
    items = random_items(rng, 30, DIM)
    with cluster(items, [1, 1, 1]) as (url, _), _client(url) as c:
        err = error_of(c.post("/v1/search", json={"vector": [0.0] * (DIM + 1)}), 422)
        assert "dimension" in err["message"]
        bad_filter = {"vector": [0.0] * DIM, "filter": "nope == 1"}
        err = error_of(c.post("/v1/search", json=bad_filter), 422)
        assert "nope" in err["message"]
        error_of(c.post("/v1/search", json={"vector": [0.0] * DIM, "k": 0}), 422)
        error_of(c.post("/v1/search", json={"vector": [0.0] * DIM, "timeout_ms": -1}), 422)
        err = error_of(c.post("/v1/search", content=b"{nope"), 400)
        assert err["code"] == "invalid_json"
        err = error_of(c.put("/v1/items/1", json={"vector": [0.0] * DIM}), 405)
        assert "kafka" in err["message"]


def test_auth_is_required_and_passed_on(rng: np.random.Generator) -> None:
    items = random_items(rng, 20, DIM)
    with cluster(items, [1, 1, 1], api_key="s3cret") as (url, _), _client(url) as c:
        body = {"vector": [0.0] * DIM}
        assert error_of(c.post("/v1/search", json=body), 401)["code"] == "unauthorized"
        r = c.post("/v1/search", json=body, headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200 and r.json()["shards"]["answered"] == 3
        assert c.get("/readyz").status_code == 200  # probes stay open


def test_a_shard_without_replicas(rng: np.random.Generator) -> None:
    items = random_items(rng, 90, DIM)
    with cluster(items, [1, 1, 2], down=2) as (url, parts), _client(url) as c:
        assert error_of(c.get("/readyz"), 503)["code"] == "not_ready"
        q = rng.standard_normal(DIM).astype(np.float32)
        err = error_of(c.post("/v1/search", json={"vector": q.tolist()}), 503)
        assert err["code"] == "shard_unavailable" and "shard 2" in err["message"]
        r = c.post("/v1/search", json={"vector": q.tolist(), "k": 9, "allow_partial": True})
        body = r.json()
        assert r.status_code == 200, body
        assert body["partial"] is True and body["shards"] == {"asked": 3, "answered": 2}
        assert [m["shard"] for m in body["missing_shards"]] == [2]
        others = {k: parts[0][k] + parts[1][k] for k in ("ids", "attributes")}
        others["vectors"] = np.concatenate([parts[0]["vectors"], parts[1]["vectors"]])
        assert_hits(body["results"], *exact(others, q, 9))


def test_stats_items_and_metrics(rng: np.random.Generator) -> None:
    items = random_items(rng, 40, DIM)
    with cluster(items, [2, 1, 1]) as (url, _), _client(url) as c:
        s = c.get("/v1/stats").json()
        assert s["count"] == 40 and s["dim"] == DIM and s["shards"]["answered"] == 3
        assert [p["stats"]["count"] for p in s["per_shard"]] == [14, 13, 13]
        got = c.get("/v1/items/17").json()
        assert got["id"] == 17 and got["attributes"]["lang"] == items["attributes"][17]["lang"]
        np.testing.assert_array_equal(np.float32(got["vector"]), items["vectors"][17])
        assert error_of(c.get("/v1/items/4000"), 404)["code"] == "not_found"
        c.post("/v1/search", json={"vector": [0.0] * DIM})
        text = c.get("/metrics").text
        assert 'linr_router_shard_request_duration_seconds_count{shard="0",status="200"}' in text
        assert "linr_router_replica_ready{replica=" in text
        assert 'linr_http_requests_total{endpoint="/v1/search",method="POST",status="200"}' in text


def test_concurrent_searches_coalesce_into_batches(rng: np.random.Generator) -> None:
    """Searches that wait for the same shard go to it as one batch; each still gets its own
    exact answer, and a bad one its own error."""
    from concurrent.futures import ThreadPoolExecutor

    items = random_items(rng, 120, DIM)
    qs = rng.standard_normal((48, DIM)).astype(np.float32)
    flt = [None, 'lang == "de"', "nope == 1"]  # the third kind: an unknown field, 422
    bodies = [{"vector": q.tolist(), "k": 5, "filter": flt[i % 3]} for i, q in enumerate(qs)]
    with (
        cluster(items, [1, 1, 1]) as (url, _),
        _client(url) as c,
        ThreadPoolExecutor(16) as pool,
    ):
        answers = list(pool.map(lambda b: c.post("/v1/search", json=b), bodies))
        shard_metrics = [httpx.get(u + "/metrics").text for u in _shard_urls(c)]
    for i, (body, r) in enumerate(zip(bodies, answers)):
        if body["filter"] == "nope == 1":
            assert error_of(r, 422)["code"] in ("invalid_filter", "invalid_input"), r.text
            assert "queries[" not in r.json()["error"]["message"]  # its own error, not the batch's
            continue
        assert r.status_code == 200, r.text
        assert r.json()["shards"] == {"asked": 3, "answered": 3}
        assert_hits(r.json()["results"], *exact(items, qs[i], 5, filter=body["filter"]))
    batched = [m for m in shard_metrics if 'endpoint="/v1/search/batch"' in m]
    assert batched, "no shard was sent a batch"


def _shard_urls(c: httpx.Client) -> list[str]:
    stats = c.get("/v1/stats").json()
    return [r["url"] for s in stats["per_shard"] for r in s["replicas"]]
