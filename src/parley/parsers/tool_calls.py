"""The streaming tool-call parser: free text in, text and tool-call events out.

A format is a set of call syntaxes (hermes `<tool_call>…</tool_call>`, a ```json fence, bare JSON at the
start, Llama 3's `<|python_tag|>`); each wraps one JSON call object read by `JsonCallScanner`. Text that
may still become an opener is held back, so markup never leaks into text.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from ..core.events import Event, TextDelta, ToolArgsDelta, ToolCallEnd, ToolCallStart
from .base import OutputParser, ParserFactory
from .holdback import partial_marker
from .json_scan import JsonCallScanner, NotACall


@dataclass(frozen=True)
class CallSyntax:
    opener: str
    closer: str = ""
    markup: bool = False  # the opener is tool-call markup: a cut-off call is dropped, never shown as text
    opener_is_json: bool = False  # the opener is the JSON object's own first character
    line_start: bool = False  # recognised only at the start of a line (or of the turn)


HERMES = CallSyntax("<tool_call>", "</tool_call>", markup=True)
JSON_FENCE = CallSyntax("```json", "```")
BARE_JSON = CallSyntax("{", opener_is_json=True, line_start=True)
PYTHON_TAG = CallSyntax("<|python_tag|>", markup=True)


def new_tool_id() -> str:
    return f"toolu_{secrets.token_hex(12)}"


class ToolCallParser:
    """Per request: `feed(text) -> events`, `finish() -> events`; holds only its own buffers."""

    def __init__(self, syntaxes: tuple[CallSyntax, ...], tool_names: set[str]) -> None:
        self._syntaxes = syntaxes
        self._tools = tool_names
        self._held = ""  # text that may be the start of an opener, or whitespace that may precede one
        self._seen_text = False  # any non-whitespace text emitted this turn
        self._at_line_start = True  # the output so far ends at a line start (or is empty)
        self._call: tuple[CallSyntax, JsonCallScanner] | None = None
        self._call_raw = ""  # everything fed to the current call, opener included
        self._started = False
        self._closer: str | None = None  # the closer still expected after a finished call

    def feed(self, text: str) -> list[Event]:
        events: list[Event] = []
        while text:
            if self._call is not None:
                text = self._feed_call(text, events)
            elif self._closer is not None:
                text = self._feed_closer(text)
            else:
                text = self._feed_text(text, events)
        return events

    def finish(self) -> list[Event]:
        events: list[Event] = []
        if self._call is not None:
            syntax, scanner = self._call
            if self._started:
                # Small models sometimes end the turn without closing the call object; arguments that are
                # complete still make a call. Anything less is cut off: no input.
                complete = scanner.args_raw.strip() and not scanner.broken
                events.append(ToolCallEnd(scanner.arguments() if complete else None))
            elif not syntax.markup:
                self._emit_text(self._call_raw, events)
        elif self._held.strip():
            self._emit_text(self._held, events)
        self._held, self._call = "", None
        return events

    # -- text -------------------------------------------------------------------------------------
    def _feed_text(self, text: str, events: list[Event]) -> str:
        buf = self._held + text
        self._held = ""
        found = self._find_opener(buf)
        if found is not None:
            at, syntax = found
            # Whitespace before a call is not text (kept with the call's raw text in case it is not one).
            body = buf[:at].rstrip()
            self._emit_text(body, events)
            self._call = (syntax, JsonCallScanner(self._tools))
            self._started = False
            start = at if syntax.opener_is_json else at + len(syntax.opener)
            self._call_raw = buf[len(body) : start]
            return buf[start:]
        keep = self._partial_opener_length(buf)
        safe = buf[: len(buf) - keep]
        # Trailing whitespace waits: a call may follow, and the text must not depend on where chunks split.
        body = safe.rstrip()
        self._emit_text(body, events)
        self._held = buf[len(body) :]
        return ""

    def _at_start(self, buf: str, at: int) -> bool:
        """Only whitespace between the last line break (or the turn's start) and `at`."""
        before = buf[:at]
        line = before.rsplit("\n", 1)
        if len(line) == 2:
            return not line[1].strip()
        return self._at_line_start and not before.strip()

    def _find_opener(self, buf: str) -> tuple[int, CallSyntax] | None:
        best: tuple[int, CallSyntax] | None = None
        for syntax in self._syntaxes:
            at = buf.find(syntax.opener)
            while syntax.line_start and at >= 0 and not self._at_start(buf, at):
                at = buf.find(syntax.opener, at + 1)
            if at >= 0 and (best is None or at < best[0]):
                best = (at, syntax)
        return best

    def _partial_opener_length(self, buf: str) -> int:
        anywhere = [s.opener for s in self._syntaxes if not s.line_start]
        line_start = [s.opener for s in self._syntaxes if s.line_start]
        # A line-start opener's beginning waits only where the opener would count.
        at_start = partial_marker(buf, line_start, lambda n: self._at_start(buf, len(buf) - n))
        return max(partial_marker(buf, anywhere), at_start)

    def _emit_text(self, text: str, events: list[Event]) -> None:
        if not text:
            return
        if not self._seen_text:
            text = text.lstrip()
            if not text:
                return
        self._seen_text = True
        self._at_line_start = text.endswith("\n")
        events.append(TextDelta(text))

    # -- call -------------------------------------------------------------------------------------
    def _feed_call(self, text: str, events: list[Event]) -> str:
        syntax, scanner = self._call
        self._call_raw += text
        try:
            args = scanner.feed(text)
        except NotACall:
            self._call = None  # it was only text after all; what followed may still hold a call
            self._emit_text(self._call_raw[: len(self._call_raw) - len(scanner.rest)], events)
            return scanner.rest
        if scanner.name is not None and not self._started:
            self._started = True
            events.append(ToolCallStart(new_tool_id(), scanner.name))
        if args:
            events.append(ToolArgsDelta(args))
        if not scanner.done:
            return ""
        if not self._started:
            self._started = True
            events.append(ToolCallStart(new_tool_id(), scanner.name))
        arguments = scanner.arguments()
        if arguments == {} and not scanner.args_raw:
            events.append(ToolArgsDelta("{}"))  # no arguments member: the fragments must still parse to the input
        events.append(ToolCallEnd(arguments))
        self._call, self._closer = None, syntax.closer
        # Text after a call is a new block: like the turn's first, its leading whitespace is dropped.
        self._seen_text, self._at_line_start = False, True
        return scanner.rest

    def _feed_closer(self, text: str) -> str:
        """Skip whitespace and the closer after a call; anything else goes back to text."""
        expected = self._closer or ""
        stripped = text.lstrip()
        if not expected:
            self._closer = None
            return stripped
        if stripped.startswith(expected):
            self._closer = None
            return stripped[len(expected):]
        if expected.startswith(stripped):
            self._closer = expected[len(stripped):] or None
            return ""
        self._closer = None
        return stripped


@dataclass(frozen=True)
class ToolFormat:
    """A tool-call format, registered by `name` in registry.py."""

    name: str
    syntaxes: tuple[CallSyntax, ...]  # what the parser accepts (lenient: small models stray); lazy grammar triggers
    native: CallSyntax  # what constrained decoding forces
    factory: ParserFactory | None = None  # None: a ToolCallParser over `syntaxes`

    def make_parser(self, tool_schemas: dict[str, dict[str, Any]]) -> OutputParser:
        """A fresh parser for one request whose callable tools are `tool_schemas`."""
        if self.factory is not None:
            return self.factory(tool_schemas)
        return ToolCallParser(self.syntaxes, set(tool_schemas))


HERMES_FORMAT = ToolFormat("hermes", (HERMES, JSON_FENCE, BARE_JSON), HERMES)
LLAMA3_FORMAT = ToolFormat("llama3_json", (PYTHON_TAG, JSON_FENCE, BARE_JSON), BARE_JSON)
JSON_FORMAT = ToolFormat("json", (JSON_FENCE, BARE_JSON), BARE_JSON)
