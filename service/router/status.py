"""/v1/stats on the router: the shards' figures summed, each shard listed. (/healthz,
/readyz and /metrics are the service's own routes, service/routers/health.py, reading the
router's state: ready when every shard has a ready replica.)"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from service.deps import json_response
from service.router.models import ROUTER_ERRORS
from service.router.search import RouterDep
from service.router.state import passed_on, unavailable

stats_router = APIRouter(prefix="/v1", tags=["stats"], responses=ROUTER_ERRORS)

_SUMMED = ("count", "capacity", "memory_bytes")
_SUMMED_INGEST = ("applied", "ignored_stale", "dead_lettered", "errors", "lag")
_SHARED = ("dim", "metric", "quantization", "id_kind")


def _summed_ingest(parts: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    given = [p for p in parts if p]
    if not given:
        return None
    out: dict[str, Any] = {k: sum(int(p.get(k) or 0) for p in given) for k in _SUMMED_INGEST}
    out["offsets"] = {str(q): o for p in given for q, o in (p.get("offsets") or {}).items()}
    out["ready"] = all(bool(p.get("ready")) for p in given)
    return out


@stats_router.get("/stats", summary="The shards' figures, summed, and each shard's")
async def stats(state: RouterDep) -> Response:
    answers = await state.ask_all(
        "GET", "/v1/stats", [None] * len(state.shards), state.deadline(None)
    )
    for a in answers:
        if a.status is not None and not a.ok:
            raise passed_on(a)
    if any(a.status is None for a in answers):
        raise unavailable(answers)
    per = [a.body for a in answers]
    out: dict[str, Any] = {k: sum(int(s.get(k) or 0) for s in per) for k in _SUMMED}
    for k in _SHARED:
        out[k] = next((s[k] for s in per if s.get(k) is not None), None)
    out["device"] = ",".join(sorted({str(s.get("device")) for s in per}))
    out["ingest"] = _summed_ingest([s.get("ingest") for s in per])
    out["shards"] = {"asked": len(answers), "answered": len(answers)}
    out["per_shard"] = [
        {
            "shard": a.shard.index,
            "partitions": sorted(a.shard.partitions) if a.shard.partitions else None,
            "replicas": [
                {"url": r.url, "ready": r.ready, "healthy": r.healthy, "last_error": r.last_error}
                for r in a.shard.replicas
            ],
            "stats": a.body,
        }
        for a in answers
    ]
    return json_response(out)
