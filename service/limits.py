"""Request bodies: the size limit, enforced before the body is parsed (413 otherwise), and
JSON whatever the declared type.

A declared Content-Length over the limit is refused without reading; a chunked body is read
up to the limit and refused as soon as it passes it. The accepted body is replayed to the app.
Every body of this API is JSON, so one sent without a Content-Type or as a form (what
`curl -d` declares) is read as JSON rather than refused.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


async def send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer with the error body of docs/service.md from plain ASGI middleware."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _send_413(send: Send, limit: int) -> None:
    # Connection: close, since the rest of an over-long body is left unread.
    message = f"request body is over the limit of {limit} bytes"
    await send_error(send, 413, "body_too_large", message, [(b"connection", b"close")])


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        ctype = next((v for n, v in headers if n == b"content-type"), b"")
        if ctype in (b"", b"application/x-www-form-urlencoded"):
            headers = [(n, v) for n, v in headers if n != b"content-type"]
            # In place: outer middleware (metrics) reads the route from this same dict.
            scope["headers"] = [*headers, (b"content-type", b"application/json")]
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await _send_413(send, self.max_bytes)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_413(send, self.max_bytes)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server would

        await self.app(scope, replay, send)
