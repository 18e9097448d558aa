"""GET /v1/stats: the index's figures and, with Kafka, the ingester's."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from service.deps import StateDep, index_error, json_response
from service.models import ERROR_RESPONSES, StatsResponse

router = APIRouter(prefix="/v1", tags=["stats"], responses=ERROR_RESPONSES)


@router.get("/stats", response_model=StatsResponse, summary="Index size, memory and ingest state")
async def stats(state: StateDep) -> Response:
    index, batcher = state.require()
    try:
        out = await batcher.call(index.stats)  # on the worker: never blocks the event loop
    except Exception as e:
        raise index_error(e) from None
    out["ingest"] = state.ingester.stats() if state.ingester is not None else None
    out["queue_depth"] = batcher.depth
    return json_response(out)
