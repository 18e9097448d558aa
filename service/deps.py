"""Shared route plumbing: the app state as a dependency, and fast JSON responses."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, Request
from fastapi.responses import Response

from linr import FilterError, InvalidInput
from service.batcher import QueryError
from service.errors import ApiError, invalid
from service.state import AppState


async def get_state(request: Request) -> AppState:
    # async: FastAPI runs a sync dependency on its thread pool, a hop per request.
    state: AppState = request.app.state.linr
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def json_response(obj: Any, status: int = 200) -> Response:
    """Serialize without a second pass through pydantic: search answers are built from
    trusted arrays, and validating them again would cost more than the scan at small N.
    The routes still declare `response_model`, which documents the shape in OpenAPI."""
    body = json.dumps(obj, allow_nan=False, separators=(",", ":"))
    return Response(body, status_code=status, media_type="application/json")


def floats(x: np.ndarray) -> list[float | None]:
    """JSON numbers; a non-finite value (an fp16 overflow, say) becomes null, not a 500."""
    out: list[float | None] = x.tolist()
    if not np.isfinite(x).all():
        out = [v if v is not None and math.isfinite(v) else None for v in out]
    return out


def py_id(x: Any) -> int | str:
    return int(x) if isinstance(x, np.integer) else x


def index_error(e: BaseException, batch: bool = False) -> Exception:
    """An error raised by the index while serving a request. Only `InvalidInput` is the
    user's fault: it becomes a 422 naming the query of a batch (`queries[3]: ...`); any
    other exception is a bug, re-raised for the 500 handler (service/errors.py)."""
    where = ""
    if isinstance(e, QueryError):
        where = f"queries[{e.position}]: " if batch else ""
        e = e.error
    if isinstance(e, ApiError):
        return e
    if isinstance(e, FilterError):
        return ApiError(422, "invalid_filter", f"{where}{e}")
    if isinstance(e, InvalidInput):
        return invalid(f"{where}{e}")
    return e if isinstance(e, Exception) else RuntimeError(str(e))
