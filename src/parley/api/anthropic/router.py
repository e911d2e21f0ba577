"""Routes of the Anthropic Messages API; mounted at the root and under /anthropic."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ...chat.pipeline import RenderPlan, prepare_chat, render_prompt
from ...chat.tools import ToolPlan
from ..sse import EventStreamResponse, request_guard, until_disconnected
from .blocks import BlockAssembler
from .protocol import CountTokensRequest, MessagesRequest
from .stream import collect_message, sse_message
from .translate import new_message_id, to_conversation, to_sampling, to_thinking, to_tool_choice

router = APIRouter()


@router.post("/v1/messages", response_model=None)
async def create_message(body: MessagesRequest, request: Request) -> Any:
    guard = request_guard(request)
    signer = request.app.state.signer
    conversation = await asyncio.to_thread(to_conversation, body, signer)  # a PDF's text takes a while
    choice = to_tool_choice(body, conversation.tools)
    params = to_sampling(body)
    runner = await request.app.state.registry.runner(body.model)
    settings = request.app.state.settings
    thinking = to_thinking(body, body.max_tokens)
    chat = await prepare_chat(runner, conversation, params, choice, thinking, settings.tool_grammar)
    msg_id = new_message_id()
    blocks = BlockAssembler(signer, omit_thinking=thinking.display == "omitted")
    if body.stream:
        stream = sse_message(chat, msg_id, body.model, settings.ping_interval, blocks, guard)
        return EventStreamResponse(stream, on_close=chat.cancel)
    try:
        result = await until_disconnected(request.receive, collect_message(chat, msg_id, body.model, blocks), guard)
    finally:
        chat.cancel()
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
