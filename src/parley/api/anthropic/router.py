"""Routes of the Anthropic Messages API; mounted at the root and under /anthropic."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ...core.params import SamplingParams
from ...services import services
from ..sse import EventStreamResponse, request_guard, until_disconnected
from .context_edits import apply_edits
from .messages import prepare_message
from .prompt_cache import cache_marks
from .protocol import CountTokensRequest, MessagesRequest
from .rendering import RequestRenderer
from .stream import collect_message, sse_message
from .translate import to_conversation, to_request

router = APIRouter()


@router.post("/v1/messages", response_model=None)
async def create_message(body: MessagesRequest, request: Request) -> Any:
    svc = services(request)
    guard = request_guard(request)
    call = await prepare_message(body, svc)
    if body.stream:
        stream = sse_message(call, svc.settings.ping_interval, guard)
        return EventStreamResponse(stream, on_close=call.chat.cancel)
    try:
        result = await until_disconnected(request.receive, collect_message(call), guard)
    finally:
        call.chat.cancel()
    return JSONResponse(result)


@router.post("/v1/messages/count_tokens")
async def count_tokens(body: CountTokensRequest, request: Request) -> dict[str, Any]:
    """The prompt exactly as /v1/messages renders it, after any context edits (and, as the API says, how many
    tokens it had before them)."""
    svc = services(request)
    conversation = await asyncio.to_thread(to_conversation, body, svc.signer)
    cache_marks(body)  # validated as /v1/messages validates them
    runner = await svc.registry.runner(body.model)
    # count_tokens samples nothing: the request's params only shape the plan, not the prompt
    request = to_request(body, conversation, SamplingParams(max_tokens=1), None)
    renderer = RequestRenderer(runner, svc.signer, request)
    original = await asyncio.to_thread(renderer.count, body, conversation)
    if body.context_management is None:
        return {"input_tokens": original}
    edited = await asyncio.to_thread(apply_edits, body, renderer.count, renderer.thinking.enabled)
    tokens = await asyncio.to_thread(renderer.count, edited.request) if edited.applied_edits else original
    return {"input_tokens": tokens, "context_management": {"original_input_tokens": original}}
