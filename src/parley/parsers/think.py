"""Reasoning parser: `<think>…</think>` → ThinkingDelta…, ThinkingEnd; the rest passes on as answer text.

Tags may be split anywhere across tokens. A prompt that already opened `<think>` starts the parser inside
the reasoning (then an output with only the closing tag is handled too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..core.events import Event, TextDelta, ThinkingDelta, ThinkingEnd
from ..core.thinking import CLOSE, OPEN
from .base import OutputParser
from .holdback import partial_marker


class ThinkParser:
    """Per request. Answer text is returned as TextDelta events for the next parser in line."""

    def __init__(self, starts_open: bool) -> None:
        self._state = "thinking" if starts_open else "start"  # start | thinking | after | answer
        self._held = ""
        self._thought: list[str] = []

    def feed(self, text: str) -> list[Event]:
        events: list[Event] = []
        buf, self._held = self._held + text, ""
        while buf:
            if self._state == "after":  # the blank lines between `</think>` and the answer
                buf = buf.lstrip()
                if not buf:
                    break
                self._state = "answer"
            if self._state == "answer":
                events.append(TextDelta(buf))
                break
            if self._state == "start":
                stripped = buf.lstrip()
                if OPEN.startswith(stripped):  # maybe the start of `<think>`: wait
                    self._held = buf
                    break
                if stripped.startswith(OPEN):
                    self._state, buf = "thinking", stripped[len(OPEN):]
                    continue
                self._state = "answer"  # no reasoning this turn
                continue
            at = buf.find(CLOSE)
            if at >= 0:
                self._think(buf[:at], events)
                events.append(ThinkingEnd("".join(self._thought)))
                self._state, buf = "after", buf[at + len(CLOSE):]
                continue
            keep = partial_marker(buf, (CLOSE,))
            self._think(buf[: len(buf) - keep], events)
            self._held = buf[len(buf) - keep:]
            break
        return events

    def _think(self, text: str, events: list[Event]) -> None:
        if not self._thought:
            text = text.lstrip()  # the newline after `<think>`
        if text:
            self._thought.append(text)
            events.append(ThinkingDelta(text))

    def finish(self) -> list[Event]:
        """The output ended: reasoning cut off by max_tokens still closes its block."""
        events: list[Event] = []
        if self._state == "thinking":
            self._think(self._held, events)
            events.append(ThinkingEnd("".join(self._thought)))
        elif self._held.strip():
            events.append(TextDelta(self._held))
        self._held, self._state = "", "answer"
        return events


@dataclass(frozen=True)
class ReasoningFormat:
    """A reasoning format, registered by `name` in registry.py."""

    name: str
    factory: Callable[[bool], OutputParser] | None  # (the prompt opened the reasoning) → parser; None: no reasoning

    @property
    def reasons(self) -> bool:
        """Output may begin with reasoning: the template's thinking switches and the reasoning budget apply."""
        return self.factory is not None

    def make_parser(self, starts_open: bool) -> OutputParser | None:
        return self.factory(starts_open) if self.factory is not None else None


THINK_FORMAT = ReasoningFormat("think", ThinkParser)
NO_REASONING = ReasoningFormat("none", None)  # all output is the answer, `<think>` tags included
