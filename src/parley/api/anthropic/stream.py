"""Neutral events → Anthropic messages: the SSE event sequence, or one collected message."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from ...core.events import Finish, PromptCached
from ...errors import ParleyError
from ..errors import exception_envelope
from ..sse import Guard, sse_event, with_heartbeat
from .blocks import ContentCollector
from .messages import MessageCall
from .translate import message_body, usage

log = logging.getLogger(__name__)

PING = {"type": "ping"}


async def sse_message(call: MessageCall, ping_interval: float, guard: Guard | None = None) -> AsyncIterator[bytes]:
    """message_start → (content_block_start, deltas, content_block_stop)… → message_delta → message_stop.
    A ping follows the first block's start; more keep a silent connection alive while the request queues
    or its prompt is prefilled. message_start waits (up to one ping interval) for the engine to take the
    request, so that its usage can tell how much of the prompt the prefix cache held."""
    chat, msg_id, model, blocks = call.chat, call.msg_id, call.model, call.blocks
    n_in = len(chat.prompt_tokens)
    first_block, started = True, False
    try:
        async for event in with_heartbeat(chat.events(), ping_interval, guard):
            if not started:
                started = True
                start = message_body(msg_id, model, [], None, n_in, call.cache)
                if isinstance(event, PromptCached):
                    start["usage"] = usage(n_in, 0, event.cached_tokens, call.cache)
                yield sse_event("message_start", {"type": "message_start", "message": start})
            if event is None:
                yield sse_event("ping", PING)
                continue
            for op in blocks.feed(event):
                yield sse_event(op.event, op.payload)
                if first_block and op.event == "content_block_start":
                    first_block = False
                    yield sse_event("ping", PING)
            if isinstance(event, Finish):
                delta = {
                    "type": "message_delta",
                    "delta": {"stop_reason": event.stop_reason, "stop_sequence": event.stop_sequence},
                    "usage": usage(n_in, event.output_tokens, event.cached_tokens, call.cache),
                }
                if call.context_management is not None:  # where the API's stream reports the edits
                    delta["context_management"] = call.context_management
                yield sse_event("message_delta", delta)
                yield sse_event("message_stop", {"type": "message_stop"})
    except Exception as exc:  # after the first byte, an error can only travel in-stream
        if not isinstance(exc, ParleyError):
            log.exception("stream failed")
        if not started:
            yield sse_event("message_start", {"type": "message_start",
                                              "message": message_body(msg_id, model, [], None, n_in, call.cache)})
        yield sse_event("error", exception_envelope(False, exc))


async def collect_message(call: MessageCall) -> dict[str, Any]:
    collector = ContentCollector()
    finish: Finish | None = None
    async for event in call.chat.events():
        for op in call.blocks.feed(event):
            collector.apply(op)
        if isinstance(event, Finish):
            finish = event
    return message_body(call.msg_id, call.model, collector.content, finish, len(call.chat.prompt_tokens),
                        call.cache, call.context_management)
