"""POST /v1/search and /v1/search/batch on the router: every shard asked (one replica
each), their top-k merged exactly (service.router.merge)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from service.deps import json_response
from service.errors import invalid
from service.router.fanout import Answer
from service.router.merge import merge_hits
from service.router.models import (
    ROUTER_ERRORS,
    ROUTER_FIELDS,
    RouterBatchRequest,
    RouterSearchRequest,
)
from service.router.state import RouterState, passed_on, unavailable

router = APIRouter(prefix="/v1", tags=["search"], responses=ROUTER_ERRORS)

# A search with `after` may wait up to `wait_ms` on the shard; that is added to the deadline.
_DEFAULT_WAIT_MS = 1000.0


async def get_router(request: Request) -> RouterState:
    state: RouterState = request.app.state.linr
    return state


RouterDep = Annotated[RouterState, Depends(get_router)]


def _per_shard(state: RouterState, q: RouterSearchRequest, where: str) -> list[dict[str, Any]]:
    """The body each shard gets: the request less the router's fields, with `after` cut to
    the partitions that shard reads (and left out where it reads none of them)."""
    body = q.model_dump(exclude_unset=True, exclude=ROUTER_FIELDS)
    if not q.after:
        return [body] * len(state.shards)
    wanted: dict[int, int] = {}
    for p, offset in q.after.items():
        if not p.isdigit() or state.owner(int(p)) is None:
            raise invalid(f"{where}after: no shard reads partition {p!r}")
        wanted[int(p)] = offset
    bodies = []
    for s in state.shards:
        mine = {str(p): o for p, o in wanted.items() if s.partitions and p in s.partitions}
        b = {k: v for k, v in body.items() if k not in ("after", "wait_ms")}
        if mine:
            b["after"] = mine
            if "wait_ms" in body:
                b["wait_ms"] = body["wait_ms"]
        bodies.append(b)
    return bodies


def _wait_s(queries: list[RouterSearchRequest]) -> float:
    """The longest `wait_ms` of the queries with `after` (the shards check its value)."""
    waits = [0.0]
    for q in queries:
        if q.after:
            w = getattr(q, "wait_ms", None)
            if isinstance(w, (int, float)) and not isinstance(w, bool) and 0 <= w <= 60_000:
                waits.append(float(w))
            else:
                waits.append(_DEFAULT_WAIT_MS)
    return max(waits) / 1e3


def _settle(answers: list[Answer], allow_partial: bool) -> dict[str, Any]:
    """Raise the answer's error, if any; else the fields every router answer carries."""
    for a in answers:
        if a.status is not None and not a.ok:
            raise passed_on(a)
    missing = [a.shard for a in answers if a.status is None]
    if missing and (not allow_partial or len(missing) == len(answers)):
        raise unavailable(answers)
    answered = len(answers) - len(missing)
    out: dict[str, Any] = {"shards": {"asked": len(answers), "answered": answered}}
    if missing:
        out["partial"] = True
        out["missing_shards"] = [
            {"shard": s.index, "replicas": [r.url for r in s.replicas], "error": a.error}
            for s, a in ((a.shard, a) for a in answers if a.status is None)
        ]
    return out


def _merged(lists: list[list[dict[str, Any]]], k: int, took_ms: float) -> dict[str, Any]:
    hits = merge_hits(lists, k)
    return {"results": hits, "count": len(hits), "took_ms": took_ms}


@router.post("/search", summary="Top-k search over every shard")
async def search(body: RouterSearchRequest, state: RouterDep) -> Response:
    """As `linr serve`'s /v1/search, plus `timeout_ms`, `allow_partial`; the answer adds
    `shards` (asked, answered) and, when partial, `partial` and `missing_shards`."""
    t0 = time.perf_counter()
    bodies = _per_shard(state, body, "body.")
    deadline = state.deadline(body.timeout_ms) + _wait_s([body])
    answers = await state.search_all(bodies, deadline)
    extra = _settle(answers, body.allow_partial)
    lists = [a.body["results"] for a in answers if a.ok]
    out = _merged(lists, body.k, (time.perf_counter() - t0) * 1e3)
    return json_response({**out, **extra})


@router.post("/search/batch", summary="Many queries over every shard")
async def search_batch(body: RouterBatchRequest, state: RouterDep) -> Response:
    t0 = time.perf_counter()
    per_query = [_per_shard(state, q, f"body.queries[{i}].") for i, q in enumerate(body.queries)]
    bodies = [{"queries": [pq[s] for pq in per_query]} for s in range(len(state.shards))]
    deadline = state.deadline(body.timeout_ms) + _wait_s(body.queries)
    answers = await state.ask_all("POST", "/v1/search/batch", bodies, deadline)
    extra = _settle(answers, body.allow_partial)
    ok = [a.body["results"] for a in answers if a.ok]
    took = (time.perf_counter() - t0) * 1e3
    results = [
        _merged([shard[i]["results"] for shard in ok], q.k, took)
        for i, q in enumerate(body.queries)
    ]
    return json_response({"results": results, "took_ms": took, **extra})
