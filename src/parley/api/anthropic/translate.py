"""Anthropic wire types → the neutral chat core (conversation, sampling, tools)."""

from __future__ import annotations

import secrets
from typing import Any

from ...chat.validate import function_tool, output_format, unique_names
from ...core.events import Finish
from ...core.messages import ChatMessage, Conversation, ToolCall, ToolSpec
from ...core.params import SamplingParams
from ...core.request import ChatRequest, OutputFormat
from ...core.thinking import Thinking
from ...core.tools import ToolChoice
from ...errors import InvalidRequestError
from ...services.signatures import ThinkingSigner
from .documents import TEXT_BLOCKS, block_text, joined_text, unsupported
from .prompt_cache import Breakpoints
from .protocol import (
    MessageParam,
    MessagesRequest,
    RedactedThinkingBlockParam,
    TextBlockParam,
    ThinkingBlockParam,
    ToolParam,
    ToolReferenceBlockParam,
    ToolResultBlockParam,
    ToolUseBlockParam,
    _ConversationRequest,
)
from .tool_pairs import check_tool_pairs


def new_message_id() -> str:
    return f"msg_{secrets.token_hex(12)}"


def _tool_result_text(block: ToolResultBlockParam, where: str) -> str:
    content = block.content
    text = content if isinstance(content, str) else joined_text(content or [], f"{where}.content")
    return f"Error: {text}" if block.is_error else text


def _system_turn(message: MessageParam, where: str) -> list[ChatMessage]:
    """A system message among the turns; where the template takes none there, `ChatTemplate` folds it."""
    text = _system_text(message.content, f"{where}.content")
    return [ChatMessage("system", text)] if text else []


def _turn(message: MessageParam, where: str, tool_names: dict[str, str],
          signer: ThinkingSigner | None) -> list[ChatMessage]:
    """One API message → neutral messages: tool results become `tool` turns before the user's text."""
    if message.role == "system":
        return _system_turn(message, where)
    if isinstance(message.content, str):
        return [ChatMessage(message.role, message.content)]
    texts: list[str] = []
    calls: list[ToolCall] = []
    results: list[ChatMessage] = []
    reasoning: list[str] = []
    for i, block in enumerate(message.content):
        at = f"{where}.content.{i}"
        if isinstance(block, TextBlockParam) or (isinstance(block, TEXT_BLOCKS) and message.role == "user"):
            texts.append(block_text(block, at))
        elif isinstance(block, ToolUseBlockParam) and message.role == "assistant":
            calls.append(ToolCall(block.id, block.name, block.input))
            tool_names[block.id] = block.name
        elif isinstance(block, ToolResultBlockParam) and message.role == "user":
            results.append(ChatMessage("tool", _tool_result_text(block, at), tool_call_id=block.tool_use_id,
                                       name=tool_names.get(block.tool_use_id)))
        elif isinstance(block, ThinkingBlockParam) and message.role == "assistant":
            if signer is not None:
                reasoning.append(signer.verify(block.thinking, block.signature, at))
        elif isinstance(block, RedactedThinkingBlockParam) and message.role == "assistant":
            continue  # opaque by definition: nothing to render
        else:
            raise unsupported(block, at)
    out = results
    if texts or calls or not results:
        out.append(ChatMessage(message.role, "\n\n".join(texts), tool_calls=tuple(calls),
                               reasoning="\n\n".join(reasoning) or None))
    return out


def _merged(messages: list[MessageParam], signer: ThinkingSigner | None) -> list[ChatMessage]:
    """Consecutive user or assistant turns are joined, as the API does; tool results stay separate."""
    merged: list[ChatMessage] = []
    tool_names: dict[str, str] = {}
    for i, message in enumerate(messages):
        for turn in _turn(message, f"messages.{i}", tool_names, signer):
            prev = merged[-1] if merged else None
            if prev is not None and prev.role == turn.role and turn.role != "tool":
                text = "\n\n".join(t for t in (prev.content, turn.content) if t)
                turn = ChatMessage(turn.role, text, tool_calls=prev.tool_calls + turn.tool_calls,
                                   reasoning=prev.reasoning or turn.reasoning)
                merged.pop()
            merged.append(turn)
    return merged


def _tool_spec(tool: ToolParam, where: str) -> ToolSpec | None:
    if tool.input_schema is None and tool.type not in (None, "custom"):
        return None  # an Anthropic server tool (web search, tool search, ...): not offered to the model
    if tool.input_schema is None:
        raise InvalidRequestError(f"{where}.input_schema: Field required")
    return function_tool(tool.name, tool.description, tool.input_schema, bool(tool.strict), where)


def _referenced_tools(req: _ConversationRequest) -> set[str]:
    """Tools named by `tool_reference` blocks in tool results: a tool search loaded them."""
    return {ref.tool_name for message in req.messages if isinstance(message.content, list)
            for block in message.content if isinstance(block, ToolResultBlockParam)
            and isinstance(block.content, list)
            for ref in block.content if isinstance(ref, ToolReferenceBlockParam)}


def _tools(req: _ConversationRequest) -> list[ToolSpec]:
    """The tools offered to the model. A `defer_loading` tool is validated but left out, as the API leaves it
    out of the model's context until a tool search loads it (a `tool_reference` in a tool result); Claude Code
    sends a placeholder this way, and its own ToolSearch tool answers with references."""
    tools = req.tools or []
    specs = [_tool_spec(t, f"tools.{i}") for i, t in enumerate(tools)]
    unique_names([s for s in specs if s is not None])
    loaded = _referenced_tools(req) if any(t.defer_loading for t in tools) else set()
    return [s for s, t in zip(specs, tools, strict=True)
            if s is not None and (not t.defer_loading or s.name in loaded)]


def to_tool_choice(req: _ConversationRequest, tools: list[ToolSpec]) -> ToolChoice:
    choice = req.tool_choice
    if choice is None:
        return ToolChoice()
    parallel = not choice.disable_parallel_tool_use
    if choice.type == "tool":
        if not choice.name:
            raise InvalidRequestError("tool_choice.name: Field required")
        if choice.name not in {t.name for t in tools}:
            raise InvalidRequestError(f"tool_choice.name: tool '{choice.name}' is not in tools")
    if choice.type in ("any", "tool") and not tools:
        raise InvalidRequestError(f"tool_choice: '{choice.type}' requires tools")
    return ToolChoice(choice.type, choice.name, parallel)


# Claude Code opens its system prompt with a per-request billing line (`x-anthropic-billing-header: …;
# cch=…;`). It means nothing to a local model and, changing every request, would defeat the prefix cache.
BILLING_LINE = "x-anthropic-billing-header:"


def _without_billing_line(text: str) -> str:
    if not text.lstrip().startswith(BILLING_LINE):
        return text
    return text.lstrip().partition("\n")[2]


def _system_text(system: str | list[Any], where: str) -> str:
    texts = [system] if isinstance(system, str) else [block_text(b, f"{where}.{i}") for i, b in enumerate(system)]
    return "\n\n".join(t for t in map(_without_billing_line, texts) if t)


def to_conversation(req: _ConversationRequest, signer: ThinkingSigner | None = None, *,
                    check_pairs: bool = True) -> Conversation:
    """`signer` verifies thinking blocks in history (a tampered one is a 400); without it they are dropped.
    `check_pairs=False` is for parley's own variants of a checked request: a cache mark is a tool call or
    result of its own, which answers nothing."""
    if not req.messages:
        raise InvalidRequestError("messages: at least one message is required")
    messages = _merged(req.messages, signer)
    if check_pairs:  # after the blocks themselves were read: their errors name them first
        check_tool_pairs(req.messages)
    # System messages before the first turn extend the system prompt: every template takes that.
    leading = [] if req.system is None else [_system_text(req.system, "system")]
    while messages and messages[0].role == "system":
        leading.append(messages.pop(0).content)
    if not messages:
        raise InvalidRequestError("messages: at least one user or assistant message is required")
    last = messages[-1]
    if last.role == "assistant" and not last.tool_calls and last.content != last.content.rstrip():
        raise InvalidRequestError("final assistant content cannot end with trailing whitespace")
    system = "\n\n".join(t for t in leading if t)
    return Conversation(messages=messages, system=system or None, tools=_tools(req))


def to_output_format(req: _ConversationRequest) -> OutputFormat:
    """Structured output (`output_config.format`, or the beta's `output_format`): always strict."""
    config = req.output_config.format if req.output_config else None
    if config is not None and req.output_format is not None:
        raise InvalidRequestError("Both output_format and output_config.format were provided. "
                                  "Please use only output_config.format (output_format is deprecated).")
    fmt = config or req.output_format
    if fmt is None:
        return OutputFormat()
    where = "output_config.format.schema" if config is not None else "output_format.schema"
    return output_format("json_schema", fmt.schema_, True, where)


def to_request(req: _ConversationRequest, conversation: Conversation, params: SamplingParams,
               max_tokens: int | None) -> ChatRequest:
    """The neutral request, around a conversation already translated (and verified) from `req`."""
    return ChatRequest(conversation, params, to_tool_choice(req, conversation.tools), to_thinking(req, max_tokens),
                       to_output_format(req))


def to_thinking(req: _ConversationRequest, max_tokens: int | None) -> Thinking:
    """Validated as the API does: an enabled budget is ≥ 1024 and below max_tokens."""
    param = req.thinking
    if param is None or param.type == "disabled":
        return Thinking()
    display = param.display or "summarized"
    if req.tool_choice is not None and req.tool_choice.type in ("any", "tool"):
        raise InvalidRequestError("Thinking may not be enabled when tool_choice forces tool use.")
    if param.type == "adaptive":
        effort = req.output_config.effort if req.output_config else None
        return Thinking(True, None, effort, display)
    if param.budget_tokens is None:
        raise InvalidRequestError("thinking.enabled.budget_tokens: Field required")
    if param.budget_tokens < 1024:
        raise InvalidRequestError("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
    if max_tokens is not None and param.budget_tokens >= max_tokens:
        raise InvalidRequestError("`max_tokens` must be greater than `thinking.budget_tokens`")
    return Thinking(True, param.budget_tokens, None, display)


def to_sampling(req: MessagesRequest) -> SamplingParams:
    return SamplingParams(
        max_tokens=req.max_tokens,
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=req.top_p,
        top_k=req.top_k,
        stop=list(req.stop_sequences or []),
    )


def usage(prompt_tokens: int, output_tokens: int, cached_tokens: int = 0,
          cache: Breakpoints | None = None) -> dict[str, Any]:
    """As the real API counts: the prompt is what was read from the cache, what was written to it (computed now,
    up to the last `cache_control` breakpoint; by ttl in `cache_creation`), and the rest, `input_tokens`."""
    one_hour, five_minutes = cache.creation(cached_tokens) if cache is not None else (0, 0)
    created = one_hour + five_minutes
    return {
        "input_tokens": prompt_tokens - cached_tokens - created,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": created,
        "cache_read_input_tokens": cached_tokens,
        "cache_creation": {"ephemeral_5m_input_tokens": five_minutes, "ephemeral_1h_input_tokens": one_hour},
    }


def message_body(msg_id: str, model: str, content: list[dict[str, Any]], finish: Finish | None,
                 input_tokens: int, cache: Breakpoints | None = None,
                 context_management: dict[str, Any] | None = None) -> dict[str, Any]:
    body = {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": finish.stop_reason if finish else None,
        "stop_sequence": finish.stop_sequence if finish else None,
        "usage": usage(input_tokens, finish.output_tokens if finish else 0, finish.cached_tokens if finish else 0,
                       cache),
    }
    if context_management is not None:
        body["context_management"] = context_management
    return body
