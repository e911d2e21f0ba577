"""One stored batch request answered as `/v1/messages` would answer it: the `answer` the batch worker
(services/batches/worker.py) is given, so the worker runs requests without knowing the Anthropic wire format."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from ...engines.runner import Preempted
from ...errors import OverloadedError, ParleyError
from ...services import Services
from ..errors import envelope, validation_message
from .messages import prepare_message
from .protocol import MessagesRequest
from .stream import collect_message

log = logging.getLogger(__name__)

STREAM_IN_BATCH = "stream: streaming is not supported in Message Batches requests"


def _errored(error_type: str, message: str) -> tuple[str, dict[str, Any]]:
    # The API nests the error envelope inside the result.
    return "errored", {"type": "errored", "error": envelope(False, error_type, message)}


async def answer(params: dict[str, Any], services: Services) -> tuple[str, dict[str, Any]]:
    """One batch request's outcome and result object, from the same code (and errors) as `/v1/messages`.
    Raises Preempted when an interactive request took its slot, OverloadedError when it could not be taken now:
    a client would retry those, so the worker does."""
    try:
        body = MessagesRequest.model_validate(params)
    except ValidationError as exc:
        return _errored("invalid_request_error", validation_message(exc))
    if body.stream:
        return _errored("invalid_request_error", STREAM_IN_BATCH)
    try:
        call = await prepare_message(body, services)
        try:
            message = await collect_message(call)
        finally:
            call.chat.cancel()
    except (Preempted, OverloadedError):
        raise
    except ParleyError as exc:
        return _errored(exc.error_type, exc.message)
    except Exception:  # as the route's last-resort handler answers it
        log.exception("batch request failed")
        return _errored("api_error", "Internal server error")
    return "succeeded", {"type": "succeeded", "message": message}
