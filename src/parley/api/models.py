"""`/v1/models` in a shape that satisfies both the Anthropic and the OpenAI SDKs, so one base URL serves both."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from ..errors import InvalidRequestError
from ..models.discovery import ModelEntry

router = APIRouter()


def _model_body(entry: ModelEntry) -> dict[str, Any]:
    """One object both SDKs read: Anthropic's fields and OpenAI's side by side."""
    return {
        "id": entry.id,
        "type": "model",
        "display_name": entry.display_name,
        "created_at": entry.created_at.isoformat().replace("+00:00", "Z"),
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
        "object": "list",
        "data": [_model_body(e) for e in page],
        "has_more": has_more,
        "first_id": page[0].id if page else None,
        "last_id": page[-1].id if page else None,
    }


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    return _model_body(request.app.state.registry.resolve(model_id))


