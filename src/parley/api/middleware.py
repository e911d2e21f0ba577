"""Pure-ASGI middleware: a request id on every response and log line, an access log and request metrics,
and the request body size limit."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_body, request_id_var

log = logging.getLogger("parley.access")


class RequestIdLogFilter(logging.Filter):
    """Puts the current request's id on every log record as `request_id`."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int,
                 on_response: Callable[[str, int], None] | None = None,
                 path_limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self._on_response = on_response
        self._path_limits = path_limits or {}  # path suffix → its own body limit (a batch's 256 MB)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req_{secrets.token_hex(12)}"
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started, status = time.monotonic(), 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"request-id", request_id.encode())]
            await send(message)

        try:
            await self._limited(scope, receive, send_with_id)
        finally:
            # The route's template, not the raw path: label values stay few whatever clients send.
            route = getattr(scope.get("route"), "path", "unmatched")
            log.info("%s %s %s %.3fs", scope.get("method"), scope["path"], status or "-", time.monotonic() - started)
            if self._on_response is not None:
                self._on_response(route, status or 500)
            request_id_var.reset(token)

    def _limit(self, path: str) -> int:
        return next((limit for suffix, limit in self._path_limits.items() if path.endswith(suffix)),
                    self.max_body_bytes)

    async def _limited(self, scope: Scope, receive: Receive, send_with_id: Send) -> None:
        limit = self._limit(scope["path"])
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._too_large(scope["path"], send_with_id, limit)
            return
        seen = 0

        async def receive_limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # a chunked body with no declared length
                    raise HTTPException(413, self._too_large_message(limit))
            return message

        await self.app(scope, receive_limited, send_with_id)

    def _too_large_message(self, limit: int) -> str:
        return f"Request exceeds the maximum size of {limit} bytes."

    async def _too_large(self, path: str, send: Send, limit: int) -> None:
        body = json.dumps(error_body(path, "request_too_large", self._too_large_message(limit))).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
