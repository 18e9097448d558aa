"""One error rule: only `linr.InvalidInput` is the user's fault (a 422 naming it); any
other exception raised while answering, a plain ValueError included, is a 500."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from svc_helpers import app_client, build_index, random_items

import linr

DIM = 4


def _failing_search(exc: Exception) -> Any:
    def search(*args: Any, **kwargs: Any) -> Any:
        raise exc

    return search


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (linr.InvalidInput("the user's mistake"), 422, "invalid_input"),
        (linr.FilterError("a bad filter"), 422, "invalid_filter"),
        (ValueError("an internal check"), 500, "internal"),
        (RuntimeError("a bug"), 500, "internal"),
    ],
)
def test_only_invalid_input_is_a_client_error(
    monkeypatch: pytest.MonkeyPatch, exc: Exception, status: int, code: str
) -> None:
    index = build_index(random_items(np.random.default_rng(0), 5, DIM), DIM)
    monkeypatch.setattr(index, "search", _failing_search(exc))
    with app_client(index) as c:
        r = c.post("/v1/search", json={"vector": [1.0] * DIM, "k": 2})
        assert r.status_code == status, r.text
        assert r.json()["error"]["code"] == code
        if status == 422:
            assert str(exc) in r.json()["error"]["message"]


def test_invalid_input_escaping_a_route_is_a_422(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one handler (service/errors.py) maps InvalidInput raised anywhere to a 422."""
    index = build_index(random_items(np.random.default_rng(0), 5, DIM), DIM)

    def stats() -> Any:
        raise linr.InvalidInput("no such thing")

    monkeypatch.setattr(index, "stats", stats)
    with app_client(index) as c:
        r = c.get("/v1/stats")
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input", r.text
