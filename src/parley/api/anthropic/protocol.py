"""Anthropic Messages API wire types (requests). Unknown fields are accepted and ignored, as new SDK
fields appear faster than servers follow; a known field of the wrong type is a 400."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from ...core.tools import MAX_TOOLS
from ..unicode import RequestBody


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow")


class CacheControlParam(_Wire):
    """A prompt-caching breakpoint: the prompt up to and including its block (prompt_cache.py)."""

    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None  # "5m" when not given


class TextBlockParam(_Wire):
    type: Literal["text"]
    text: str
    cache_control: CacheControlParam | None = None


class OtherBlockParam(_Wire):
    """Any block type parley does not handle; rejected with a clear message in translation."""

    type: str


# Content a text-only model takes as text (documents.py renders it). Sources are told apart by `type`, so an
# error names the branch as the API does: `messages.0.content.0.document.source.base64.data: ...`.
class Base64ImageSource(_Wire):
    type: Literal["base64"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str


class URLSource(_Wire):
    type: Literal["url"]
    url: str


class FileSource(_Wire):
    type: Literal["file"]
    file_id: str


class ImageBlockParam(_Wire):
    type: Literal["image"]
    source: Annotated[Base64ImageSource | URLSource | FileSource, Field(discriminator="type")]
    cache_control: CacheControlParam | None = None


class Base64PDFSource(_Wire):
    type: Literal["base64"]
    media_type: Literal["application/pdf"]
    data: str


class PlainTextSource(_Wire):
    type: Literal["text"]
    media_type: Literal["text/plain"]
    data: str


class ContentBlockSource(_Wire):
    type: Literal["content"]
    content: str | list[Annotated[TextBlockParam | ImageBlockParam, Field(discriminator="type")]]


class DocumentBlockParam(_Wire):
    type: Literal["document"]
    source: Annotated[Base64PDFSource | PlainTextSource | ContentBlockSource | URLSource | FileSource,
                      Field(discriminator="type")]
    title: str | None = None
    context: str | None = None
    cache_control: CacheControlParam | None = None


class SearchResultBlockParam(_Wire):
    type: Literal["search_result"]
    source: str
    title: str
    content: list[TextBlockParam]
    cache_control: CacheControlParam | None = None


_BLOCK_TAGS = {"text": "text_block", "tool_use": "tool_use_block", "tool_result": "tool_result_block",
               "thinking": "thinking_block", "redacted_thinking": "redacted_thinking_block",
               "image": "image", "document": "document", "search_result": "search_result",
               "tool_reference": "tool_reference"}


def _block_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return _BLOCK_TAGS.get(kind, "other_block") if isinstance(kind, str) else "other_block"  # fuzzers send anything


class ToolReferenceBlockParam(_Wire):
    """In a `tool_result` (a tool search's answer): loads a `defer_loading` tool into the model's context."""

    type: Literal["tool_reference"]
    tool_name: str
    cache_control: CacheControlParam | None = None


ResultContentParam = Annotated[
    Annotated[TextBlockParam, Tag("text_block")]
    | Annotated[ToolReferenceBlockParam, Tag("tool_reference")]
    | Annotated[ImageBlockParam, Tag("image")]
    | Annotated[DocumentBlockParam, Tag("document")]
    | Annotated[SearchResultBlockParam, Tag("search_result")]
    | Annotated[OtherBlockParam, Tag("other_block")],
    Discriminator(_block_tag),
]


class ToolUseBlockParam(_Wire):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]
    cache_control: CacheControlParam | None = None


class ToolResultBlockParam(_Wire):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[ResultContentParam] | None = None
    is_error: bool | None = None
    cache_control: CacheControlParam | None = None


class ThinkingBlockParam(_Wire):
    type: Literal["thinking"]
    thinking: str
    signature: str | None = None


class RedactedThinkingBlockParam(_Wire):
    type: Literal["redacted_thinking"]
    data: str


ContentBlockParam = Annotated[
    Annotated[TextBlockParam, Tag("text_block")]
    | Annotated[ToolUseBlockParam, Tag("tool_use_block")]
    | Annotated[ToolResultBlockParam, Tag("tool_result_block")]
    | Annotated[ThinkingBlockParam, Tag("thinking_block")]
    | Annotated[RedactedThinkingBlockParam, Tag("redacted_thinking_block")]
    | Annotated[ImageBlockParam, Tag("image")]
    | Annotated[DocumentBlockParam, Tag("document")]
    | Annotated[SearchResultBlockParam, Tag("search_result")]
    | Annotated[OtherBlockParam, Tag("other_block")],
    Discriminator(_block_tag),
]


class ToolParam(_Wire):
    """A client tool (`input_schema`), or an Anthropic server tool (a versioned `type`, no schema)."""

    name: str
    type: str | None = None
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    defer_loading: bool | None = None
    cache_control: CacheControlParam | None = None
    strict: bool | None = None  # structured outputs: the input is grammar-enforced


class ToolChoiceParam(_Wire):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class ThinkingParam(_Wire):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = None
    display: Literal["summarized", "omitted"] | None = None


class JSONOutputFormatParam(_Wire):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfigParam(_Wire):
    effort: str | None = None
    format: JSONOutputFormatParam | None = None


# context_management (beta context-management-2025-06-27): edits applied before rendering (context_edits.py).
class InputTokensParam(_Wire):
    type: Literal["input_tokens"]
    value: int = Field(ge=0)


class ToolUsesParam(_Wire):
    type: Literal["tool_uses"]
    value: int = Field(ge=0)


class ThinkingTurnsParam(_Wire):
    type: Literal["thinking_turns"]
    value: int = Field(ge=0)


class AllThinkingTurnsParam(_Wire):
    type: Literal["all"]


class ClearToolUsesEditParam(_Wire):
    type: Literal["clear_tool_uses_20250919"]
    trigger: Annotated[InputTokensParam | ToolUsesParam, Field(discriminator="type")] | None = None
    keep: ToolUsesParam | None = None
    clear_at_least: InputTokensParam | None = None
    exclude_tools: list[str] | None = None
    clear_tool_inputs: bool | list[str] | None = None


class ClearThinkingEditParam(_Wire):
    type: Literal["clear_thinking_20251015"]
    keep: Literal["all"] | Annotated[ThinkingTurnsParam | AllThinkingTurnsParam,
                                     Field(discriminator="type")] | None = None


class CompactEditParam(_Wire):
    """Server-side summarizing: accepted while the prompt is below its trigger, where it does nothing."""

    type: Literal["compact_20260112"]
    trigger: InputTokensParam | None = None


ContextEditParam = Annotated[ClearToolUsesEditParam | ClearThinkingEditParam | CompactEditParam,
                             Field(discriminator="type")]


class ContextManagementParam(_Wire):
    edits: list[ContextEditParam] | None = None


class MessageParam(_Wire):
    role: Literal["user", "assistant", "system"]  # a system message may come anywhere (translate.py)
    content: str | list[ContentBlockParam]


class _ConversationRequest(RequestBody):
    model: str
    messages: list[MessageParam]
    system: str | list[TextBlockParam] | None = None
    tools: list[ToolParam] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: ToolChoiceParam | None = None
    thinking: ThinkingParam | None = None
    output_config: OutputConfigParam | None = None
    output_format: JSONOutputFormatParam | None = None  # the structured-outputs beta's spelling, still accepted
    cache_control: CacheControlParam | None = None  # automatic caching: a breakpoint on the last block
    context_management: ContextManagementParam | None = None


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
