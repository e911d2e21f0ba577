"""One Messages API call from a validated request body to a prepared generation: the route and the batch
worker both start their messages here, so a batch request runs (and fails) exactly as `/v1/messages` would."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from ...chat.pipeline import PreparedChat, prepare_chat
from .blocks import BlockAssembler
from .protocol import MessagesRequest
from .translate import new_message_id, to_conversation, to_sampling, to_thinking, to_tool_choice


@dataclass
class MessageCall:
    """Per request: the prepared generation and what turns its events into an Anthropic message."""

    chat: PreparedChat
    msg_id: str
    model: str
    blocks: BlockAssembler


async def prepare_message(body: MessagesRequest, state: Any) -> MessageCall:
    """`state` is the app's state (settings, signer, registry). Raises a ParleyError for anything the API
    rejects before a response starts."""
    signer = state.signer
    conversation = await asyncio.to_thread(to_conversation, body, signer)  # a PDF's text takes a while
    choice = to_tool_choice(body, conversation.tools)
    params = to_sampling(body)
    runner = await state.registry.runner(body.model)
    thinking = to_thinking(body, body.max_tokens)
    chat = await prepare_chat(runner, conversation, params, choice, thinking, state.settings.tool_grammar)
    blocks = BlockAssembler(signer, omit_thinking=thinking.display == "omitted")
    return MessageCall(chat, new_message_id(), body.model, blocks)
