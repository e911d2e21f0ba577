"""What every output parser is: model text in, neutral events out, one parser per request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..core.events import Event


class OutputParser(Protocol):
    """Per request: model text in, text, tool-call or reasoning events out."""

    def feed(self, text: str) -> list[Event]: ...

    def finish(self) -> list[Event]: ...


ParserFactory = Callable[[dict[str, dict[str, Any]]], OutputParser]  # tool name → input_schema
