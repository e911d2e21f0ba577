"""Qwen3-Coder's XML tool calls, and hermes JSON (what constrained decoding forces for this format):

    <tool_call>\\n<function=NAME>\\n<parameter=KEY>\\nVALUE\\n</parameter>\\n...</function>\\n</tool_call>
    <tool_call>{"name": NAME, "arguments": {...}}</tool_call>

Parameter values are raw text, typed by the tool's input_schema. The arguments stream as JSON fragments:
`{"KEY": ` as soon as a parameter opens, a string value as it arrives (escaped), any other value once
complete, `}` at the end. A call that turns out not to be one is shown as the model wrote it.
"""

from __future__ import annotations

import ast
import json
import math
from typing import Any

from ..core.events import Event, ToolArgsDelta, ToolCallEnd, ToolCallStart
from .holdback import partial_marker
from .json_scan import JsonCallScanner
from .markup import MarkupCallParser
from .tool_calls import HERMES, ToolFormat, new_tool_id

CALL, CALL_END = "<tool_call>", "</tool_call>"
FUNCTION, FUNCTION_END = "<function=", "</function>"
PARAM, PARAM_END = "<parameter=", "</parameter>"
OPENERS = (CALL, FUNCTION)  # the model sometimes leaves out the <tool_call> wrapper
VALUE_ENDS = (PARAM_END, PARAM, FUNCTION_END, CALL_END)  # a missing </parameter> still ends the value
BODY_TAGS = (PARAM, FUNCTION_END, CALL_END)
MAX_NAME = 256  # a "name" longer than this is prose
TYPED = ("integer", "number", "boolean", "object", "array", "null")  # everything else is a string


class Qwen3CoderToolParser(MarkupCallParser):
    """Per request: `feed(text) -> events`, `finish() -> events`; holds only its own buffers."""

    def __init__(self, tool_schemas: dict[str, dict[str, Any]]) -> None:
        super().__init__(set(tool_schemas))
        # States: text | wrapped | json | name | body | key | value | closer (see `_step`).
        self._schemas = tool_schemas
        self._name = ""  # the current call
        self._input: dict[str, Any] = {}
        self._key_sent = False  # a parameter of the current call was sent: the next one follows a ", "
        self._key, self._value, self._value_began = "", "", False  # the current parameter (value: text so far)

    def _step(self, text: str, events: list[Event]) -> str:
        match self._state:
            case "text":
                return self._feed_text(text, events)
            case "wrapped":  # after <tool_call>
                return self._feed_wrapped(text, events)
            case "json":  # a hermes JSON call object
                return self._feed_scanner(text, events)
            case "name" | "key":  # <function=NAME> or <parameter=KEY>
                return self._tag_end(text, events)
            case "body":  # between parameters
                return self._feed_body(text, events)
            case "value":
                return self._feed_value(text, events)
            case "closer":  # after a call
                return self._feed_closer(text, events)
        raise AssertionError(f"unknown state {self._state!r}")

    # -- text -------------------------------------------------------------------------------------
    def _feed_text(self, text: str, events: list[Event]) -> str:
        buf, self._held = self._held + text, ""
        found = min(((buf.find(o), o) for o in OPENERS if o in buf), default=None)
        if found is not None:
            at, opener = found
            body = buf[:at].rstrip()  # whitespace before a call is not text (unless it is not a call)
            self._emit_text(body, events)
            self._raw = buf[len(body) : at + len(opener)]
            self._state = "wrapped" if opener == CALL else "name"
            return buf[at + len(opener) :]
        keep = partial_marker(buf, OPENERS)
        body = buf[: len(buf) - keep].rstrip()  # trailing whitespace waits: a call may follow
        self._emit_text(body, events)
        self._held = buf[len(body) :]
        return ""

    def _not_a_call(self, rest: str, events: list[Event]) -> str:
        """Show what was consumed as written, and read on as text."""
        self._emit_text(self._raw, events)
        self._state, self._scanner, self._raw = "text", None, ""
        return rest

    def _wait(self, text: str) -> str:
        self._buf = text  # too little to decide: fed again, with what comes next
        return ""

    # -- <tool_call> ------------------------------------------------------------------------------
    def _feed_wrapped(self, text: str, events: list[Event]) -> str:
        stripped = text.lstrip()
        if not stripped:
            return self._wait(text)
        if stripped.startswith("{"):
            self._raw += text[: len(text) - len(stripped)]
            self._state, self._scanner = "json", JsonCallScanner(self._tools)
            return stripped
        if stripped.startswith(FUNCTION):
            self._raw += text[: len(text) - len(stripped) + len(FUNCTION)]
            self._state = "name"
            return stripped[len(FUNCTION) :]
        if FUNCTION.startswith(stripped):
            return self._wait(text)
        return self._not_a_call(text, events)

    def _json_done(self, arguments: dict[str, Any] | None, events: list[Event]) -> None:
        self._end(arguments, events)

    def _start_call(self, name: str, events: list[Event]) -> None:
        self._started, self._name, self._input, self._key_sent = True, name, {}, False
        events.append(ToolCallStart(new_tool_id(), name))

    def _end(self, arguments: dict[str, Any] | None, events: list[Event]) -> None:
        events.append(ToolCallEnd(arguments))
        self._started, self._raw, self._scanner, self._seen_text = False, "", None, False
        self._state = "closer"

    def _feed_closer(self, text: str, events: list[Event]) -> str:
        """Skip whitespace and a `</tool_call>` after a call; anything else is text again."""
        stripped = text.lstrip()
        if stripped.startswith(CALL_END):
            self._state = "text"
            return stripped[len(CALL_END) :]
        if CALL_END.startswith(stripped):
            return self._wait(text)
        self._state = "text"
        return stripped

    # -- <function=NAME> <parameter=KEY>VALUE</parameter> ... </function> ------------------------
    def _tag_end(self, text: str, events: list[Event]) -> str:
        """Read the function's name (state "name") or a parameter's key ("key") up to its tag's `>`."""
        end = text.find(">")
        head = text if end < 0 else text[:end]
        if "<" in head or "\n" in head.strip() or len(head) > MAX_NAME:
            if self._state == "name":
                return self._not_a_call(text, events)  # not a tag after all: prose
            self._state = "body"  # a broken parameter tag inside a call: skipped like stray text
            return text
        if end < 0:
            return self._wait(text)
        word = head.strip()
        if self._state == "name":
            if word not in self._tools:
                self._raw += text[: end + 1]
                return self._not_a_call(text[end + 1 :], events)
            self._start_call(word, events)
            self._state = "body"
            return text[end + 1 :]
        opening = ", " if self._key_sent else "{"
        self._key, self._key_sent = word, True
        self._value, self._value_began = "", False
        lead = f"{opening}{json.dumps(word, ensure_ascii=False)}: " + ('"' if self._is_string() else "")
        events.append(ToolArgsDelta(lead))
        self._state = "value"
        return text[end + 1 :]

    def _feed_body(self, text: str, events: list[Event]) -> str:
        """Between parameters: the next tag; stray text inside a call is skipped."""
        stripped = text.lstrip()
        if not stripped:
            return ""
        if stripped.startswith(PARAM):
            self._state = "key"
            return stripped[len(PARAM) :]
        if stripped.startswith(FUNCTION_END) or stripped.startswith(CALL_END):
            events.append(ToolArgsDelta("}" if self._key_sent else "{}"))
            rest = stripped[len(FUNCTION_END) :] if stripped.startswith(FUNCTION_END) else stripped
            self._end(self._input, events)
            return rest
        if any(tag.startswith(stripped) for tag in BODY_TAGS):
            return self._wait(stripped)
        skip = stripped.find("<", 1)
        return stripped[skip:] if skip > 0 else ""

    def _feed_value(self, text: str, events: list[Event]) -> str:
        if not self._value_began:
            self._value_began = True
            text = text[1:] if text.startswith("\n") else text  # the value starts on the tag's next line
        ends = [(text.find(tag), tag) for tag in VALUE_ENDS if tag in text]
        if ends:
            at, tag = min(ends)
            final = text[:at][:-1] if text[:at].endswith("\n") else text[:at]  # and ends before its own line
            self._add_value(final, events, last=True)
            self._state = "body"
            return text[at + len(PARAM_END) :] if tag == PARAM_END else text[at:]
        keep = partial_marker(text, VALUE_ENDS)
        safe = text[: len(text) - keep]
        if safe.endswith("\n"):
            safe = safe[:-1]  # it may be the newline before the closing tag
        self._add_value(safe, events, last=False)
        return self._wait(text[len(safe) :])

    def _add_value(self, chunk: str, events: list[Event], last: bool) -> None:
        self._value += chunk
        if self._is_string():  # sent as it arrives; escaping is per character, so the pieces join up
            fragment = json.dumps(chunk, ensure_ascii=False)[1:-1] + ('"' if last else "")
            value = self._value
        elif last:
            value = _convert(self._value, self._property())
            fragment = json.dumps(value, ensure_ascii=False)
        else:
            return
        if fragment:
            events.append(ToolArgsDelta(fragment))
        if last:
            self._input[self._key] = value

    def _property(self) -> dict[str, Any]:
        prop = (self._schemas.get(self._name) or {}).get("properties", {}).get(self._key)
        return prop if isinstance(prop, dict) else {}

    def _is_string(self) -> bool:
        return _kind(self._property()) not in TYPED


def _kind(prop: dict[str, Any]) -> str | None:
    kind = prop.get("type")
    if isinstance(kind, list):  # e.g. ["integer", "null"]: the value's own type
        kind = next((k for k in kind if k != "null"), "null")
    return kind if isinstance(kind, str) else None


def _convert(text: str, prop: dict[str, Any]) -> Any:
    """A non-string parameter's text as its schema type; the text itself when it does not parse."""
    kind, value = _kind(prop), text.strip()
    if value.lower() in ("null", "none"):
        return None
    try:
        if kind in ("integer", "number"):
            number = float(value) if any(c in value for c in ".eEnN") else int(value)
            if isinstance(number, float) and not math.isfinite(number):
                return text  # JSON has no NaN or infinity
            return int(number) if kind == "integer" and isinstance(number, float) and number.is_integer() else number
        if kind == "boolean":
            return {"true": True, "false": False}[value.lower()]
        if kind in ("object", "array"):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                parsed = ast.literal_eval(value)  # Python literals: single quotes, True/False/None
                json.dumps(parsed)
                return parsed
    except (ValueError, KeyError, TypeError, SyntaxError, OverflowError, RecursionError):
        pass
    return text


# Constrained decoding forces hermes JSON, which the parser reads beside the XML form.
QWEN3_CODER_FORMAT = ToolFormat("qwen3_coder", (HERMES,), HERMES, Qwen3CoderToolParser)
