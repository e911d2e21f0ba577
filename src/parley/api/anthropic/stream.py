"""Neutral events → Anthropic messages: the SSE event sequence, or one collected message."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from ...chat.events import Finish, TextDelta
from ...chat.pipeline import PreparedChat
from ...errors import ParleyError
from ..sse import sse_event, with_heartbeat
from .translate import message_body, usage

log = logging.getLogger(__name__)


def error_body(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, ParleyError):
        return {"type": "error", "error": {"type": exc.error_type, "message": exc.message}}
    return {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}}


async def sse_message(chat: PreparedChat, msg_id: str, model: str, ping_interval: float) -> AsyncIterator[bytes]:
    """message_start → (content_block_start, ping, deltas, content_block_stop) → message_delta → message_stop.
    Pings keep a silent connection alive while the request queues or its prompt is prefilled."""
    n_in = len(chat.prompt_tokens)
    yield sse_event("message_start", {"type": "message_start",
                                      "message": message_body(msg_id, model, [], None, n_in)})
    index = 0
    block_open = False

    def open_block() -> list[bytes]:
        nonlocal block_open
        block_open = True
        return [
            sse_event("content_block_start", {"type": "content_block_start", "index": index,
                                              "content_block": {"type": "text", "text": ""}}),
            sse_event("ping", {"type": "ping"}),
        ]

    try:
        async for event in with_heartbeat(chat.events(), ping_interval):
            if event is None:
                yield sse_event("ping", {"type": "ping"})
            elif isinstance(event, TextDelta):
                if not block_open:
                    for frame in open_block():
                        yield frame
                yield sse_event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                        "delta": {"type": "text_delta", "text": event.text}})
            elif isinstance(event, Finish):
                if not block_open:
                    for frame in open_block():
                        yield frame
                yield sse_event("content_block_stop", {"type": "content_block_stop", "index": index})
                yield sse_event("message_delta", {
                    "type": "message_delta",
                    "delta": {"stop_reason": event.stop_reason, "stop_sequence": event.stop_sequence},
                    "usage": usage(n_in, event.output_tokens),
                })
                yield sse_event("message_stop", {"type": "message_stop"})
    except Exception as exc:  # after the first byte, an error can only travel in-stream
        if not isinstance(exc, ParleyError):
            log.exception("stream failed")
        yield sse_event("error", error_body(exc))


async def collect_message(chat: PreparedChat, msg_id: str, model: str) -> dict[str, Any]:
    text: list[str] = []
    finish: Finish | None = None
    async for event in chat.events():
        if isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, Finish):
            finish = event
    content = [{"type": "text", "text": "".join(text)}]
    return message_body(msg_id, model, content, finish, len(chat.prompt_tokens))
