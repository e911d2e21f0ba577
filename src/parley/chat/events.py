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
class Finish:
    stop_reason: StopReason
    stop_sequence: str | None
    output_tokens: int


Event = TextDelta | ThinkingDelta | ThinkingEnd | ToolCallStart | ToolArgsDelta | ToolCallEnd | Finish
