"""The neutral conversation every API translates into."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class Conversation:
    """System prompt plus alternating turns. A final assistant turn is a prefill to continue."""

    messages: list[ChatMessage] = field(default_factory=list)
    system: str | None = None

    @property
    def prefill(self) -> str | None:
        if self.messages and self.messages[-1].role == "assistant":
            return self.messages[-1].content
        return None

    def template_messages(self) -> list[dict[str, str]]:
        """Messages in the shape Hugging Face chat templates expect."""
        out = [{"role": "system", "content": self.system}] if self.system else []
        out += [{"role": m.role, "content": m.content} for m in self.messages]
        return out
