"""The neutral conversation every API translates into."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]


# The arguments of a custom (free-text) tool, as the model writes them: one string.
TEXT_INPUT_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"input": {"type": "string"}},
                                     "required": ["input"], "additionalProperties": False}


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    input_schema: dict[str, Any]
    strict: bool = False  # its input is grammar-enforced even when calls in general are not
    # A custom tool takes free text: the model writes it as `{"input": "..."}` (TEXT_INPUT_SCHEMA), and
    # `input_grammar` (GBNF whose `root` is the text as the inside of a JSON string) constrains it.
    custom: bool = False
    input_grammar: str | None = None


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None  # role "tool": the call this result answers
    name: str | None = None  # role "tool": the tool's name
    reasoning: str | None = None  # role "assistant": its (verified) thinking, for templates that render it


@dataclass(frozen=True)
class Conversation:
    """System prompt plus turns. A final assistant turn without tool calls is a prefill to continue."""

    messages: list[ChatMessage] = field(default_factory=list)
    system: str | None = None
    tools: list[ToolSpec] = field(default_factory=list)

    @property
    def prefill(self) -> str | None:
        last = self.messages[-1] if self.messages else None
        if last is not None and last.role == "assistant" and not last.tool_calls:
            return last.content
        return None

    def template_messages(self) -> list[dict[str, Any]]:
        """Messages in the shape Hugging Face chat templates expect (OpenAI-style tool calls)."""
        out: list[dict[str, Any]] = [{"role": "system", "content": self.system}] if self.system else []
        for m in self.messages:
            item: dict[str, Any] = {"role": m.role, "content": m.content}
            if m.tool_calls:
                item["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in m.tool_calls
                ]
            if m.reasoning:
                item["reasoning_content"] = m.reasoning
            if m.role == "tool":
                item["tool_call_id"] = m.tool_call_id
                item["name"] = m.name
            out.append(item)
        return out

    def template_tools(self) -> list[dict[str, Any]] | None:
        if not self.tools:
            return None
        return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                  "parameters": t.input_schema}} for t in self.tools]
