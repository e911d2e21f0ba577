"""What a request says about calling tools: which tool may be called, and how many at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ChoiceKind = Literal["auto", "any", "tool", "none"]
MAX_TOOLS = 512  # per request: each tool adds prompt and grammar work


@dataclass(frozen=True)
class ToolChoice:
    kind: ChoiceKind = "auto"
    name: str | None = None  # kind "tool"
    parallel: bool = True
