"""Typed events a generation emits; each API translates them straight to its wire format."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

StopReason = Literal["end_turn", "max_tokens", "stop_sequence"]


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Finish:
    stop_reason: StopReason
    stop_sequence: str | None
    output_tokens: int


Event = TextDelta | Finish
