"""Typed events a generation emits; each API translates them straight to its wire format."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ThinkingDelta:
    text: str


@dataclass(frozen=True)
class ThinkingEnd:
    """The reasoning is over; `text` is exactly the concatenated deltas (what gets signed)."""

    text: str


@dataclass(frozen=True)
class ToolCallStart:
    id: str
    name: str


@dataclass(frozen=True)
class ToolArgsDelta:
    """A fragment of the call's arguments JSON, as generated; the fragments concatenate to the input."""

    json: str


@dataclass(frozen=True)
class ToolCallEnd:
    input: dict[str, Any] | None  # None: the call was cut off and its input is incomplete


@dataclass(frozen=True)
class PromptCached:
    """First event: generation started, and `cached_tokens` of the prompt came from the prefix cache."""

    cached_tokens: int


@dataclass(frozen=True)
class TokenChoice:
    text: str
    bytes: bytes
    logprob: float


@dataclass(frozen=True)
class TokenLogprobs:
    """A generated token's log-probability and the most likely alternatives; precedes its text."""

    chosen: TokenChoice
    top: tuple[TokenChoice, ...]


@dataclass(frozen=True)
class Finish:
    stop_reason: StopReason
    stop_sequence: str | None
    output_tokens: int
    cached_tokens: int = 0  # prompt tokens read from the prefix cache


Event = (TextDelta | ThinkingDelta | ThinkingEnd | ToolCallStart | ToolArgsDelta | ToolCallEnd | PromptCached
         | TokenLogprobs | Finish)
