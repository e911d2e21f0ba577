"""`/v1/models` in a shape that satisfies both the Anthropic and the OpenAI SDKs, so one base URL serves both."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from ..errors import InvalidRequestError
from ..models.discovery import ModelEntry
from ..models.registry import ModelRegistry
from ..parsers.registry import reasoning_parser_for
from ..services import services

router = APIRouter()


def _yes(supported: bool) -> dict[str, bool]:
    return {"supported": supported}


def capabilities(template: str | None, reasoning_parser: str | None = None) -> dict[str, Any]:
    """What parley does for this model, in the API's `ModelCapabilities` shape (every key present). Thinking
    and effort follow the reasoning parser (by default the chat template's); the rest is parley's own: grammars
    for structured outputs on every engine, PDFs read as text, images not seen (text-only models), no Anthropic
    server tools."""
    reasons = reasoning_parser_for(template or "", reasoning_parser).reasons
    effort = reasons and "reasoning_effort" in (template or "")  # gpt-oss-style templates read it
    return {
        "batch": _yes(True),
        "citations": _yes(False),
        "code_execution": _yes(False),
        "context_management": {"supported": True, "clear_thinking_20251015": _yes(True),
                               "clear_tool_uses_20250919": _yes(True), "compact_20260112": _yes(False)},
        "effort": {"supported": effort, "low": _yes(effort), "medium": _yes(effort), "high": _yes(effort),
                   "max": _yes(False), "xhigh": _yes(False)},
        "image_input": _yes(False),
        "pdf_input": _yes(True),
        "server_tools": {"supported": False, "code_execution": _yes(False), "web_search": _yes(False)},
        "structured_outputs": _yes(True),
        "thinking": {"supported": reasons, "types": {"adaptive": _yes(reasons), "enabled": _yes(reasons),
                                                     "disabled": _yes(True), "between_tools": _yes(False)}},
    }


def _model_body(entry: ModelEntry, registry: ModelRegistry) -> dict[str, Any]:
    """One object both SDKs read: Anthropic's `ModelInfo` and OpenAI's fields side by side."""
    context, template = registry.served_shape(entry)
    return {
        "id": entry.id,
        "type": "model",
        "display_name": entry.display_name,
        "created_at": entry.created_at.isoformat().replace("+00:00", "Z"),
        "lifecycle": "active",
        "deprecated_at": None,
        "retires_at": None,
        "line": None,
        # The refusal threshold itself: a prompt needs one free cell for the answer's first token.
        "max_input_tokens": context - 1 if context else context,
        "max_tokens": context - 1 if context else context,  # an answer may fill what the prompt leaves
        "capabilities": capabilities(template, registry.parser_names(entry)[1]),
        "object": "model",
        "created": int(entry.created_at.timestamp()),
        "owned_by": "parley",
    }


@router.get("/v1/models")
async def list_models(
    request: Request,
    limit: int = Query(20, ge=1, le=1000),
    before_id: str | None = None,
    after_id: str | None = None,
) -> dict[str, Any]:
    registry = services(request).registry
    entries = registry.catalogue()
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
        "object": "list",
        "data": [_model_body(e, registry) for e in page],
        "has_more": has_more,
        "first_id": page[0].id if page else None,
        "last_id": page[-1].id if page else None,
    }


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    registry = services(request).registry
    return _model_body(registry.resolve(model_id), registry)


