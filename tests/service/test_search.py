"""POST /v1/search and /v1/search/batch answer exactly what linr.knn says, in-process."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from svc_helpers import app_client, assert_hits, build_index, exact, random_items, same_attributes

import linr

FILTERS: list[Any] = [
    None,
    'lang == "en"',
    {"field": "tags", "in": ["ml", "gpu"]},
    {"and": [{"field": "ts", "gte": 200, "lt": 700}, {"not": {"field": "flag", "eq": True}}]},
    'tags == "db" or score < 0.1',
    {"field": "lang", "eq": "xx"},  # matches nothing: empty results, not an error
]


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
def test_single_queries_equal_exact_search(rng: np.random.Generator, metric: str) -> None:
    dim = 13  # not a multiple of any block size
    items = random_items(rng, 157, dim)
    with app_client(build_index(items, dim, metric)) as c:
        for f in FILTERS:
            for k in (1, 10, 200):  # 200 > N: fewer results, never padding
                q = rng.standard_normal(dim).astype(np.float32)
                r = c.post("/v1/search", json={"vector": q.tolist(), "k": k, "filter": f})
                assert r.status_code == 200, r.text
                body = r.json()
                ids, scores = exact(items, q, k, metric, f)
                assert_hits(body["results"], ids, scores)
                assert body["count"] == len(ids)
                assert body["took_ms"] >= 0


def test_batch_mixes_filters_and_k_and_answers_each_in_order(rng: np.random.Generator) -> None:
    dim = 8
    items = random_items(rng, 120, dim)
    with app_client(build_index(items, dim)) as c:
        qs = rng.standard_normal((len(FILTERS) * 2, dim)).astype(np.float32)
        specs = [(q, FILTERS[i % len(FILTERS)], 1 + 7 * i) for i, q in enumerate(qs)]
        body = {"queries": [{"vector": q.tolist(), "filter": f, "k": k} for q, f, k in specs]}
        r = c.post("/v1/search/batch", json=body)
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert len(results) == len(specs)
        for res, (q, f, k) in zip(results, specs, strict=True):
            assert_hits(res["results"], *exact(items, q, k, "ip", f))


def _multi_exact(items: dict[str, Any], qs: np.ndarray, k: int, agg: str) -> tuple[list, Any]:
    """Multi-embedding reference: full score rows from linr.knn, combined by max or sum."""
    x = items["vectors"]
    n = len(x)
    rows = []
    for q in qs:
        s, i = linr.knn(q[None], x, n)
        full = torch.empty(n, dtype=torch.float64)
        full[i[0]] = s[0]
        rows.append(full)
    stacked = torch.stack(rows)
    total = stacked.max(0).values if agg == "max" else stacked.sum(0)
    order = torch.sort(total, descending=True, stable=True).indices[:k]
    return [items["ids"][j] for j in order.tolist()], total[order].numpy()


@pytest.mark.parametrize("agg", ["max", "sum"])
def test_multi_embedding_queries(rng: np.random.Generator, agg: str) -> None:
    dim = 6
    items = random_items(rng, 90, dim)
    with app_client(build_index(items, dim)) as c:
        for m in (1, 3):
            qs = rng.standard_normal((m, dim)).astype(np.float32)
            r = c.post("/v1/search", json={"vectors": qs.tolist(), "aggregate": agg, "k": 9})
            assert r.status_code == 200, r.text
            assert_hits(r.json()["results"], *_multi_exact(items, qs, 9, agg))


def test_multi_embedding_defaults_to_max(rng: np.random.Generator) -> None:
    dim = 5
    items = random_items(rng, 40, dim)
    with app_client(build_index(items, dim)) as c:
        qs = rng.standard_normal((2, dim)).astype(np.float32)
        r = c.post("/v1/search", json={"vectors": qs.tolist(), "k": 4})
        assert_hits(r.json()["results"], *_multi_exact(items, qs, 4, "max"))


def test_include_attributes_returns_each_hits_attributes(rng: np.random.Generator) -> None:
    dim = 4
    items = random_items(rng, 30, dim)
    by_id = dict(zip(items["ids"], items["attributes"], strict=True))
    with app_client(build_index(items, dim)) as c:
        q = rng.standard_normal(dim).tolist()
        r = c.post("/v1/search", json={"vector": q, "k": 5, "include_attributes": True})
        hits = r.json()["results"]
        assert len(hits) == 5
        for h in hits:
            assert same_attributes(h["attributes"], by_id[h["id"]])
        plain = c.post("/v1/search", json={"vector": q, "k": 5}).json()["results"]
        assert all("attributes" not in h for h in plain)


def test_string_ids_and_an_empty_index() -> None:
    with app_client(linr.Index(dim=3, device="cpu")) as c:
        r = c.post("/v1/search", json={"vector": [1, 2, 3], "k": 5})
        assert r.status_code == 200
        assert r.json() == {"results": [], "count": 0, "took_ms": r.json()["took_ms"]}
        c.put("/v1/items/a%2Fb", json={"vector": [1, 0, 0], "attributes": {"lang": "en"}})
        c.put("/v1/items/b", json={"vector": [0, 1, 0]})
        hits = c.post("/v1/search", json={"vector": [1, 0.5, 0], "k": 5}).json()["results"]
        assert [h["id"] for h in hits] == ["a/b", "b"]
        assert [h["score"] for h in hits] == [1.0, 0.5]
