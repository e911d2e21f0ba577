"""Routes of the Anthropic Messages API; mounted at the root and under /anthropic."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ...chat.pipeline import RenderPlan, render_prompt
from ...chat.tools import ToolPlan
from ..sse import EventStreamResponse, request_guard, until_disconnected
from .messages import prepare_message
from .protocol import CountTokensRequest, MessagesRequest
from .stream import collect_message, sse_message
from .translate import to_conversation, to_thinking, to_tool_choice

router = APIRouter()


@router.post("/v1/messages", response_model=None)
async def create_message(body: MessagesRequest, request: Request) -> Any:
    guard = request_guard(request)
    call = await prepare_message(body, request.app.state)
    if body.stream:
        stream = sse_message(call, request.app.state.settings.ping_interval, guard)
        return EventStreamResponse(stream, on_close=call.chat.cancel)
    try:
        result = await until_disconnected(request.receive, collect_message(call), guard)
    finally:
        call.chat.cancel()
    return JSONResponse(result)


@router.post("/v1/messages/count_tokens")
async def count_tokens(body: CountTokensRequest, request: Request) -> dict[str, int]:
    conversation = await asyncio.to_thread(to_conversation, body, request.app.state.signer)
    choice = to_tool_choice(body, conversation.tools)
    runner = await request.app.state.registry.runner(body.model)
    tools = ToolPlan(conversation.tools, choice, runner.engine.chat_template.source)
    plan = RenderPlan(tools, to_thinking(body, None))
    _, prompt = await render_prompt(runner, conversation, plan)  # exactly as /v1/messages renders it
    return {"input_tokens": len(prompt)}
