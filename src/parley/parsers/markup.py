"""What the tag-based tool-call parsers (Mistral `[TOOL_CALLS]`, Qwen3-Coder `<tool_call><function=…>`) share:
text outside calls, and the end of the turn."""

from __future__ import annotations

from ..chat.events import Event, TextDelta, ToolCallEnd


class MarkupCallParser:
    """Subclasses keep `_state` ("text" between calls), `_held` (text that may begin a marker), `_buf`,
    `_started` (a call's start was emitted) and `_seen_text` (this text block has begun)."""

    _state: str
    _held: str
    _buf: str
    _started: bool
    _seen_text: bool

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
