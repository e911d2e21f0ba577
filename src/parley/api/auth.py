"""API keys: `x-api-key` or `Authorization: Bearer`, compared in constant time; /health stays open."""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import error_body
from .playground import PATHS as PLAYGROUND_PATHS

# The playground page and its assets load without a key; only the API calls they make need one.
OPEN_PATHS = frozenset({"/health", *PLAYGROUND_PATHS})


def presented_key(headers: dict[bytes, bytes]) -> bytes | None:
    if key := headers.get(b"x-api-key"):
        return key
    scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
    return token.strip() if scheme.lower() == b"bearer" and token.strip() else None


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, keys: list[str]) -> None:
        self.app = app
        self._keys = [k.encode() for k in keys]

    def _valid(self, key: bytes) -> bool:
        # Every key is compared, each in constant time: timing tells nothing about which or how much matched.
        return sum(hmac.compare_digest(key, known) for known in self._keys) > 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope.get("method") == "OPTIONS":
            await self.app(scope, receive, send)
            return
        key = presented_key(dict(scope.get("headers", ())))
        if key is not None and self._valid(key):
            await self.app(scope, receive, send)
            return
        message = ("invalid x-api-key" if key is not None
                   else "x-api-key header is required (or Authorization: Bearer <key>)")
        body = json.dumps(error_body(scope["path"], "authentication_error", message)).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
