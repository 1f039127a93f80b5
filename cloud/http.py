"""HTTP details every endpoint shares, as one small ASGI middleware (pure ASGI: nothing is
buffered, the ingest path pays one header look-up):

- OPTIONS on a path the API has answers 204 with `Allow` listing exactly its methods (every
  route with that path, not only the first one Starlette happens to match);
- a 405 carries the same `Allow`;
- a request body is bounded: MAX_JSON_BYTES for every endpoint except the raw ingest bodies,
  and the bundle upload, which their own dependencies bound (protocol.batch and
  protocol.bundle limits). Too large: 413 with a reason,
  before the app reads a byte of it when Content-Length says so, while reading otherwise;
- a NUL character in the path or the query is refused with 422 and its reason before any
  route sees it (PostgreSQL's text cannot hold one, and no name or filter of ours has one:
  the same answer on either backend).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match

from protocol.batch import INGEST_PATH

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_JSON_BYTES = 1 << 20
# /api/v1/ingest and /api/v1/ingest/gap bound their own bodies, and so does a bundle upload
# (protocol.bundle.MAX_BUNDLE_BYTES, just above MAX_JSON_BYTES)
RAW_BODY_PREFIXES = (INGEST_PATH, "/api/v1/bundles")


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> list[str]:
    """Every method some route answers for the scope's path (HEAD with GET)."""
    methods: set[str] = set()
    for route in routes:
        match, _ = route.matches({**scope, "method": "GET", "type": "http"})
        route_methods = getattr(route, "methods", None)
        if match != Match.NONE and route_methods:
            methods |= set(route_methods)
    return sorted(methods | {"OPTIONS"}) if methods else []


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]],
                  body: bytes = b"") -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _error(detail: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    body = json.dumps({"detail": detail}).encode()
    return [(b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode())], body


class Methods:
    def __init__(
        self, app: ASGIApp, routes: Callable[[], Sequence[BaseRoute]],
        max_body: int = MAX_JSON_BYTES,
    ) -> None:
        self.app = app
        self.routes = routes  # every route of the app (asked when needed: routes may be added)
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            methods = allowed_methods(self.routes(), scope)
            if methods:
                await _answer(send, 204, [(b"allow", ", ".join(methods).encode())])
                return
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            headers, body = _error("the path or query holds a NUL character (%00)")
            await _answer(send, 422, headers, body)
            return
        bounded = not scope["path"].startswith(RAW_BODY_PREFIXES)
        if bounded:
            for name, value in scope.get("headers", ()):
                if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                    headers, body = _error(f"request body larger than {self.max_body} bytes")
                    await _answer(send, 413, headers, body)
                    return
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if bounded and message.get("type") == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    # the app's handler answers it (FastAPI passes HTTPException through)
                    raise HTTPException(413, f"request body larger than {self.max_body} bytes")
            return message

        async def fixing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                allow = ", ".join(allowed_methods(self.routes(), scope)).encode()
                message["headers"] = [
                    (k, v) for k, v in message.get("headers", ()) if k.lower() != b"allow"
                ] + [(b"allow", allow)]
            await send(message)

        await self.app(scope, bounded_receive, fixing_send)
