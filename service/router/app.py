"""The router's app factory: `create_router_app(settings)`, with the service's error shapes,
auth, body limit and request metrics (service.errors, .auth, .limits, .metrics)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.app import _version
from service.auth import BearerAuthMiddleware
from service.errors import install_error_handlers
from service.limits import BodyLimitMiddleware
from service.metrics import MetricsMiddleware
from service.router import items, search, status
from service.router.metrics import RouterMetrics
from service.router.settings import RouterSettings
from service.router.state import RouterState
from service.routers import health


def create_router_app(settings: RouterSettings) -> FastAPI:
    metrics = RouterMetrics()
    state = RouterState(settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(
        title="linr router",
        version=_version(),
        summary="Exact filtered vector retrieval over sharded, replicated linr services.",
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.linr = state
    install_error_handlers(app)
    # The probes are the service's: they read `ready`, `not_ready_reason()` and `metrics`
    # of the app's state, which RouterState has too.
    for r in (health.router, search.router, items.router, status.stats_router):
        app.include_router(r)
    # Added innermost first: requests pass metrics -> auth -> body limit -> routes.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.api_key is not None:
        app.add_middleware(BearerAuthMiddleware, api_key=settings.api_key.get_secret_value())
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
