"""A response as SSE events (numbered, from `response.created` to its last state), as one collected object,
or replayed from the stored object."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from ...core.events import PromptCached
from ...errors import ParleyError
from ..errors import exception_envelope
from ..sse import Guard, sse_event, with_heartbeat
from .response import ResponseCall

log = logging.getLogger(__name__)

Save = Callable[[ResponseCall, dict[str, Any]], Awaitable[None]]
LAST_EVENTS = {"completed": "response.completed", "incomplete": "response.incomplete", "failed": "response.failed",
               "cancelled": "response.failed"}


class _Numbered:
    """Per stream: SSE bytes with a strictly increasing `sequence_number`."""

    def __init__(self) -> None:
        self._seq = itertools.count()

    def __call__(self, kind: str, fields: dict[str, Any]) -> bytes:
        return sse_event(kind, {"type": kind, **fields, "sequence_number": next(self._seq)})


async def sse_response(call: ResponseCall, ping_interval: float, guard: Guard | None, save: Save
                       ) -> AsyncIterator[bytes]:
    """created → in_progress → each item's events → completed / incomplete; an error after the first byte is an
    `error` event and `response.failed`. Through a long prefill, `response.in_progress` repeats every ping
    interval: Codex gives a stream up after 5 minutes without an event, and SSE comments are not events to it."""
    assert call.chat is not None
    emit = _Numbered()
    yield emit("response.created", {"response": call.snapshot("in_progress")})
    yield emit("response.in_progress", {"response": call.snapshot("in_progress")})
    try:
        async for event in with_heartbeat(call.chat.events(), ping_interval, guard):
            if event is None:  # an event, not an SSE comment: Codex times out on 5 minutes without one
                yield emit("response.in_progress", {"response": call.snapshot("in_progress")})
                continue
            if isinstance(event, PromptCached):
                call.cached_tokens = event.cached_tokens
            for kind, fields in call.output.feed(event):
                yield emit(kind, fields)
        final = call.snapshot(call.final_status())
    except Exception as exc:  # after the first byte, an error can only travel in-stream
        if not isinstance(exc, ParleyError):
            log.exception("stream failed")
        error = exception_envelope(True, exc)["error"]
        yield emit("error", {"code": error["code"] or error["type"], "message": error["message"], "param": None})
        final = call.snapshot("failed", {"code": "server_error", "message": error["message"]})
    await save(call, final)
    yield emit(LAST_EVENTS[final["status"]], {"response": final})


async def collect_response(call: ResponseCall) -> dict[str, Any]:
    assert call.chat is not None
    async for event in call.chat.events():
        if isinstance(event, PromptCached):
            call.cached_tokens = event.cached_tokens
        call.output.feed(event)
    return call.snapshot(call.final_status())


def _item_events(index: int, item: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    at = {"item_id": item.get("id"), "output_index": index}
    kind = item["type"]
    empty = {**item, "status": "in_progress"}
    if kind in ("message", "reasoning"):
        empty["content"] = []
    elif kind == "function_call":
        empty["arguments"] = ""
    elif kind == "custom_tool_call":
        empty["input"] = ""
    yield "response.output_item.added", {"output_index": index, "item": empty}
    for n, part in enumerate(item.get("content") or []):
        text = part.get("text", "")
        yield "response.content_part.added", {**at, "content_index": n, "part": {**part, "text": ""}}
        if part["type"] == "output_text":
            yield "response.output_text.delta", {**at, "content_index": n, "delta": text, "logprobs": []}
            yield "response.output_text.done", {**at, "content_index": n, "text": text, "logprobs": []}
        else:
            yield "response.reasoning_text.delta", {**at, "content_index": n, "delta": text}
            yield "response.reasoning_text.done", {**at, "content_index": n, "text": text}
        yield "response.content_part.done", {**at, "content_index": n, "part": part}
    if kind == "function_call":
        yield "response.function_call_arguments.delta", {**at, "delta": item["arguments"]}
        yield "response.function_call_arguments.done", {**at, "arguments": item["arguments"]}
    elif kind == "custom_tool_call":
        yield "response.custom_tool_call_input.delta", {**at, "delta": item["input"]}
        yield "response.custom_tool_call_input.done", {**at, "input": item["input"]}
    yield "response.output_item.done", {"output_index": index, "item": item}


def replay(response: dict[str, Any]) -> Iterator[bytes]:
    """A stored response's events, as a stream of it would have sent them (each text in one delta)."""
    emit = _Numbered()
    started = {**response, "status": "in_progress", "output": [], "usage": None}
    yield emit("response.created", {"response": started})
    yield emit("response.in_progress", {"response": started})
    for index, item in enumerate(response.get("output") or []):
        for kind, fields in _item_events(index, item):
            yield emit(kind, fields)
    last = LAST_EVENTS.get(response["status"])
    if last is not None:
        yield emit(last, {"response": response})
