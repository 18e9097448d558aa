"""Every error leaves as `{"error": {"code": ..., "message": ...}}` (docs/service.md).

Bad input is a 4xx naming what is wrong; only a bug in linr itself may give a 500.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from linr.errors import FilterError, InvalidInput

log = logging.getLogger("linr.service")


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def invalid(message: str) -> ApiError:
    return ApiError(422, "invalid_input", message)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "overloaded",
    503: "not_ready",
}


# pydantic's names for the branches of a union ("constrained-int", "list[str]", ...).
_UNION_TAG = re.compile(
    r"^(constrained-|function-\w+)?(int|str|float|bool|list|dict|none)?(\[.*\])?$"
)


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    # ("body", "queries", 3, "k") -> "body.queries[3].k"; drop union-branch tags.
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out and isinstance(part, str) and _UNION_TAG.match(part) and part:
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def describe_validation(exc: RequestValidationError) -> tuple[int, str, str]:
    errors = list(exc.errors())
    if errors and errors[0].get("type") == "json_invalid":
        ctx = errors[0].get("ctx") or {}
        return 400, "invalid_json", f"request body is not valid JSON: {ctx.get('error', '?')}"
    parts = []
    for e in errors[:5]:
        where = _location(e.get("loc", ()))
        msg = str(e.get("msg", "invalid"))
        # Show the offending value when it is short; never echo huge inputs back.
        value = e.get("input")
        shown = repr(value) if isinstance(value, (int, float, str, bool)) else None
        if shown is not None and len(shown) <= 80 and e.get("type") != "missing":
            msg = f"{msg} (got {shown})"
        parts.append(f"{where}: {msg}" if where else msg)
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return 422, "invalid_request", "; ".join(parts) + more


def _routes(routes: list[Any]) -> Iterator[Any]:
    for route in routes:
        inner = getattr(route, "original_router", None)  # how FastAPI holds included routers
        yield from _routes(inner.routes) if inner is not None else (route,)


def allowed_methods(request: Request) -> list[str]:
    """Every method of every route whose path matches the request's (RFC 9110: Allow)."""
    methods: set[str] = set()
    for route in _routes(request.app.routes):
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(request.scope["path"]):
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, code, message = describe_validation(exc)
        return error_response(status, code, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = getattr(exc, "code", None) or _HTTP_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:  # the router names only the first route of the path
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return error_response(exc.status_code, code, str(exc.detail), headers)

    @app.exception_handler(InvalidInput)
    async def _invalid(request: Request, exc: InvalidInput) -> JSONResponse:
        # The one user-error type of linr (README "Use it from Python"); a route that adds
        # where it happened (`queries[3]: ...`) converts it itself (service/deps.py).
        code = "invalid_filter" if isinstance(exc, FilterError) else "invalid_input"
        return error_response(422, code, str(exc))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        # Bad input is handled before this point; reaching here is a linr bug, logged in full.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", f"internal error: {type(exc).__name__}")
