"""Helpers for the service tests: real indexes on random data, the app in-process
(FastAPI's TestClient) and served by a real uvicorn on a free loopback port.

(A module of its own, not conftest.py, so test modules can import it by a unique name.)"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import numpy as np
import torch
import uvicorn
from fastapi.testclient import TestClient

import linr
from linr.filters import parse_filter
from linr.filters.reference import evaluate_reference
from linr.testing.topk import assert_same_topk
from linr.testing.wait import wait_until
from service import Settings, create_app

LANGS = ["en", "fr", "de", "ja"]
TAGS = ["ml", "gpu", "db", "web", "ops"]


def random_items(rng: np.random.Generator, n: int, dim: int, first_id: int = 0) -> dict[str, Any]:
    """n items: ids first_id.., gaussian vectors, attributes of every kind (some absent)."""
    x = rng.standard_normal((n, dim)).astype(np.float32)
    attrs = []
    for _ in range(n):
        a: dict[str, Any] = {
            "lang": LANGS[int(rng.integers(len(LANGS)))],
            "ts": int(rng.integers(0, 1000)),
            "score": float(rng.random()),
            "flag": bool(rng.random() < 0.5),
        }
        if rng.random() < 0.7:  # a field absent on some items
            a["tags"] = sorted({TAGS[int(i)] for i in rng.integers(len(TAGS), size=2)})
        attrs.append(a)
    return {"ids": list(range(first_id, first_id + n)), "vectors": x, "attributes": attrs}


def build_index(items: dict[str, Any], dim: int, metric: str = "ip", **kw: Any) -> linr.Index:
    idx = linr.Index(dim=dim, metric=metric, device="cpu", **kw)
    if items["ids"]:
        idx.upsert(items["ids"], items["vectors"], items["attributes"])
    return idx


def exact(
    items: dict[str, Any], q: np.ndarray, k: int, metric: str = "ip", filter: Any = None
) -> tuple[list[Any], np.ndarray]:
    """Expected (ids, scores) of one query: linr.knn over the items matching the filter."""
    node = parse_filter(filter) if filter is not None else None
    mask = np.array([node is None or evaluate_reference(node, a) for a in items["attributes"]])
    if not len(items["ids"]):
        return [], np.zeros(0)
    s, i = linr.knn(q[None], items["vectors"], k, metric=metric, mask=torch.from_numpy(mask))
    keep = i[0] >= 0
    return [items["ids"][j] for j in i[0][keep].tolist()], s[0][keep].numpy()


def assert_hits(results: list[dict[str, Any]], ids: list[Any], scores: np.ndarray) -> None:
    got_ids, got_scores = [r["id"] for r in results], [r["score"] for r in results]
    # ids exactly but for fp32 near-ties; scores: fp32 scan vs float64 reference, a few
    # ulps of the score's magnitude.
    assert_same_topk([got_ids], [got_scores], [ids], [scores], 1e-5, 1e-5)


def same_attributes(got: dict[str, Any], want: dict[str, Any]) -> bool:
    """Attributes equal as docs/service.md defines them: a keyword list is a set of values."""

    def norm(a: dict[str, Any]) -> dict[str, Any]:
        return {k: sorted(v) if isinstance(v, list) else v for k, v in a.items()}

    return norm(got) == norm(want)


@contextmanager
def app_client(index: Any = None, **settings: Any) -> Iterator[TestClient]:
    """The app in-process, lifespan running, ready (when it can get ready)."""
    if index is not None:
        settings.setdefault("dim", index.dim)
    app = create_app(Settings(**settings), index=index)
    with TestClient(app, raise_server_exceptions=False) as client:
        if index is not None:
            wait_until(lambda: client.get("/readyz").status_code == 200, what="ready")
        yield client


class LiveServer:
    """create_app(...) served by uvicorn on 127.0.0.1 in a thread (real sockets, real HTTP)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))  # held from now on: no race for the port
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    def __enter__(self) -> LiveServer:
        self.thread.start()
        wait_until(lambda: self.server.started, what="uvicorn start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()
        assert not self.thread.is_alive(), "uvicorn did not stop"

    @property
    def state(self) -> Any:
        return self.app.state.linr

    def wait_ready(self) -> None:
        wait_until(lambda: httpx.get(self.url + "/readyz").status_code == 200, what="ready")


@contextmanager
def live_server(index: Any = None, **settings: Any) -> Iterator[LiveServer]:
    if index is not None:
        settings.setdefault("dim", index.dim)
    with LiveServer(create_app(Settings(**settings), index=index)) as server:
        if index is not None:
            server.wait_ready()
        yield server


def error_of(r: httpx.Response, status: int) -> dict[str, str]:
    """The error body (docs/service.md) of a response that must have this status."""
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"]
    err: dict[str, str] = body["error"]
    return err
