"""Routes of the Anthropic API; mounted at the root and under /anthropic."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from ...chat.pipeline import RenderPlan, prepare_chat, render_prompt
from ...chat.tools import ToolPlan
from ...errors import InvalidRequestError
from ...models.discovery import ModelEntry
from ..sse import EventStreamResponse, until_disconnected
from .blocks import BlockAssembler
from .protocol import CountTokensRequest, MessagesRequest
from .stream import collect_message, sse_message
from .translate import new_message_id, to_conversation, to_sampling, to_thinking, to_tool_choice

router = APIRouter()


def _model_body(entry: ModelEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "type": "model",
        "display_name": entry.display_name,
        "created_at": entry.created_at.isoformat().replace("+00:00", "Z"),
    }


@router.get("/v1/models")
async def list_models(
    request: Request,
    limit: int = Query(20, ge=1, le=1000),
    before_id: str | None = None,
    after_id: str | None = None,
) -> dict[str, Any]:
    entries = request.app.state.registry.catalogue()
    ids = [e.id for e in entries]
    for name, value in (("after_id", after_id), ("before_id", before_id)):
        if value is not None and value not in ids:
            raise InvalidRequestError(f"{name}: unknown model '{value}'")
    if after_id is not None:
        start = ids.index(after_id) + 1
        page, has_more = entries[start : start + limit], start + limit < len(entries)
    elif before_id is not None:
        end = ids.index(before_id)
        start = max(0, end - limit)
        page, has_more = entries[start:end], start > 0
    else:
        page, has_more = entries[:limit], limit < len(entries)
    return {
        "data": [_model_body(e) for e in page],
        "has_more": has_more,
        "first_id": page[0].id if page else None,
        "last_id": page[-1].id if page else None,
    }


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    return _model_body(request.app.state.registry.resolve(model_id))


@router.post("/v1/messages", response_model=None)
async def create_message(body: MessagesRequest, request: Request) -> Any:
    signer = request.app.state.signer
    conversation = to_conversation(body, signer)
    choice = to_tool_choice(body, conversation.tools)
    params = to_sampling(body)
    runner = await request.app.state.registry.runner(body.model)
    settings = request.app.state.settings
    thinking = to_thinking(body, body.max_tokens)
    chat = await prepare_chat(runner, conversation, params, choice, thinking, settings.tool_grammar)
    msg_id = new_message_id()
    blocks = BlockAssembler(signer, omit_thinking=thinking.display == "omitted")
    if body.stream:
        stream = sse_message(chat, msg_id, body.model, settings.ping_interval, blocks)
        return EventStreamResponse(stream, on_close=chat.cancel)
    try:
        result = await until_disconnected(request.receive, collect_message(chat, msg_id, body.model, blocks))
    finally:
        chat.cancel()
    return JSONResponse(result)


@router.post("/v1/messages/count_tokens")
async def count_tokens(body: CountTokensRequest, request: Request) -> dict[str, int]:
    conversation = to_conversation(body, request.app.state.signer)
    choice = to_tool_choice(body, conversation.tools)
    runner = await request.app.state.registry.runner(body.model)
    tools = ToolPlan(conversation.tools, choice, runner.engine.chat_template.source)
    plan = RenderPlan(tools, to_thinking(body, None))
    _, prompt = await render_prompt(runner, conversation, plan)  # exactly as /v1/messages renders it
    return {"input_tokens": len(prompt)}
