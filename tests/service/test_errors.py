"""Every documented error: a 4xx with the error body of docs/service.md, naming what is
wrong; never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from svc_helpers import app_client, build_index, error_of, random_items

DIM = 4


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    items = random_items(np.random.default_rng(0), 20, DIM)
    index = build_index(items, DIM)
    limits = {"max_body_bytes": 4096, "max_filter_depth": 3, "max_vectors_per_query": 3}
    with app_client(index, max_items_per_request=5, **limits) as c:
        yield c


V = [0.5, -1.0, 2.0, 0.25]


def raw(c: TestClient, path: str, body: bytes, method: str = "POST") -> Any:
    return c.request(method, path, content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"vector": [1.0, 2.0]}, "body.vector"),
        ({"vectors": [V, [1.0]]}, "body.vectors[1]"),
        ({"vector": V * 2}, "body.vector"),
    ],
)
def test_wrong_dimension(client: TestClient, body: dict[str, Any], where: str) -> None:
    err = error_of(client.post("/v1/search", json=body), 422)
    assert where in err["message"] and "dimension 4" in err["message"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals(client: TestClient, literal: str) -> None:
    body = f'{{"vector": [1.0, {literal}, 0, 0], "k": 3}}'.encode()
    err = error_of(raw(client, "/v1/search", body), 422)
    assert "body.vector[1]" in err["message"] and "finite" in err["message"]
    put = f'{{"vector": [1, 2, 3, {literal}]}}'.encode()
    assert "body.vector[3]" in error_of(raw(client, "/v1/items/1", put, "PUT"), 422)["message"]
    attr = f'{{"vector": [1, 2, 3, 4], "attributes": {{"score": {literal}}}}}'.encode()
    assert "score" in error_of(raw(client, "/v1/items/1", attr, "PUT"), 422)["message"]


def test_value_too_large_for_float32(client: TestClient) -> None:
    err = error_of(client.post("/v1/search", json={"vector": [1, 1e39, 0, 0]}), 422)
    assert "float32" in err["message"] and "body.vector[1]" in err["message"]


def test_unknown_filter_field(client: TestClient) -> None:
    for f in ('colour == "red"', {"field": "colour", "eq": "red"}):
        err = error_of(client.post("/v1/search", json={"vector": V, "filter": f}), 422)
        assert err["code"] == "invalid_filter" and "colour" in err["message"]


@pytest.mark.parametrize(
    "f",
    [
        "lang == ",
        'lang = "en"',
        '(lang == "en"',
        {"field": "lang", "eq": "en", "bogus": 1},
        {"and": "nope"},
        {"field": "ts", "gte": "soon"},
    ],
)
def test_bad_filter_syntax_or_kind(client: TestClient, f: Any) -> None:
    err = error_of(client.post("/v1/search", json={"vector": V, "filter": f}), 422)
    assert err["code"] == "invalid_filter", err


def test_filter_syntax_error_names_the_position(client: TestClient) -> None:
    err = error_of(client.post("/v1/search", json={"vector": V, "filter": "lang == "}), 422)
    assert "position 8" in err["message"] and "body.filter" in err["message"]


def test_filter_depth_limit(client: TestClient) -> None:
    deep: Any = {"field": "ts", "gte": 1}
    for _ in range(3):
        deep = {"not": deep}
    err = error_of(client.post("/v1/search", json={"vector": V, "filter": deep}), 422)
    assert "deeper than 3" in err["message"]
    text = "not (not (not (ts >= 1)))"
    err = error_of(client.post("/v1/search", json={"vector": V, "filter": text}), 422)
    assert "deeper than 3" in err["message"]
    at_limit = {"not": {"not": {"field": "ts", "gte": 1}}}  # depth 3
    assert client.post("/v1/search", json={"vector": V, "filter": at_limit}).status_code == 200


@pytest.mark.parametrize("k", [0, -1, 1001, 10**9, 2.5, True, "ten"])
def test_k_out_of_range_or_not_an_integer(client: TestClient, k: Any) -> None:
    err = error_of(client.post("/v1/search", json={"vector": V, "k": k}), 422)
    assert "body.k" in err["message"]


def test_k_limits_inclusive(client: TestClient) -> None:
    for k in (1, 1000):
        assert client.post("/v1/search", json={"vector": V, "k": k}).status_code == 200


def test_body_too_large_declared_and_chunked(client: TestClient) -> None:
    big = json.dumps({"vector": V, "filter": "x" * 5000}).encode()
    err = error_of(raw(client, "/v1/search", big), 413)
    assert "4096" in err["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is counted as it streams
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    r = client.post("/v1/search", content=chunks(), headers={"content-type": "application/json"})
    error_of(r, 413)
    assert client.post("/v1/search", json={"vector": V}).status_code == 200  # still serving


def test_malformed_json_is_400(client: TestClient) -> None:
    for body in (b'{"vector": [1, 2', b"", b"not json", b'{"vector": [1,2,3,4]}}'):
        err = error_of(raw(client, "/v1/search", body), 400 if body else 422)
        assert err["message"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "exactly one of"),
        ({"vector": V, "vectors": [V]}, "exactly one of"),
        ({"vector": V, "aggregate": "max"}, "only to 'vectors'"),
        ({"vectors": [V], "aggregate": "mean"}, "body.aggregate"),
        ({"vectors": [V] * 4}, "limit is 3"),
        ({"vectors": []}, "body.vectors"),
        ({"vector": []}, "body.vector"),
        ({"vector": V, "surprise": 1}, "body.surprise"),
        ({"vector": ["1", 2, 3, 4]}, "body.vector[0]"),
        ({"vector": V, "include_attributes": "yes please"}, "include_attributes"),
        ({"vector": V, "filter": 42}, "body.filter"),
        ([1, 2], "body"),
    ],
)
def test_search_body_shape(client: TestClient, body: Any, fragment: str) -> None:
    err = error_of(client.post("/v1/search", json=body), 422)
    assert fragment in err["message"], err


def test_batch_limits(client: TestClient) -> None:
    error_of(client.post("/v1/search/batch", json={"queries": []}), 422)
    over = {"queries": [{"vector": V}] * 1025}
    big_ok = {"max_body_bytes": 1 << 22}
    with app_client(
        build_index(random_items(np.random.default_rng(1), 5, DIM), DIM), **big_ok
    ) as c:
        err = error_of(c.post("/v1/search/batch", json=over), 422)
        assert "body.queries" in err["message"] and "1024" in err["message"]
    err = error_of(
        client.post("/v1/search/batch", json={"queries": [{"vector": V}, {"vector": [1]}]}), 422
    )
    assert "body.queries[1].vector" in err["message"]
    bad_filter = {"queries": [{"vector": V}, {"vector": V, "filter": "nope == 1"}]}
    err = error_of(client.post("/v1/search/batch", json=bad_filter), 422)
    assert "queries[1]" in err["message"] and "nope" in err["message"]


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("/v1/items/1", {"vector": V, "attributes": {"lang": 5}}, "lang"),  # kind clash
        ("/v1/items/1", {"vector": V, "attributes": {"9lives": 1}}, "9lives"),  # bad name
        ("/v1/items/1", {"vector": V, "attributes": {"tags": [1, 2]}}, "tags"),
        ("/v1/items/1", {"vector": V, "attributes": {"x": {"nested": 1}}}, "body.attributes.x"),
        ("/v1/items/1", {"vector": V, "version": -1}, "body.version"),
        ("/v1/items/1", {"attributes": {}}, "body.vector"),
        ("/v1/items/abc", {"vector": V}, "integer ids"),  # this index uses integer ids
        ("/v1/items/9223372036854775808", {"vector": V}, "2^63"),
        ("/v1/items/1", {"vector": V[:3]}, "dimension"),
    ],
)
def test_put_errors(client: TestClient, path: str, body: Any, fragment: str) -> None:
    err = error_of(client.put(path, json=body), 422)
    assert fragment in err["message"], err


@pytest.mark.parametrize(
    ("items", "fragment"),
    [
        ([{"id": 2**63, "vector": V}], "body.items[0].id"),
        ([{"id": True, "vector": V}], "body.items[0].id"),
        ([{"id": -3, "vector": V}], "body.items[0].id"),
        ([{"id": "x" * 257, "vector": V}], "body.items[0].id"),
        ([{"id": 1, "vector": V}, {"id": 2, "vector": [1]}], "body.items[1].vector"),
        ([{"id": 1, "vector": V}, {"id": "s", "vector": V}], "integer"),  # kind clash
        ([{"id": i, "vector": V} for i in range(6)], "limit is 5"),
        ([], "body.items"),
    ],
)
def test_bulk_errors_write_nothing(client: TestClient, items: Any, fragment: str) -> None:
    before = client.get("/v1/stats").json()["count"]
    err = error_of(client.post("/v1/items", json={"items": items}), 422)
    assert fragment in err["message"], err
    assert client.get("/v1/stats").json()["count"] == before


def test_not_found(client: TestClient) -> None:
    assert error_of(client.get("/v1/items/123456"), 404)["code"] == "not_found"
    assert error_of(client.delete("/v1/items/123456"), 404)["code"] == "not_found"
    assert error_of(client.get("/v1/nothing-here"), 404)["code"] == "not_found"
    assert error_of(client.delete("/v1/search"), 405)["code"] == "method_not_allowed"
