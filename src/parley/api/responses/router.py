"""Routes of the OpenAI Responses API; mounted at the root and under /openai."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ...chat.pipeline import RenderPlan, render_prompt
from ...errors import InvalidRequestError, NotFoundError
from ...services import services
from ..sse import EventStreamResponse, request_guard, until_disconnected
from .calls import fitted, response_store, run_in_background, save, start, translate
from .protocol import InputTokensRequest, ResponsesRequest
from .stream import collect_response, replay, sse_response

router = APIRouter()


@router.post("/v1/responses", response_model=None)
async def create_response(body: ResponsesRequest, request: Request) -> Any:
    svc = services(request)
    guard = request_guard(request)
    call, chat_request, runner = await start(body, svc)
    if body.background:
        task = asyncio.create_task(run_in_background(svc, call, chat_request, runner))
        svc.response_tasks[call.id] = task
        task.add_done_callback(lambda _: svc.response_tasks.pop(call.id, None))
        return JSONResponse(call.snapshot("queued"))
    call.chat = await fitted(runner, chat_request, body.truncation, svc.settings.tool_grammar)
    saved = functools.partial(save, svc)
    if body.stream:
        stream = sse_response(call, svc.settings.ping_interval, guard, saved)
        return EventStreamResponse(stream, on_close=call.chat.cancel)
    try:
        result = await until_disconnected(request.receive, collect_response(call), guard)
    finally:
        call.chat.cancel()
    await saved(call, result)
    return JSONResponse(result)


@router.post("/v1/responses/input_tokens")
async def count_input_tokens(body: InputTokensRequest, request: Request) -> dict[str, Any]:
    """The prompt exactly as a create request renders it (before any `truncation: auto`)."""
    translated, _, runner = await translate(body, services(request))
    plan = RenderPlan.of(translated.request, runner.engine.chat_template)
    _, tokens = await render_prompt(runner, translated.request.conversation, plan)
    return {"object": "response.input_tokens", "input_tokens": len(tokens)}


async def _stored(request: Request, response_id: str) -> dict[str, Any]:
    found = await asyncio.to_thread(response_store(services(request)).get, response_id)
    if found is None:
        raise NotFoundError(f"Response with id '{response_id}' not found.")
    return found


@router.get("/v1/responses/{response_id}", response_model=None)
async def retrieve_response(response_id: str, request: Request, stream: bool = False,
                            starting_after: int | None = None) -> Any:
    found = await _stored(request, response_id)
    if stream:
        events = await asyncio.to_thread(response_store(services(request)).events, response_id) or []
        return StreamingResponse(replay(events, starting_after), media_type="text/event-stream")
    return found


@router.delete("/v1/responses/{response_id}")
async def delete_response(response_id: str, request: Request) -> dict[str, Any]:
    svc = services(request)
    if task := svc.response_tasks.get(response_id):
        task.cancel()
        await asyncio.wait({task})  # its last save lands before the delete, not after
    if not await asyncio.to_thread(response_store(svc).delete, response_id):
        raise NotFoundError(f"Response with id '{response_id}' not found.")
    return {"id": response_id, "object": "response.deleted", "deleted": True}


@router.post("/v1/responses/{response_id}/cancel")
async def cancel_response(response_id: str, request: Request) -> dict[str, Any]:
    """Only a background response can be cancelled; one that has ended stays as it ended."""
    found = await _stored(request, response_id)
    task = services(request).response_tasks.get(response_id)
    if not found.get("background"):
        raise InvalidRequestError("Only responses created with background: true can be cancelled.")
    if task is not None:
        task.cancel()
        await asyncio.wait({task})
        found = await _stored(request, response_id)
    return found


@router.get("/v1/responses/{response_id}/input_items")
async def list_input_items(response_id: str, request: Request, limit: int = Query(20, ge=1, le=100),
                           order: str = Query("desc", pattern="^(asc|desc)$"), after: str | None = None,
                           before: str | None = None) -> dict[str, Any]:
    items = await asyncio.to_thread(response_store(services(request)).context, response_id)
    if items is None:
        raise NotFoundError(f"Response with id '{response_id}' not found.")
    if order == "desc":
        items = items[::-1]
    ids = [item.get("id") for item in items]
    start = 0
    if after is not None:
        if after not in ids:
            raise InvalidRequestError(f"after: no input item '{after}' in this response")
        start = ids.index(after) + 1
    end = len(items)
    if before is not None:
        if before not in ids:
            raise InvalidRequestError(f"before: no input item '{before}' in this response")
        end = ids.index(before)
        start = max(start, end - limit) if after is None else start
    page = items[start:min(end, start + limit)]
    return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None, "has_more": start + len(page) < end}
