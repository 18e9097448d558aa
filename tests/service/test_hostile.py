"""Valid-but-hostile HTTP input, through a real uvicorn: each gets its documented 4xx (never a
500 or a dropped connection), and the OpenAPI spec states what the service enforces."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from svc_helpers import LiveServer, build_index, error_of, live_server, random_items

from service import Settings, create_app

DIM = 3
KEY = "hostile-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def srv() -> Iterator[LiveServer]:
    index = build_index(random_items(np.random.default_rng(1), 10, DIM), DIM)
    with live_server(index, api_key=KEY) as s:
        yield s


def _send(srv: LiveServer, method: str, path: str, body: bytes | None = None) -> httpx.Response:
    headers = {**AUTH, "content-type": "application/json"}
    return httpx.request(method, srv.url + path, content=body, headers=headers, timeout=30)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
@pytest.mark.parametrize("digits", [20, 4301, 5000, 12_000])
def test_a_huge_integer_path_id_is_422(srv: LiveServer, method: str, digits: int) -> None:
    body = b'{"vector": [1, 2, 3]}' if method == "PUT" else None
    err = error_of(_send(srv, method, "/v1/items/" + "7" * digits, body), 422)
    assert err["code"] == "invalid_input" and "not an integer id in [0, 2^63)" in err["message"]
    assert f"({digits} characters)" in err["message"]


def test_leading_zeros_are_the_same_integer_id(srv: LiveServer) -> None:
    item = _send(srv, "GET", "/v1/items/" + "0" * 5000 + "3")
    assert item.status_code == 200 and item.json()["id"] == 3


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        (b'{"vector": [1, 2, 3], "k": ' + b"9" * 5000 + b"}", "number_too_long", "4300 digits"),
        (b'{"vector": [1, 2, 3], "k": -' + b"9" * 4400 + b"}", "number_too_long", "4300 digits"),
        (b'{"vector": ' + b"[" * 1000 + b"]" * 1000 + b"}", "body_too_deep", "200 levels"),
        (b'{"filter": ' + b'{"not": ' * 100_000 + b"1" + b"}" * 100_001, "body_too_deep", "200"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/search", "/v1/search/batch", "/v1/items"])
def test_deep_bodies_and_long_numbers_are_422(
    srv: LiveServer, body: bytes, code: str, fragment: str, path: str
) -> None:
    err = error_of(_send(srv, "POST", path, body), 422)
    assert err["code"] == code and fragment in err["message"], err


def test_malformed_json_is_still_400(srv: LiveServer) -> None:
    err = error_of(_send(srv, "POST", "/v1/search", b'{"vector": [1, 2'), 400)
    assert err["code"] == "invalid_json" and "line 1" in err["message"]


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer"])
def test_the_bearer_scheme_is_case_insensitive(srv: LiveServer, scheme: str) -> None:
    r = httpx.get(srv.url + "/v1/stats", headers={"Authorization": f"{scheme} {KEY}"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/v1/items/5", "DELETE, GET, PUT"),
        ("PATCH", "/v1/items/5", "DELETE, GET, PUT"),
        ("GET", "/v1/items", "POST"),
        ("GET", "/v1/search", "POST"),
    ],
)
def test_405_allows_every_method_of_the_path(
    srv: LiveServer, method: str, path: str, allow: str
) -> None:
    r = _send(srv, method, path, b"{}")
    assert error_of(r, 405)["code"] == "method_not_allowed"
    assert r.headers["allow"] == allow


def test_openapi_states_the_dimension_ids_and_every_status(srv: LiveServer) -> None:
    spec = httpx.get(srv.url + "/openapi.json").json()
    schemas = spec["components"]["schemas"]
    vector = schemas["SearchRequest"]["properties"]["vector"]
    assert vector["minItems"] == vector["maxItems"] == DIM
    assert schemas["ItemBody"]["properties"]["vector"]["maxItems"] == DIM
    multi = schemas["SearchRequest"]["properties"]["vectors"]
    assert multi["items"]["maxItems"] == DIM and multi["maxItems"] == 64  # the setting
    item = spec["paths"]["/v1/items/{item_id}"]
    assert item["get"]["parameters"][0]["schema"]["type"] == "integer"  # an int-id index
    for method in ("put", "get", "delete"):
        assert "404" in item[method]["responses"], method
    assert schemas["BulkItem"]["properties"]["id"]["type"] == "integer"


def test_the_dimension_is_left_open_while_unknown() -> None:
    app_spec = create_app(Settings(index_dir="/nonexistent")).openapi()
    vector = app_spec["components"]["schemas"]["SearchRequest"]["properties"]["vector"]
    assert vector["maxItems"] == 65536
