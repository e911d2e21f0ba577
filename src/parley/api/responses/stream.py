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
    """Per response: events with a strictly increasing `sequence_number`, kept for replay when the response is
    stored (keep-alives are not: a replay has no silence to fill)."""

    def __init__(self, call: ResponseCall) -> None:
        self._seq = itertools.count()
        self._kept = call.events if call.store else None

    def event(self, kind: str, fields: dict[str, Any], keep: bool = True) -> dict[str, Any]:
        event = {"type": kind, **fields, "sequence_number": next(self._seq)}
        if keep and self._kept is not None:
            self._kept.append(event)
        return event

    def sse(self, kind: str, fields: dict[str, Any], keep: bool = True) -> bytes:
        return sse_event(kind, self.event(kind, fields, keep))


async def sse_response(call: ResponseCall, ping_interval: float, guard: Guard | None, save: Save
                       ) -> AsyncIterator[bytes]:
    """created → in_progress → each item's events → completed / incomplete; an error after the first byte is an
    `error` event and `response.failed`. Through a long prefill, `response.in_progress` repeats every ping
    interval: Codex gives a stream up after 5 minutes without an event, and SSE comments are not events to it."""
    assert call.chat is not None
    emit = _Numbered(call).sse
    yield emit("response.created", {"response": call.snapshot("in_progress")})
    yield emit("response.in_progress", {"response": call.snapshot("in_progress")})
    try:
        async for event in with_heartbeat(call.chat.events(), ping_interval, guard):
            if event is None:  # an event, not an SSE comment: Codex times out on 5 minutes without one
                yield emit("response.in_progress", {"response": call.snapshot("in_progress")}, keep=False)
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
    last = emit(LAST_EVENTS[final["status"]], {"response": final})  # kept before the save: replays end with it
    await save(call, final)
    yield last


async def collect_response(call: ResponseCall) -> dict[str, Any]:
    """The response once made; its events are numbered and kept as a stream of it would have sent them."""
    assert call.chat is not None
    emit = _Numbered(call).event
    emit("response.created", {"response": call.snapshot("in_progress")})
    emit("response.in_progress", {"response": call.snapshot("in_progress")})
    async for event in call.chat.events():
        if isinstance(event, PromptCached):
            call.cached_tokens = event.cached_tokens
        for kind, fields in call.output.feed(event):
            emit(kind, fields)
    final = call.snapshot(call.final_status())
    emit(LAST_EVENTS[final["status"]], {"response": final})
    return final


def replay(events: list[dict[str, Any]], starting_after: int | None = None) -> Iterator[bytes]:
    """A stored response's events as they were sent (from after `starting_after`, to resume a stream)."""
    for event in events:
        if starting_after is None or event["sequence_number"] > starting_after:
            yield sse_event(event["type"], event)
