"""One Messages API call from a validated request body to a prepared generation: the route and the batch
worker both start their messages here, so a batch request runs (and fails) exactly as `/v1/messages` would."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from typing import Any

from ...chat.pipeline import PreparedChat, prepare_chat
from ...services import Services
from .blocks import BlockAssembler
from .context_edits import apply_edits
from .prompt_cache import Breakpoints, cache_marks, locate
from .protocol import MessagesRequest
from .rendering import RequestRenderer
from .translate import new_message_id, to_conversation, to_request, to_sampling


@dataclass
class MessageCall:
    """Per request: the prepared generation and what turns its events into an Anthropic message."""

    chat: PreparedChat
    msg_id: str
    model: str
    blocks: BlockAssembler
    cache: Breakpoints | None = None  # where the request's cache_control breakpoints end in its prompt
    context_management: dict[str, Any] | None = None  # {"applied_edits": [...]} when the request asked for edits


async def prepare_message(body: MessagesRequest, services: Services) -> MessageCall:
    """Raises a ParleyError for anything the API rejects before a response starts."""
    signer = services.signer
    conversation = await asyncio.to_thread(to_conversation, body, signer)  # a PDF's text takes a while
    marks = cache_marks(body)  # breakpoints the API refuses are a 400 before the model loads
    request = to_request(body, conversation, to_sampling(body), body.max_tokens)
    runner = await services.registry.runner(body.model)
    renderer = RequestRenderer(runner, signer, request)  # measures variants of this request
    context_management = None
    if body.context_management is not None:  # edited before rendering, as the API edits
        edited = await asyncio.to_thread(apply_edits, body, renderer.count, request.thinking.enabled)
        if edited.applied_edits:
            body = edited.request  # type: ignore[assignment]
            conversation = await asyncio.to_thread(to_conversation, body, signer)
            request = dataclasses.replace(request, conversation=conversation)
            marks = cache_marks(body)  # cleared thinking blocks moved the others
        context_management = {"applied_edits": edited.applied_edits}
    chat = await prepare_chat(runner, request, services.settings.tool_grammar)
    blocks = BlockAssembler(signer, omit_thinking=request.thinking.display == "omitted")
    cache = await asyncio.to_thread(locate, marks, body, renderer.text, renderer.tokenize,
                                    chat.prompt_tokens) if marks else None
    return MessageCall(chat, new_message_id(), body.model, blocks, cache, context_management)
