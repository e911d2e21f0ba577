"""From a validated request body to a response being made: the stored conversation it continues, the neutral
request, the prompt fitted to the context (`truncation: auto` drops the oldest turns), and background runs."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from ...chat.pipeline import PreparedChat, prepare_chat
from ...core.messages import Conversation
from ...core.request import ChatRequest
from ...engines.runner import EngineRunner, Preempted, low_priority
from ...errors import InvalidRequestError, NotFoundError, ParleyError, PromptTooLongError
from ...services import Services
from ...services.responses.store import ResponseStore
from ..errors import exception_envelope
from .output import OutputAssembler
from .protocol import InputTokensRequest, ResponsesRequest
from .response import ResponseCall
from .stream import collect_response
from .translate import SEALED_REASONING, Translated, input_items, new_id, to_request

log = logging.getLogger(__name__)


def response_store(services: Services) -> ResponseStore:
    store = services.response_store
    if store is None:
        raise InvalidRequestError("stored responses are off: the server's data directory could not be opened")
    return store


async def history(body: InputTokensRequest, services: Services) -> list[dict[str, Any]]:
    if body.previous_response_id is None:
        return []
    found = await asyncio.to_thread(response_store(services).history, body.previous_response_id)
    if found is None:
        raise NotFoundError(f"Previous response with id '{body.previous_response_id}' not found.")
    return found


async def translate(body: InputTokensRequest, services: Services
                    ) -> tuple[Translated, list[dict[str, Any]], EngineRunner]:
    """The neutral request; the context (earlier turns and this input, as items); the model's runner."""
    items = input_items(body)
    earlier = await history(body, services)
    runner = await services.registry.runner(body.model or services.settings.default_model)
    translated = await asyncio.to_thread(to_request, body, earlier, items, services.signer, runner.engine.n_ctx)
    return translated, [*earlier, *items], runner


def _without_oldest_turn(conversation: Conversation) -> Conversation | None:
    """The conversation less its oldest turn (and tool results left answering nothing); None if one is left."""
    turns = conversation.messages[1:]
    while turns and turns[0].role == "tool":
        turns = turns[1:]
    return dataclasses.replace(conversation, messages=turns) if turns else None


async def fitted(runner: EngineRunner, request: ChatRequest, truncation: str | None, grammar_in_auto: bool
                 ) -> PreparedChat:
    while True:
        try:
            return await prepare_chat(runner, request, grammar_in_auto)
        except PromptTooLongError:
            shorter = _without_oldest_turn(request.conversation) if truncation == "auto" else None
            if shorter is None:
                raise
            request = dataclasses.replace(request, conversation=shorter)


async def start(body: ResponsesRequest, services: Services) -> tuple[ResponseCall, ChatRequest, EngineRunner]:
    """Everything that can be refused before a response exists."""
    if body.background and body.store is False:
        raise InvalidRequestError("background: background responses must be stored (store: true)")
    if body.background and body.stream:
        raise InvalidRequestError("background: streaming a background response is not supported; poll "
                                  "GET /v1/responses/{id} (with stream=true to replay it once done)")
    translated, context, runner = await translate(body, services)
    output = OutputAssembler(translated.tools, services.signer, SEALED_REASONING in (body.include or []),
                             body.max_tool_calls)
    call = ResponseCall(new_id("resp"), body, None, output, context)
    return call, translated.request, runner


async def save(services: Services, call: ResponseCall, response: dict[str, Any]) -> None:
    if call.store:
        await asyncio.to_thread(response_store(services).save, response, call.context, call.events)


async def run_in_background(services: Services, call: ResponseCall, request: ChatRequest, runner: EngineRunner
                            ) -> None:
    """Runs on the batches' low-priority path: it takes a slot only when interactive requests leave one, and
    starts again from the beginning when one takes it back."""
    await save(services, call, call.snapshot("queued"))
    with low_priority():
        while True:
            call.output, call.events = call.output.fresh(), []
            try:
                call.chat = await fitted(runner, request, call.body.truncation, services.settings.tool_grammar)
                await save(services, call, call.snapshot("in_progress"))
                try:
                    final = await collect_response(call)
                finally:
                    call.chat.cancel()
            except Preempted:
                continue
            except asyncio.CancelledError:
                await save(services, call, call.snapshot("cancelled"))
                raise
            except Exception as exc:
                if not isinstance(exc, ParleyError):
                    log.exception("background response failed")
                message = exception_envelope(True, exc)["error"]["message"]
                final = call.snapshot("failed", {"code": "server_error", "message": message})
            await save(services, call, final)
            return
