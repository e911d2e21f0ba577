"""Mistral's tool calls: `[TOOL_CALLS]` then a JSON array of call objects (v3 templates), one call object
(what constrained decoding forces), or `name[ARGS]{json}` (recent templates, one marker per call, an
optional `[CALL_ID]id` before `[ARGS]`).

Text before a marker is text; a marker's prefix at the end of a chunk is held back, so markup never leaks.
Content after a marker that turns out not to be a call of a known tool is shown as the model wrote it.
"""

from __future__ import annotations

import json
from typing import Any

from ..core.events import Event, ToolArgsDelta, ToolCallEnd, ToolCallStart
from .holdback import partial_marker
from .json_scan import JsonCallScanner, JsonLexer
from .markup import MarkupCallParser
from .tool_calls import CallSyntax, ToolFormat, new_tool_id

MARKER = "[TOOL_CALLS]"
ARGS = "[ARGS]"
CALL_ID = "[CALL_ID]"
MAX_NAME = 256  # a "name" longer than this is prose, not a tool name


class MistralToolParser(MarkupCallParser):
    """Per request: `feed(text) -> events`, `finish() -> events`; holds only its own buffers."""

    def __init__(self, tool_names: set[str]) -> None:
        super().__init__(tool_names)
        # States: text | open | array | element | object | name | call_id | args (see `_step`).
        self._then = "text"  # the state after the JSON call being read
        self._args = _ObjectEnd()

    def _step(self, text: str, events: list[Event]) -> str:
        match self._state:
            case "text":
                return self._feed_text(text, events)
            case "open":  # right after the marker
                return self._feed_open(text, events)
            case "array":  # between a v3 array's call objects
                return self._feed_array(text, events)
            case "element":  # a call object inside the array
                return self._feed_json(text, events, then="array")
            case "object":  # a single call object (what the grammar forces)
                return self._feed_json(text, events, then="text")
            case "name" | "call_id":  # name[CALL_ID]id[ARGS]
                return self._feed_until(text, events, self._state)
            case "args":
                return self._feed_args(text, events)
        raise AssertionError(f"unknown state {self._state!r}")

    # -- text -------------------------------------------------------------------------------------
    def _feed_text(self, text: str, events: list[Event]) -> str:
        buf, self._held = self._held + text, ""
        at = buf.find(MARKER)
        if at >= 0:
            body = buf[:at].rstrip()  # whitespace before a call is not text (unless it is not a call)
            self._emit_text(body, events)
            self._state, self._raw = "open", buf[len(body) : at + len(MARKER)]
            return buf[at + len(MARKER) :]
        keep = partial_marker(buf, (MARKER,))
        body = buf[: len(buf) - keep].rstrip()  # trailing whitespace waits: a call may follow
        self._emit_text(body, events)
        self._held = buf[len(body) :]
        return ""

    def _not_a_call(self, rest: str, events: list[Event]) -> str:
        """What followed the marker is not a call: show it as written, and read on as text."""
        if self._started:  # a started call cannot turn back into text: it ends without an input
            self._end_call(None, events)
        else:
            self._emit_text(self._raw, events)
        self._state, self._scanner, self._raw = "text", None, ""
        return rest

    def _end_call(self, arguments: dict[str, Any] | None, events: list[Event]) -> None:
        events.append(ToolCallEnd(arguments))
        self._started, self._raw, self._seen_text = False, "", False

    # -- after the marker -------------------------------------------------------------------------
    def _feed_open(self, text: str, events: list[Event]) -> str:
        stripped = text.lstrip()
        self._raw += text[: len(text) - len(stripped)]
        if not stripped:
            return ""
        if stripped[0] == "[":  # v3: an array of call objects
            self._raw += "["
            self._state = "array"
            return stripped[1:]
        self._state = "object" if stripped[0] == "{" else "name"
        if self._state == "object":
            self._scanner = JsonCallScanner(self._tools)
        return stripped

    def _feed_array(self, text: str, events: list[Event]) -> str:
        """Between the array's elements: separators, the next object, or the end."""
        stripped = text.lstrip().lstrip(",").lstrip()
        self._raw += text[: len(text) - len(stripped)]
        if not stripped:
            return ""
        if stripped[0] == "]":
            self._state, self._raw = "text", ""
            return stripped[1:]
        if stripped[0] != "{":
            return self._not_a_call(stripped, events)
        self._state, self._scanner = "element", JsonCallScanner(self._tools)
        return stripped

    def _feed_json(self, text: str, events: list[Event], then: str) -> str:
        self._then = then
        return self._feed_scanner(text, events)

    def _start_call(self, name: str, events: list[Event]) -> None:
        self._started = True
        events.append(ToolCallStart(new_tool_id(), name))

    def _json_done(self, arguments: dict[str, Any] | None, events: list[Event]) -> None:
        self._end_call(arguments, events)
        self._state, self._scanner = self._then, None

    # -- name[CALL_ID]id[ARGS]{json} --------------------------------------------------------------
    def _feed_until(self, text: str, events: list[Event], state: str) -> str:
        """Collect the name (or call id) up to `[ARGS]` (or, after a name, `[CALL_ID]`)."""
        tags = (ARGS, CALL_ID) if state == "name" else (ARGS,)
        named = False
        for i, ch in enumerate(text):
            if i > MAX_NAME or (ch.isspace() and named):
                return self._not_a_call(text, events)  # names and ids are short and have no spaces: prose
            if ch != "[":
                named = named or not ch.isspace()
                continue
            head = text[i:]
            tag = next((t for t in tags if head.startswith(t)), None)
            if tag is None:
                if any(t.startswith(head) for t in tags):
                    self._buf = text  # a tag's beginning: wait for the rest
                    return ""
                return self._not_a_call(text, events)
            self._raw += text[: i + len(tag)]
            if state == "name":
                name = text[:i].strip()  # the state's input is buffered from the name's start
                if name not in self._tools:
                    return self._not_a_call(head[len(tag) :], events)
                self._started = True
                events.append(ToolCallStart(new_tool_id(), name))
            self._state = "args" if tag == ARGS else "call_id"
            self._args = _ObjectEnd()
            return head[len(tag) :]
        self._buf = text
        return ""

    def _feed_args(self, text: str, events: list[Event]) -> str:
        """The arguments object, sent as generated; the call ends where the object closes."""
        before = len(self._args.raw)
        used = self._args.feed(text)
        if self._args.bad:  # not an object: the call has started, so it ends without an input
            self._end_call(None, events)
            self._state = "text"
            return text[used:]
        if len(self._args.raw) > before:
            events.append(ToolArgsDelta(self._args.raw[before:]))
        if not self._args.done:
            return ""
        try:
            value = json.loads(self._args.raw)
        except json.JSONDecodeError:
            value = None
        self._end_call(value if isinstance(value, dict) else None, events)
        self._state = "text"
        return text[used:]


class _ObjectEnd:
    """Finds where a streamed JSON object ends, skipping leading whitespace."""

    def __init__(self) -> None:
        self.raw = ""
        self.done = False
        self.bad = False
        self._lex = JsonLexer()

    def feed(self, text: str) -> int:
        """Consume up to the object's end; returns how many characters of `text` were used."""
        for i, ch in enumerate(text):
            if not self.raw:
                if ch.isspace():
                    continue
                if ch != "{":
                    self.bad = True
                    return i
            self.raw += ch
            if self._lex.step(ch) and self._lex.depth == 0:
                self.done = True
                return i + 1
        return len(text)


# What constrained decoding forces: one JSON call object after the marker, which the parser accepts too.
MISTRAL_TAG = CallSyntax(MARKER, markup=True)
MISTRAL_FORMAT = ToolFormat("mistral", (MISTRAL_TAG,), MISTRAL_TAG, lambda schemas: MistralToolParser(set(schemas)))
