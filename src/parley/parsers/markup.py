"""What the tag-based tool-call parsers (Mistral `[TOOL_CALLS]`, Qwen3-Coder `<tool_call><function=…>`) share:
text outside calls, and the end of the turn."""

from __future__ import annotations

import abc
from typing import Any

from ..core.events import Event, TextDelta, ToolArgsDelta, ToolCallEnd
from .json_scan import JsonCallScanner, NotACall


class MarkupCallParser(abc.ABC):
    """Per request: `feed(text) -> events`, `finish() -> events`. A subclass is a state machine over `_state`
    ("text" between calls): `_step` runs the current state's handler; the hooks say how a call starts, how its
    JSON ends, and what to do when the markup was not a call after all."""

    def __init__(self, tool_names: set[str]) -> None:
        self._tools = tool_names
        self._state = "text"
        self._held = ""  # text that may start a marker, or trailing whitespace that may precede one
        self._buf = ""  # the current state's pending input: too little to decide, fed again with what follows
        self._started = False  # a ToolCallStart was emitted for the current call
        self._seen_text = False  # any text emitted in the current text block
        self._raw = ""  # markup consumed since the marker, shown as text if it is not a call after all
        self._scanner: JsonCallScanner | None = None  # the JSON call object being read

    def feed(self, text: str) -> list[Event]:
        events: list[Event] = []
        text, self._buf = self._buf + text, ""
        while text:
            text = self._step(text, events)
        return events

    @abc.abstractmethod
    def _step(self, text: str, events: list[Event]) -> str:
        """Feed `text` to the current state's handler; returns what it left for the next state."""

    @abc.abstractmethod
    def _start_call(self, name: str, events: list[Event]) -> None:
        """The JSON call's name is known: the call starts."""

    @abc.abstractmethod
    def _json_done(self, arguments: dict[str, Any] | None, events: list[Event]) -> None:
        """The JSON call object closed (`arguments` None: not a valid input)."""

    @abc.abstractmethod
    def _not_a_call(self, rest: str, events: list[Event]) -> str:
        """What followed the marker is not a call; returns the text to read on with."""

    def _feed_scanner(self, text: str, events: list[Event]) -> str:
        """Read a `{"name": …, "arguments": …}` call: start, argument fragments as generated, end."""
        scanner = self._scanner
        assert scanner is not None
        try:
            args = scanner.feed(text)
        except NotACall:
            self._raw += text[: len(text) - len(scanner.rest)]
            return self._not_a_call(scanner.rest, events)
        self._raw += text[: len(text) - len(scanner.rest)]
        if scanner.name is not None and not self._started:
            self._start_call(scanner.name, events)
        if args:
            events.append(ToolArgsDelta(args))
        if not scanner.done:
            return ""
        arguments = scanner.arguments()
        if arguments == {} and not scanner.args_raw:
            events.append(ToolArgsDelta("{}"))  # no arguments member: the fragments must still parse
        self._json_done(arguments, events)
        return scanner.rest

    def finish(self) -> list[Event]:
        events: list[Event] = []
        if self._started:
            events.append(ToolCallEnd(None))  # cut off: the input is incomplete
        elif self._state == "text" and self._held.strip():
            self._emit_text(self._held, events)
        # A marker with no call yet is dropped: it was markup, and the call it began never came.
        self._state, self._held, self._buf, self._started = "text", "", "", False
        return events

    def _emit_text(self, text: str, events: list[Event]) -> None:
        if not self._seen_text:
            text = text.lstrip()  # a text block (the turn's, or one after a call) starts at its first non-space
        if text:
            self._seen_text = True
            events.append(TextDelta(text))
