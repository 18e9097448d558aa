"""Bearer-token auth (--api-key): every /v1 endpoint needs it, the probes don't."""

from __future__ import annotations

import httpx
import pytest
from svc_helpers import app_client, error_of, live_server

import linr
from linr.client import ApiError, Client

KEY = "s3cret-key"
V1 = [
    ("POST", "/v1/search", {"vector": [1, 0]}),
    ("POST", "/v1/search/batch", {"queries": [{"vector": [1, 0]}]}),
    ("PUT", "/v1/items/1", {"vector": [1, 0]}),
    ("GET", "/v1/items/1", None),
    ("DELETE", "/v1/items/1", None),
    ("POST", "/v1/items", {"items": [{"id": 2, "vector": [0, 1]}]}),
    ("GET", "/v1/stats", None),
    ("GET", "/v1/anything", None),
]
OPEN = ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"]


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong", KEY, f"Bearer {KEY} ", f"Basic {KEY}", f"Bearer{KEY}", f"Bear {KEY}"],
)
def test_v1_refuses_without_the_right_token(header: str | None) -> None:
    with app_client(linr.Index(dim=2, device="cpu"), api_key=KEY) as c:
        headers = {"Authorization": header} if header is not None else {}
        for method, path, body in V1:
            r = c.request(method, path, json=body, headers=headers)
            assert error_of(r, 401)["code"] == "unauthorized"
            assert r.headers["www-authenticate"].startswith("Bearer")
        for path in OPEN:
            assert c.get(path, headers=headers).status_code == 200, path


def test_v1_accepts_the_right_token_and_checks_it_before_the_body() -> None:
    with app_client(linr.Index(dim=2, device="cpu"), api_key=KEY, max_body_bytes=2048) as c:
        auth = {"Authorization": f"Bearer {KEY}"}
        for method, path, body in V1[:-1]:
            r = c.request(method, path, json=body, headers=auth)
            assert r.status_code == 200, (path, r.text)
        # No token: a broken or oversized body is still just "401".
        garbage = {"content-type": "application/json"}
        assert c.post("/v1/search", content=b"{", headers=garbage).status_code == 401
        assert c.post("/v1/search", content=b"x" * 5000, headers=garbage).status_code == 401
        assert c.post("/v1/search", content=b"{", headers={**garbage, **auth}).status_code == 400


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR", "Bearer "])
def test_the_scheme_is_case_insensitive(scheme: str) -> None:
    """RFC 7235: the auth scheme is case-insensitive, then one or more spaces."""
    with app_client(linr.Index(dim=2, device="cpu"), api_key=KEY) as c:
        r = c.get("/v1/stats", headers={"Authorization": f"{scheme} {KEY}"})
        assert r.status_code == 200, r.text
        assert c.get("/v1/stats", headers={"Authorization": f"{scheme} x"}).status_code == 401


def test_without_api_key_no_token_is_needed() -> None:
    with app_client(linr.Index(dim=2, device="cpu")) as c:
        for method, path, body in V1[:-1]:
            assert c.request(method, path, json=body).status_code == 200, path
        assert "securitySchemes" not in c.get("/openapi.json").json().get("components", {})


def test_openapi_documents_the_bearer_scheme() -> None:
    with app_client(linr.Index(dim=2, device="cpu"), api_key=KEY) as c:
        spec = c.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    assert spec["paths"]["/v1/search"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in spec["paths"]["/healthz"]["get"]


def test_auth_over_a_real_server_and_the_client() -> None:
    with live_server(linr.Index(dim=2, device="cpu"), api_key=KEY) as srv:
        assert httpx.post(srv.url + "/v1/search", json={"vector": [1, 0]}).status_code == 401
        with Client(srv.url) as anonymous, pytest.raises(ApiError) as e:
            anonymous.stats()
        assert e.value.status == 401 and e.value.code == "unauthorized"
        with Client(srv.url, api_key=KEY) as c:
            assert c.upsert(5, [0.5, 0.5])["created"] is True
            assert [h["id"] for h in c.search([1, 0])] == [5]
            assert c.ready()
