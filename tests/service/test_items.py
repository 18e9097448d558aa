"""Item endpoints: PUT/GET/DELETE /v1/items/{id}, POST /v1/items, GET /v1/stats."""

from __future__ import annotations

import numpy as np
import pytest
from svc_helpers import app_client, error_of

import linr


def test_put_get_delete_round_trip(rng: np.random.Generator) -> None:
    idx = linr.Index(dim=5, device="cpu")
    with app_client(idx) as c:
        v = rng.standard_normal(5).astype(np.float32)
        r = c.put("/v1/items/42", json={"vector": v.tolist(), "attributes": {"lang": "en"}})
        assert r.json() == {"id": 42, "created": True, "applied": True}
        got = c.get("/v1/items/42").json()
        assert got["id"] == 42 and got["attributes"] == {"lang": "en"}
        np.testing.assert_array_equal(np.float32(got["vector"]), v)  # fp32 stores exactly
        w = rng.standard_normal(5).astype(np.float32)
        r = c.put("/v1/items/42", json={"vector": w.tolist(), "attributes": {"ts": 3}})
        assert r.json() == {"id": 42, "created": False, "applied": True}
        got = c.get("/v1/items/42").json()
        assert got["attributes"] == {"ts": 3}  # replaced, not merged
        np.testing.assert_array_equal(np.float32(got["vector"]), w)
        assert c.delete("/v1/items/42").json() == {"id": 42, "deleted": True}
        error_of(c.get("/v1/items/42"), 404)
        error_of(c.delete("/v1/items/42"), 404)
        assert len(idx) == 0


def test_versions_ignore_stale_updates() -> None:
    with app_client(linr.Index(dim=2, device="cpu")) as c:
        c.put("/v1/items/1", json={"vector": [1, 0], "version": 5})
        stale = c.put("/v1/items/1", json={"vector": [0, 1], "version": 4}).json()
        assert stale == {"id": 1, "created": False, "applied": False}
        assert c.get("/v1/items/1").json()["vector"] == [1, 0]
        newer = c.put("/v1/items/1", json={"vector": [0, 1], "version": 6}).json()
        assert newer["applied"] is True
        assert c.get("/v1/items/1").json()["vector"] == [0, 1]


def test_bulk_upsert_counts_and_applies(rng: np.random.Generator) -> None:
    idx = linr.Index(dim=3, device="cpu")
    with app_client(idx) as c:
        x = rng.standard_normal((4, 3)).astype(np.float32)
        items = [{"id": i, "vector": x[i].tolist(), "attributes": {"n": i}} for i in range(4)]
        assert c.post("/v1/items", json={"items": items}).json() == {
            "upserted": 4,
            "created": 4,
            "ignored": 0,
        }
        again = [{"id": 0, "vector": [1, 1, 1], "version": 2}, {"id": 9, "vector": [1, 0, 0]}]
        assert c.post("/v1/items", json={"items": again}).json() == {
            "upserted": 2,
            "created": 1,
            "ignored": 0,
        }
        stale = [{"id": 0, "vector": [0, 0, 1], "version": 1}]
        assert c.post("/v1/items", json={"items": stale}).json()["ignored"] == 1
        assert sorted(idx.ids()) == [0, 1, 2, 3, 9]
        assert c.get("/v1/items/0").json()["vector"] == [1, 1, 1]
        assert c.get("/v1/items/2").json()["attributes"] == {"n": 2}


@pytest.mark.parametrize(
    ("first", "path_then", "expect_id"),
    [
        ("7", "/v1/items/7", 7),  # empty index: digits are an integer id
        ("x7", "/v1/items/x7", "x7"),  # a string id fixes the kind ...
    ],
)
def test_path_id_kind_on_an_empty_index(first: str, path_then: str, expect_id: object) -> None:
    idx = linr.Index(dim=2, device="cpu")
    with app_client(idx) as c:
        assert c.put(f"/v1/items/{first}", json={"vector": [1, 2]}).json()["id"] == expect_id
        assert c.get(path_then).json()["id"] == expect_id
        assert idx.id_kind == ("int" if isinstance(expect_id, int) else "str")


def test_string_index_reads_digit_paths_as_strings() -> None:
    idx = linr.Index(dim=2, device="cpu")
    idx.upsert(["a"], np.ones((1, 2), np.float32))
    with app_client(idx) as c:
        # ... after which "7" in a path is the string "7", never the integer 7.
        assert c.put("/v1/items/7", json={"vector": [1, 2]}).json()["id"] == "7"
        assert "7" in idx and c.get("/v1/items/7").json()["id"] == "7"
        assert c.put("/v1/items/with%2Fslash%20and%20space", json={"vector": [3, 4]}).status_code
        assert c.get("/v1/items/with%2Fslash%20and%20space").json()["vector"] == [3, 4]
        assert "with/slash and space" in idx
        long_id = "é" * 129  # 258 UTF-8 bytes
        err = error_of(c.get(f"/v1/items/{long_id}"), 422)
        assert "256" in err["message"]


def test_stats_reports_the_index() -> None:
    idx = linr.Index(dim=6, metric="cosine", quantization="int8", device="cpu")
    with app_client(idx) as c:
        c.post(
            "/v1/items",
            json={"items": [{"id": i, "vector": [1, 2, 3, 4, 5, i]} for i in range(10)]},
        )
        s = c.get("/v1/stats").json()
        assert s["count"] == 10 and s["dim"] == 6 and s["metric"] == "cosine"
        assert s["quantization"] == "int8" and s["device"] == "cpu"
        assert s["capacity"] >= 10 and s["memory_bytes"] > 0
        assert s["ingest"] is None
        assert {k: s[k] for k in ("count", "capacity", "memory_bytes")} == {
            k: idx.stats()[k] for k in ("count", "capacity", "memory_bytes")
        }
