"""Routes of the Message Batches API; mounted at the root and under /anthropic, like the Messages routes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from ...errors import InvalidRequestError, NotFoundError, ParleyError
from ...services import services
from ...services.batches.store import BatchRow, BatchStore
from ...services.batches.worker import BatchWorker
from ..errors import validation_message
from .batch_wire import BatchCreateRequest, batch_body

router = APIRouter()
BASE = "/v1/messages/batches"
RESULTS_PAGE = 1000  # result rows read from the store per chunk of the JSONL stream


def _unavailable() -> ParleyError:
    return ParleyError("Message Batches are unavailable: the data directory could not be opened "
                       "(see the server log; --data-dir).")


def _store(request: Request) -> BatchStore:
    store = services(request).batch_store
    if store is None:
        raise _unavailable()
    return store


def _worker(request: Request) -> BatchWorker:
    worker = services(request).batch_worker  # opened with the store: None only when it is
    if worker is None:
        raise _unavailable()
    return worker


def _results_url(request: Request, batch_id: str) -> str:
    """Under the base URL the client used (`http://host:port` or `.../anthropic`), so the SDK can fetch it."""
    path = request.url.path
    prefix = path[: path.index(BASE)] if BASE in path else ""
    return str(request.url.replace(path=f"{prefix}{BASE}/{batch_id}/results", query=""))


def _body(request: Request, batch: BatchRow) -> dict[str, Any]:
    return batch_body(batch, _results_url(request, batch.id))


async def _batch(request: Request, batch_id: str) -> BatchRow:
    batch = await asyncio.to_thread(_store(request).get, batch_id)
    if batch is None:
        raise NotFoundError(f"Message Batch '{batch_id}' not found.")
    return batch


def _parse_create(raw: bytes) -> BatchCreateRequest:
    """Only the batch's shape is checked here; each request's `params` are validated when it runs."""
    try:
        data = json.loads(raw)
    except ValueError:
        raise InvalidRequestError("Request body is not valid JSON.") from None
    try:  # python mode, as FastAPI validates route bodies: the same wording as every other 400
        body = BatchCreateRequest.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequestError(validation_message(exc)) from None
    seen: set[str] = set()
    for i, item in enumerate(body.requests):
        if item.custom_id in seen:
            raise InvalidRequestError(f"requests.{i}.custom_id: duplicate custom_id '{item.custom_id}'; "
                                      "each must be unique within the batch")
        seen.add(item.custom_id)
    return body


@router.post(BASE)
async def create_batch(request: Request) -> dict[str, Any]:
    store = _store(request)
    raw = await request.body()
    # Up to 256 MB: parsed and stored off the event loop, so that running streams do not stall meanwhile.
    body = await asyncio.to_thread(_parse_create, raw)
    batch = await asyncio.to_thread(store.create, [(r.custom_id, r.params) for r in body.requests])
    _worker(request).wake()
    return _body(request, batch)


@router.get(BASE)
async def list_batches(request: Request, limit: int = Query(20, ge=1, le=1000), before_id: str | None = None,
                       after_id: str | None = None) -> dict[str, Any]:
    if before_id is not None and after_id is not None:
        raise InvalidRequestError("before_id and after_id cannot be given together")
    try:
        page, has_more = await asyncio.to_thread(_store(request).page, limit, before_id, after_id)
    except KeyError as exc:
        name = "after_id" if after_id is not None else "before_id"
        raise InvalidRequestError(f"{name}: unknown Message Batch '{exc.args[0]}'") from None
    return {"data": [_body(request, b) for b in page], "has_more": has_more,
            "first_id": page[0].id if page else None, "last_id": page[-1].id if page else None}


@router.get(BASE + "/{batch_id}")
async def retrieve_batch(batch_id: str, request: Request) -> dict[str, Any]:
    return _body(request, await _batch(request, batch_id))


@router.post(BASE + "/{batch_id}/cancel")
async def cancel_batch(batch_id: str, request: Request) -> dict[str, Any]:
    batch = await _worker(request).cancel(batch_id)
    if batch is None:
        raise NotFoundError(f"Message Batch '{batch_id}' not found.")
    return _body(request, batch)


@router.delete(BASE + "/{batch_id}")
async def delete_batch(batch_id: str, request: Request) -> dict[str, str]:
    batch = await _batch(request, batch_id)
    if batch.status != "ended":
        raise InvalidRequestError(f"Message Batch '{batch_id}' cannot be deleted while it is {batch.status}: "
                                  "cancel it and wait for it to end first.")
    await asyncio.to_thread(_store(request).delete, batch_id)
    return {"id": batch_id, "type": "message_batch_deleted"}


@router.get(BASE + "/{batch_id}/results")
async def batch_results(batch_id: str, request: Request) -> StreamingResponse:
    batch = await _batch(request, batch_id)
    if batch.status != "ended":
        raise InvalidRequestError(f"Message Batch '{batch_id}' has not ended yet (processing_status: "
                                  f"{batch.status}); its results are available once it has.")
    store = _store(request)

    async def lines() -> AsyncIterator[bytes]:
        after = -1
        while rows := await asyncio.to_thread(store.results, batch.seq, after, RESULTS_PAGE):
            # The stored result is JSON already: no parse and re-dump of every message.
            yield "".join(f'{{"custom_id":{json.dumps(cid)},"result":{result}}}\n'
                          for _, cid, result in rows).encode()
            after = rows[-1][0]

    return StreamingResponse(lines(), media_type="application/x-jsonl")
