"""A 1-bit index over HTTP: `oversample` in search bodies, 422 for bad values, and a real
uvicorn serving a new empty 1bit index made from settings."""

from __future__ import annotations

import httpx
import numpy as np
from svc_helpers import app_client, build_index, error_of, exact, live_server, random_items

from linr.client import Client


def test_oversample_in_bodies(rng: np.random.Generator) -> None:
    dim, n = 12, 300
    items = random_items(rng, n, dim)
    idx = build_index(items, dim, "l2", quantization="1bit", bits=64, rerank="fp32")
    with app_client(idx) as c:
        q = rng.standard_normal(dim).astype(np.float32)
        # oversample x k covering all items: the fp32 rerank makes the answer exact
        body = {"vector": q.tolist(), "k": 5, "oversample": 60, "filter": 'lang == "en"'}
        r = c.post("/v1/search", json=body)
        assert r.status_code == 200, r.text
        ids, _ = exact(items, q, 5, "l2", 'lang == "en"')
        assert [h["id"] for h in r.json()["results"]] == ids
        batch = {"queries": [body, {**body, "oversample": 1}, {"vector": q.tolist(), "k": 5}]}
        r = c.post("/v1/search/batch", json=batch)
        assert r.status_code == 200, r.text
        assert [h["id"] for h in r.json()["results"][0]["results"]] == ids
        for bad in (0, 1001, "10", 2.5):
            r = c.post("/v1/search", json={**body, "oversample": bad})
            assert "oversample" in error_of(r, 422)["message"]


def test_serve_new_1bit_index_live(rng: np.random.Generator) -> None:
    dim = 16
    settings = {"dim": dim, "quantization": "1bit", "bits": 128, "rerank": "int8",
                "device": "cpu", "oversample": 3}  # fmt: skip
    with live_server(None, **settings) as srv:
        srv.wait_ready()
        client = Client(srv.url)
        x = rng.standard_normal((50, dim)).astype(np.float32)
        r = httpx.post(
            srv.url + "/v1/items",
            json={"items": [{"id": i, "vector": x[i].tolist()} for i in range(50)]},
        )
        assert r.status_code == 200, r.text
        hits = client.search(x[7], k=3, oversample=20)
        assert hits[0]["id"] == 7
        stats = httpx.get(srv.url + "/v1/stats").json()
        assert stats["quantization"] == "1bit" and stats["memory"]["rerank"] > 0
