"""Optional bearer-token auth on every /v1 path (docs/service.md). Checked first, before the
body is read, so an unauthenticated client learns nothing about its request but "401"."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from service.limits import send_error


class BearerAuthMiddleware:
    def __init__(self, app: ASGIApp, api_key: str, prefix: str = "/v1") -> None:
        self.app = app
        self._expected = api_key.encode()
        self._prefix = prefix

    def _protected(self, path: str) -> bool:
        return path == self._prefix or path.startswith(self._prefix + "/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._protected(scope["path"]):
            given = b""
            for name, value in scope["headers"]:
                if name == b"authorization":
                    given = value
                    break
            # The scheme is case-insensitive (RFC 7235: "bearer", "BEARER"), then one or more
            # spaces. compare_digest: the time taken does not depend on where keys differ.
            scheme, _, token = given.partition(b" ")
            ok = scheme.lower() == b"bearer" and hmac.compare_digest(
                token.lstrip(b" "), self._expected
            )
            if not ok:
                reason = "missing Authorization header" if not given else "wrong bearer token"
                await send_error(
                    send,
                    401,
                    "unauthorized",
                    f"{reason}; send 'Authorization: Bearer <key>'",
                    [(b"www-authenticate", b'Bearer realm="linr"')],
                )
                return
        await self.app(scope, receive, send)
