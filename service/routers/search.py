"""POST /v1/search and /v1/search/batch: validated here, answered by the micro-batcher."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask

from service.batcher import Hits
from service.body import JsonRoute
from service.cost import check_cost
from service.deps import StateDep, floats, index_error, json_response, py_id
from service.memory import release_freed_memory
from service.models import (
    ERROR_RESPONSES,
    BatchSearchRequest,
    BatchSearchResponse,
    SearchRequest,
    SearchResponse,
)
from service.validate import to_query
from service.writes import parse_after, wait_for_offsets

router = APIRouter(prefix="/v1", tags=["search"], responses=ERROR_RESPONSES, route_class=JsonRoute)

# Answers with this many hits or more are streamed in pieces of about _PIECE_BYTES (each
# ~1.6 ms of the event loop: 39 bytes and 4 us to serialize a hit on the dev machine).
_STREAM_HITS = 20_000
_PIECE_BYTES = 16 << 10


def _answer(h: Hits, took_ms: float) -> dict[str, Any]:
    scores = floats(h.scores)
    results: list[dict[str, Any]]
    if h.attributes is None:
        results = [{"id": py_id(i), "score": s} for i, s in zip(h.ids, scores, strict=True)]
    else:
        results = [
            {"id": py_id(i), "score": s, "attributes": a}
            for i, s, a in zip(h.ids, scores, h.attributes, strict=True)
        ]
    return {"results": results, "count": len(results), "took_ms": took_ms}


@router.post("/search", response_model=SearchResponse, summary="Top-k search, one query")
async def search(body: SearchRequest, state: StateDep) -> Response:
    """One query vector (`vector`), or a multi-embedding query (`vectors` + `aggregate`),
    with an optional filter. Concurrent requests share one scan (micro-batching)."""
    t0 = time.perf_counter()
    index, batcher = state.require()
    query = to_query(body, index.dim, state.settings, "body.")
    check_cost([query], state.settings, index.id_kind == "str")
    if body.after:
        await wait_for_offsets(state.ingester, parse_after(body.after, "body."), body.wait_ms)
    try:
        (hits,) = await batcher.search([query])
    except Exception as e:
        raise index_error(e) from None
    return json_response(_answer(hits, (time.perf_counter() - t0) * 1e3))


@router.post(
    "/search/batch", response_model=BatchSearchResponse, summary="Many queries in one request"
)
async def search_batch(body: BatchSearchRequest, state: StateDep) -> Response:
    """Up to 1024 search bodies; each answered as by /v1/search, in order."""
    t0 = time.perf_counter()
    index, batcher = state.require()
    queries = [
        to_query(q, index.dim, state.settings, f"body.queries[{i}].")
        for i, q in enumerate(body.queries)
    ]
    check_cost(queries, state.settings, index.id_kind == "str")
    # One wait for the whole batch: every query's `after` and the batch's own, the longest
    # wait_ms among those that asked.
    after = parse_after(body.after or {}, "body.")
    waits = [body.wait_ms] if body.after else []
    for i, q in enumerate(body.queries):
        if q.after:
            for p, o in parse_after(q.after, f"body.queries[{i}].").items():
                after[p] = max(after.get(p, -1), o)
            waits.append(q.wait_ms)
    if after:
        await wait_for_offsets(state.ingester, after, max(waits))
    try:
        hits = await batcher.search(queries)
    except Exception as e:
        raise index_error(e, batch=True) from None
    took = (time.perf_counter() - t0) * 1e3
    if sum(len(h.ids) for h in hits) < _STREAM_HITS:
        return json_response({"results": [_answer(h, took) for h in hits], "took_ms": took})
    return StreamingResponse(
        _stream(hits, took),
        media_type="application/json",
        background=BackgroundTask(release_freed_memory),
    )


async def _stream(hits: list[Hits], took: float) -> AsyncIterator[bytes]:
    """A large answer, a few queries at a time, letting other requests run between pieces:
    serializing 256,000 hits holds the event loop (and the GIL) for ~1 s in one piece."""
    yield b'{"results":['
    piece: list[str] = []
    size = 0
    for i, h in enumerate(hits):
        text = json.dumps(_answer(h, took), allow_nan=False, separators=(",", ":"))
        piece.append(text if i == 0 else "," + text)
        size += len(text)
        if size >= _PIECE_BYTES:
            yield "".join(piece).encode()
            piece, size = [], 0
            await asyncio.sleep(0)
    yield ("".join(piece) + f'],"took_ms":{json.dumps(took)}}}').encode()
