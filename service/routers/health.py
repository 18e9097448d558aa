"""Probes and metrics, open even with --api-key: /healthz, /readyz, /metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from service.deps import StateDep, json_response
from service.errors import ApiError
from service.models import ErrorBody, Status

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Status, summary="200 while the process is alive")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get(
    "/readyz",
    response_model=Status,
    responses={503: {"model": ErrorBody, "description": "Loading or catching up"}},
    summary="200 once the index is loaded and the ingester has caught up",
)
async def readyz(state: StateDep) -> Response:
    if not state.ready:
        raise ApiError(503, "not_ready", state.not_ready_reason())
    return json_response({"status": "ready"})


@router.get("/metrics", summary="Prometheus text format", response_class=Response)
async def metrics(state: StateDep) -> Response:
    # In a thread: the collector reads index.stats(), which waits for the index lock.
    body = await run_in_threadpool(generate_latest, state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
