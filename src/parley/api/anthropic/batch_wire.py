"""Message Batches wire types: the create body (only its shape is checked at creation; each request's `params`
are validated when it runs) and the `message_batch` object."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ...services.batches.store import OUTCOMES, BatchRow

MAX_REQUESTS = 100_000  # per batch, as the API
CUSTOM_ID_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"


class BatchRequestParam(BaseModel):
    model_config = ConfigDict(extra="allow")

    custom_id: str = Field(pattern=CUSTOM_ID_PATTERN)
    params: dict[str, Any]


class BatchCreateRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    requests: list[BatchRequestParam] = Field(min_length=1, max_length=MAX_REQUESTS)


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def batch_body(batch: BatchRow, results_url: str) -> dict[str, Any]:
    """`results_url` is given only once the batch ends. Counts are all `processing` until then, as the API
    reports them."""
    ended = batch.status == "ended"
    counts = {name: batch.counts.get(name, 0) if ended else 0 for name in OUTCOMES}
    return {
        "id": batch.id,
        "type": "message_batch",
        "processing_status": batch.status,
        "request_counts": {"processing": 0 if ended else batch.total, **counts},
        "ended_at": rfc3339(batch.ended_at),
        "created_at": rfc3339(batch.created_at),
        "expires_at": rfc3339(batch.expires_at),
        "archived_at": None,
        "cancel_initiated_at": rfc3339(batch.cancel_initiated_at),
        "results_url": results_url if ended else None,
    }
