"""Anthropic wire types ↔ the neutral chat core."""

from __future__ import annotations

import secrets
from typing import Any

from ...chat.events import Finish
from ...chat.messages import ChatMessage, Conversation
from ...chat.params import SamplingParams
from ...errors import InvalidRequestError
from .protocol import MessageParam, MessagesRequest, TextBlockParam, _ConversationRequest


def new_message_id() -> str:
    return f"msg_{secrets.token_hex(12)}"


def _text_of(content: str | list[Any], where: str) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for i, block in enumerate(content):
        if not isinstance(block, TextBlockParam):
            raise InvalidRequestError(f"{where}.content.{i}: content block type '{block.type}' is not supported")
        parts.append(block.text)
    return "\n\n".join(parts)


def _merged(messages: list[MessageParam]) -> list[ChatMessage]:
    """Consecutive turns of one role are joined, as the API does."""
    merged: list[ChatMessage] = []
    for i, message in enumerate(messages):
        text = _text_of(message.content, f"messages.{i}")
        if merged and merged[-1].role == message.role:
            text = merged[-1].content + "\n\n" + text
            merged.pop()
        merged.append(ChatMessage(message.role, text))
    return merged


def to_conversation(req: _ConversationRequest) -> Conversation:
    if not req.messages:
        raise InvalidRequestError("messages: at least one message is required")
    system = None if req.system is None else _text_of(req.system, "system")
    messages = _merged(req.messages)
    last = messages[-1]
    if last.role == "assistant" and last.content != last.content.rstrip():
        raise InvalidRequestError("final assistant content cannot end with trailing whitespace")
    return Conversation(messages=messages, system=system or None)


def to_sampling(req: MessagesRequest) -> SamplingParams:
    return SamplingParams(
        max_tokens=req.max_tokens,
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=req.top_p,
        top_k=req.top_k,
        stop=list(req.stop_sequences or []),
    )


def usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def message_body(msg_id: str, model: str, content: list[dict[str, Any]], finish: Finish | None,
                 input_tokens: int) -> dict[str, Any]:
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": finish.stop_reason if finish else None,
        "stop_sequence": finish.stop_sequence if finish else None,
        "usage": usage(input_tokens, finish.output_tokens if finish else 0),
    }
