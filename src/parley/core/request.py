"""The one neutral request every API translates into: what `chat/` needs, and no API field names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .messages import Conversation
from .params import SamplingParams
from .thinking import Thinking
from .tools import ToolChoice

# A schema a grammar cannot hold whole: "reject" answers 400 before anything runs (strict schemas, as the
# real APIs do); "loosen" logs it and leaves the answer less constrained (OpenAI's non-strict formats).
SchemaPolicy = Literal["reject", "loosen"]


@dataclass(frozen=True)
class OutputFormat:
    """What the answer (the text, not tool calls) must be. `schema` is the checked JSON Schema for
    "json_schema" (objects closed when strict); `where` names it in errors, in the calling API's terms."""

    kind: Literal["text", "json_object", "json_schema"] = "text"
    schema: dict[str, Any] | None = None
    policy: SchemaPolicy = "reject"
    where: str = "schema"

    @property
    def answer_schema(self) -> dict[str, Any] | None:
        """The schema the answer is told and held to; None for free text."""
        if self.kind == "json_object":
            return {"type": "object"}
        return self.schema if self.kind == "json_schema" else None


@dataclass(frozen=True)
class ChatRequest:
    conversation: Conversation
    params: SamplingParams
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    thinking: Thinking = field(default_factory=Thinking)
    output: OutputFormat = field(default_factory=OutputFormat)
