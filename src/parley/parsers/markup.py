"""What the tag-based tool-call parsers (Mistral `[TOOL_CALLS]`, Qwen3-Coder `<tool_call><function=…>`) share:
text outside calls, and the end of the turn."""

from __future__ import annotations

from typing import Any

from ..core.events import Event, TextDelta, ToolArgsDelta, ToolCallEnd
from .json_scan import JsonCallScanner, NotACall


class MarkupCallParser:
    """Subclasses keep `_state` ("text" between calls), `_held` (text that may begin a marker), `_buf`,
    `_started` (a call's start was emitted), `_seen_text` (this text block has begun), `_raw` (markup consumed
    since the marker) and `_scanner` (the JSON call being read); they say how a call starts, how it ends, and
    what to do when the markup was not a call after all."""

    _state: str
    _held: str
    _buf: str
    _started: bool
    _seen_text: bool
    _raw: str
    _scanner: JsonCallScanner | None

    def _start_call(self, name: str, events: list[Event]) -> None:
        raise NotImplementedError

    def _json_done(self, arguments: dict[str, Any] | None, events: list[Event]) -> None:
        raise NotImplementedError

    def _not_a_call(self, rest: str, events: list[Event]) -> str:
        raise NotImplementedError

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
