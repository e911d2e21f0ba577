"""A Responses request (and the stored conversation it continues) → the neutral request."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from ...chat.validate import output_format
from ...core.messages import Conversation
from ...core.params import SamplingParams
from ...core.request import ChatRequest, OutputFormat
from ...core.thinking import Thinking
from ...errors import InvalidRequestError
from ...services.signatures import ThinkingSigner
from .items import to_turns
from .protocol import InputTokensRequest, ResponsesRequest
from .tools import ToolSet, to_tool_choice, to_tools

LOGPROBS = "message.output_text.logprobs"
SEALED_REASONING = "reasoning.encrypted_content"
# `reasoning.effort` → a thinking budget in tokens, for models whose template reasons (capped by max tokens).
EFFORT_BUDGETS = {"minimal": 256, "low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768}


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def input_items(body: InputTokensRequest) -> list[dict[str, Any]]:
    """The request's own input as items, each with an id (as `input_items` lists them)."""
    if body.input is None:
        return []
    if isinstance(body.input, str):
        items: list[Any] = [{"type": "message", "role": "user", "content": body.input}]
    else:
        items = body.input
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidRequestError(f"input.{i}: Input should be an object")
        item = {"type": "message", **item}
        if item["type"] == "message":
            item = _message_item(item)
        out.append({"id": item.get("id") or new_id("msg" if item["type"] == "message" else "item"), **item})
    return out


def _message_item(item: dict[str, Any]) -> dict[str, Any]:
    """A message as the API lists it back: content as parts (`input_text`, or an assistant's `output_text`)."""
    assistant = item.get("role") == "assistant"
    if isinstance(item.get("content"), str):
        part = {"type": "output_text", "text": item["content"], "annotations": []} if assistant else {
            "type": "input_text", "text": item["content"]}
        item = {**item, "content": [part]}
    return {**item, "status": item.get("status") or "completed"} if assistant else item


def _thinking(body: InputTokensRequest, max_tokens: int) -> Thinking:
    effort = body.reasoning.effort if body.reasoning else None
    if effort == "none":
        return Thinking()
    if effort is None:
        return Thinking(True)
    return Thinking(True, min(EFFORT_BUDGETS[effort], max(1, max_tokens - 1)), effort)


def _output(body: InputTokensRequest) -> OutputFormat:
    fmt = body.text.format if body.text else None
    if fmt is None or fmt.type == "text":
        return OutputFormat()
    return output_format(fmt.type, fmt.schema_, fmt.strict is True, "text.format.schema")


def _sampling(body: InputTokensRequest, max_tokens: int) -> SamplingParams:
    if not isinstance(body, ResponsesRequest):
        return SamplingParams(max_tokens=max_tokens)  # counting samples nothing
    logprobs = (body.top_logprobs or 0) if LOGPROBS in (body.include or []) else None
    return SamplingParams(max_tokens=max_tokens, temperature=1.0 if body.temperature is None else body.temperature,
                          top_p=body.top_p, logprobs=logprobs)


@dataclass(frozen=True)
class Translated:
    request: ChatRequest
    tools: ToolSet


def to_request(body: InputTokensRequest, history: list[dict[str, Any]], items: list[dict[str, Any]],
               signer: ThinkingSigner, default_max_tokens: int) -> Translated:
    """`history`: the items of the stored conversation this one continues (its inputs and outputs)."""
    if body.conversation is not None:
        raise InvalidRequestError("conversation: the Conversations API is not supported by this server; "
                                  "use previous_response_id, or send the whole conversation as input")
    system, turns = to_turns([*history, *items], signer, "input")
    if not turns:
        raise InvalidRequestError("input: at least one user or assistant message is required")
    max_tokens = getattr(body, "max_output_tokens", None) or default_max_tokens
    tools = to_tools(body.tools)
    choice, callable_tools = to_tool_choice(body.tool_choice, tools, body.parallel_tool_calls is not False)
    leading = "\n\n".join(t for t in (body.instructions, *system) if t)
    conversation = Conversation(turns, leading or None, callable_tools.specs)
    request = ChatRequest(conversation, _sampling(body, max_tokens), choice, _thinking(body, max_tokens),
                          _output(body))
    return Translated(request, callable_tools)
