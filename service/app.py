"""The app factory: `create_app(settings)` builds a FastAPI app whose lifespan loads the
index (on a background thread), runs the search worker and the ingester, and stops them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.concurrency import run_in_threadpool

from linr import Index
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


def create_app(settings: Settings | None = None, *, index: Index | None = None) -> FastAPI:
    """`index`: serve this already-built `linr.Index` instead of loading one (embedding, tests)."""
    settings = settings if settings is not None else Settings()
    metrics = Metrics()
    state = AppState(settings, metrics, index)
    metrics.add_state(state.snapshot_for_metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
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
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
