"""The app factory: `create_app(settings)` builds a FastAPI app whose lifespan loads the
index (on a background thread), runs the search worker and the ingester, and stops them."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.concurrency import run_in_threadpool

from linr import Index
from linr.limits import MAX_DIM
from service.auth import BearerAuthMiddleware
from service.errors import install_error_handlers
from service.limits import BodyLimitMiddleware
from service.metrics import Metrics, MetricsMiddleware
from service.routers import health, items, search, stats
from service.settings import Settings
from service.state import AppState


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("linr")
    except PackageNotFoundError:
        return "0+unknown"


def _integer_bounds(node: Any) -> Any:
    """FastAPI's OpenAPI models hold bounds as floats, which rounds 2^63 - 1 up to 2^63 (an
    id the service refuses). Put integer bounds back as integers."""
    if isinstance(node, list):
        return [_integer_bounds(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _integer_bounds(v) for k, v in node.items()}
    if out.get("type") == "integer":
        for key in ("minimum", "maximum"):
            v = out.get(key)
            if isinstance(v, float) and v.is_integer():
                out[key] = min(int(v), 2**63 - 1)
    return out


def _vector_dim(node: Any, dim: int) -> Any:
    """Vectors (arrays of numbers, up to MAX_DIM of them) have exactly the index's D values."""
    if isinstance(node, list):
        return [_vector_dim(x, dim) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _vector_dim(v, dim) for k, v in node.items()}
    items = out.get("items")
    numbers = isinstance(items, dict) and items.get("type") == "number"
    if out.get("type") == "array" and numbers and out.get("maxItems") == MAX_DIM:
        out["minItems"] = out["maxItems"] = dim
    return out


def _id_kind(schema: dict[str, Any], kind: str) -> dict[str, Any]:
    """Ids of the kind the index uses (fixed by its first item): in paths and in bulk items."""
    int_id = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
    str_id = {"type": "string", "minLength": 1, "maxLength": 256}
    for ops in schema["paths"].values():
        for op in ops.values():
            for param in op.get("parameters", []):
                if param.get("in") == "path" and param.get("name") == "item_id":
                    keep = {
                        k: v for k, v in param["schema"].items() if k in ("title", "description")
                    }
                    param["schema"] = {**(int_id if kind == "int" else str_id), **keep}
    item = schema.get("components", {}).get("schemas", {}).get("BulkItem", {})
    if "id" in item.get("properties", {}):
        item["properties"]["id"] = {**(int_id if kind == "int" else str_id), "title": "Id"}
    return schema


def _settings_limits(schema: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Limits set by settings, where the schema can state them (the cost limits it cannot)."""
    comps = schema.get("components", {}).get("schemas", {})
    props = comps.get("SearchRequest", {}).get("properties", {})
    if "vectors" in props:
        props["vectors"]["maxItems"] = settings.max_vectors_per_query
    for branch in props.get("filter", {}).get("anyOf", []):
        if branch.get("type") == "string":
            branch["maxLength"] = settings.max_filter_chars
    items = comps.get("BulkRequest", {}).get("properties", {}).get("items")
    if items is not None:
        items["maxItems"] = settings.max_items_per_request
    return schema


def create_app(settings: Settings | None = None, *, index: Index | None = None) -> FastAPI:
    """`index`: serve this already-built `linr.Index` instead of loading one (embedding, tests)."""
    settings = settings if settings is not None else Settings()
    metrics = Metrics()
    state = AppState(settings, metrics, index)
    metrics.add_state(state.snapshot_for_metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Process-wide, so set when the app starts serving, not when it is built.
        sys.setswitchinterval(settings.gil_switch_interval_ms / 1000.0)
        state.start()
        try:
            yield
        finally:
            await run_in_threadpool(state.stop)

    app = FastAPI(
        title="linr",
        version=_version(),
        summary="Exact filtered vector retrieval with live updates.",
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.linr = state
    install_error_handlers(app)
    # Each router carries its full prefix, so a route's path is its whole template (the
    # metrics label), whatever FastAPI does with nested prefixes.
    for module in (health, search, items, stats):
        app.include_router(module.router)

    # Added innermost first: requests pass metrics -> auth -> body limit -> routes.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.api_key is not None:
        app.add_middleware(BearerAuthMiddleware, api_key=settings.api_key.get_secret_value())
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = _integer_bounds(
                get_openapi(
                    title=app.title, version=app.version, summary=app.summary, routes=app.routes
                )
            )
            schema = _settings_limits(schema, settings)
            # The dimension, once known (a loaded index, or --dim for a new one).
            dim = state.index.dim if state.index is not None else settings.dim
            if dim is not None:
                schema = _vector_dim(schema, dim)
            kind = state.index.id_kind if state.index is not None else None
            if kind is not None:
                schema = _id_kind(schema, kind)
            if settings.api_key is not None:
                comps = schema.setdefault("components", {})
                comps.setdefault("securitySchemes", {})["bearer"] = {
                    "type": "http",
                    "scheme": "bearer",
                }
                for path, ops in schema["paths"].items():
                    if path.startswith("/v1/"):
                        for op in ops.values():
                            op["security"] = [{"bearer": []}]
            if dim is None or kind is None:  # cache once the dimension and id kind are known
                return schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
