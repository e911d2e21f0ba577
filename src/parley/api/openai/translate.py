"""OpenAI wire types → the neutral chat core; core events' stop reasons → OpenAI finish reasons."""

from __future__ import annotations

import json
import secrets

from ...chat.validate import function_tool, output_format, unique_names
from ...core.messages import ChatMessage, Conversation, ToolCall, ToolSpec
from ...core.params import SamplingParams
from ...core.request import ChatRequest, OutputFormat
from ...core.thinking import Thinking
from ...core.tools import ToolChoice
from ...errors import InvalidRequestError
from .protocol import ChatCompletionRequest, ChatMessageParam, ContentPart

FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


def new_completion_id() -> str:
    return f"chatcmpl-{secrets.token_hex(12)}"


def _text(content: str | list[ContentPart] | None, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for i, part in enumerate(content):
        if part.type != "text" or part.text is None:
            raise InvalidRequestError(f"{where}.content.{i}: content part type '{part.type}' is not supported")
        parts.append(part.text)
    return "\n\n".join(parts)


def _arguments(raw: str, where: str) -> dict:
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"{where}.function.arguments: not valid JSON") from exc
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{where}.function.arguments: must be a JSON object")
    return value


def _message(message: ChatMessageParam, where: str, names: dict[str, str]) -> ChatMessage:
    text = _text(message.content, where)
    if message.role == "tool":
        if not message.tool_call_id:
            raise InvalidRequestError(f"{where}.tool_call_id: Field required")
        return ChatMessage("tool", text, tool_call_id=message.tool_call_id,
                           name=message.name or names.get(message.tool_call_id))
    calls = []
    for i, call in enumerate(message.tool_calls or []):
        calls.append(ToolCall(call.id, call.function.name, _arguments(call.function.arguments,
                                                                      f"{where}.tool_calls.{i}")))
        names[call.id] = call.function.name
    return ChatMessage(message.role, text, tool_calls=tuple(calls))


def to_conversation(req: ChatCompletionRequest) -> Conversation:
    system: list[str] = []
    messages: list[ChatMessage] = []
    names: dict[str, str] = {}
    for i, message in enumerate(req.messages):
        where = f"messages.{i}"
        if message.role in ("system", "developer"):
            if messages:  # a late system turn: the chat template renders it, or folds it into user text
                messages.append(ChatMessage("system", _text(message.content, where)))
            else:
                system.append(_text(message.content, where))
            continue
        messages.append(_message(message, where, names))
    if not messages:
        raise InvalidRequestError("messages: at least one user or assistant message is required")
    tools = []
    for i, tool in enumerate(req.tools or []):
        schema = tool.function.parameters or {"type": "object", "properties": {}}
        tools.append(function_tool(tool.function.name, tool.function.description, schema,
                                   bool(tool.function.strict), f"tools.{i}.function", "parameters"))
    unique_names(tools)
    return Conversation(messages=messages, system="\n\n".join(system) or None, tools=tools)


def to_tool_choice(req: ChatCompletionRequest, tools: list[ToolSpec]) -> ToolChoice:
    parallel = req.parallel_tool_calls is not False
    choice = req.tool_choice
    if choice is None or choice == "auto":
        return ToolChoice("auto", None, parallel)
    if choice == "none":
        return ToolChoice("none", None, parallel)
    if not tools:
        raise InvalidRequestError("tool_choice: requires tools")
    if choice == "required":
        return ToolChoice("any", None, parallel)
    name = choice.function.get("name")
    if name not in {t.name for t in tools}:
        raise InvalidRequestError(f"tool_choice.function.name: tool '{name}' is not in tools")
    return ToolChoice("tool", name, parallel)


def to_thinking(req: ChatCompletionRequest) -> Thinking:
    if req.reasoning_effort is None:
        return Thinking()
    return Thinking(True, None, req.reasoning_effort)


def to_sampling(req: ChatCompletionRequest, default_max_tokens: int) -> SamplingParams:
    if req.n not in (None, 1):
        raise InvalidRequestError("n: only n=1 is supported")
    if req.top_logprobs is not None and not req.logprobs:
        raise InvalidRequestError("top_logprobs: requires logprobs to be true")
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    return SamplingParams(
        max_tokens=req.max_completion_tokens or req.max_tokens or default_max_tokens,
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=req.top_p,
        seed=req.seed,
        stop=stop,
        logprobs=(req.top_logprobs or 0) if req.logprobs else None,
    )


def to_output_format(req: ChatCompletionRequest) -> OutputFormat:
    fmt = req.response_format
    if fmt is None or fmt.type != "json_schema":
        return OutputFormat("json_object" if fmt is not None and fmt.type == "json_object" else "text")
    if fmt.json_schema is None:
        raise InvalidRequestError("response_format.json_schema: Field required")
    return output_format("json_schema", fmt.json_schema.schema_, bool(fmt.json_schema.strict),
                         "response_format.json_schema.schema")


def to_request(req: ChatCompletionRequest, default_max_tokens: int) -> ChatRequest:
    conversation = to_conversation(req)
    return ChatRequest(conversation, to_sampling(req, default_max_tokens), to_tool_choice(req, conversation.tools),
                       to_thinking(req), to_output_format(req))
