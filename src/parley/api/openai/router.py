"""Routes of the OpenAI Chat Completions API; mounted at the root and under /openai."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ...chat.pipeline import prepare_chat
from ...services import services
from ..sse import EventStreamResponse, request_guard, until_disconnected
from .protocol import ChatCompletionRequest
from .stream import collect_completion, sse_completion
from .translate import new_completion_id, to_request

router = APIRouter()


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Any:
    guard = request_guard(request)
    svc = services(request)
    runner = await svc.registry.runner(body.model)
    settings = svc.settings
    chat = await prepare_chat(runner, to_request(body, runner.engine.n_ctx), settings.tool_grammar)
    completion_id = new_completion_id()
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        stream = sse_completion(chat, completion_id, body.model, settings.ping_interval, include_usage, guard)
        return EventStreamResponse(stream, on_close=chat.cancel)
    try:
        result = await until_disconnected(request.receive, collect_completion(chat, completion_id, body.model),
                                          guard)
    finally:
        chat.cancel()
    return JSONResponse(result)
