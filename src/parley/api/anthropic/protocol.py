"""Anthropic Messages API wire types (requests). Unknown fields are accepted and ignored, as new SDK
fields appear faster than servers follow; a known field of the wrong type is a 400."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow")


class TextBlockParam(_Wire):
    type: Literal["text"]
    text: str
    cache_control: dict[str, Any] | None = None


class OtherBlockParam(_Wire):
    """Any block type parley does not handle yet; rejected with a clear message in translation."""

    type: str


def _block_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "text_block" if kind == "text" else "other_block"


ContentBlockParam = Annotated[
    Annotated[TextBlockParam, Tag("text_block")] | Annotated[OtherBlockParam, Tag("other_block")],
    Discriminator(_block_tag),
]


class MessageParam(_Wire):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlockParam]


class _ConversationRequest(_Wire):
    model: str
    messages: list[MessageParam]
    system: str | list[TextBlockParam] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None


class CountTokensRequest(_ConversationRequest):
    pass


class MessagesRequest(_ConversationRequest):
    max_tokens: int = Field(ge=1)
    temperature: float | None = Field(None, ge=0.0, le=1.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0)
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    metadata: dict[str, Any] | None = None
    service_tier: str | None = None
