"""Incremental reading of one JSON tool-call object: `{"name": "...", "arguments": {...}}`.

Hands out the arguments' raw text as it is generated, so the API can stream `input_json_delta`
fragments whose concatenation parses to the final input.
"""

from __future__ import annotations

import json
from typing import Any

ARGUMENT_KEYS = ("arguments", "parameters")
# Llama 3.x often opens its call object with `"type": "function"` before the name.
LEADING_KEYS = ("name", "type", *ARGUMENT_KEYS)


class JsonLexer:
    """Where each character of a streamed JSON text stands: inside a string or not, and at what depth."""

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False
        self._escape = False

    def step(self, ch: str) -> bool:
        """Advance by `ch`; True when it is structural (outside every string, quotes included as not)."""
        if self.in_string:
            if self._escape:
                self._escape = False
            elif ch == "\\":
                self._escape = True
            elif ch == '"':
                self.in_string = False
            return False
        if ch == '"':
            self.in_string = True
            return False
        if ch in "{[":
            self.depth += 1
        elif ch in "}]":
            self.depth -= 1
        return True


class NotACall(Exception):
    """The object turned out not to be a tool call (wrong keys, unknown tool, broken JSON)."""


class JsonCallScanner:
    """Per call. `feed(text)` returns the arguments text that became available (only once the name is
    known); `done` is set when the object closed, and `rest` then holds what followed it."""

    def __init__(self, tool_names: set[str]) -> None:
        self._tools = tool_names
        self.name: str | None = None
        self.args_raw = ""
        self.done = False
        self.broken = False  # malformed after the name: the call stands (it has started) but has no input
        self.rest = ""  # what followed the object once done, or what followed the character that raised NotACall
        self._sent = 0  # how much of args_raw has been handed out
        self._lex = JsonLexer()
        self._key: str | None = None  # key of the current top-level member, once its ':' was seen
        self._member = ""  # text of the current top-level member (key, then value)

    def feed(self, text: str) -> str:
        for i, ch in enumerate(text):
            if self.done:
                self.rest += text[i:]
                break
            try:
                self._step(ch)
            except NotACall:
                self.rest = text[i + 1 :]  # the caller shows what was consumed as text, then goes on from here
                raise
        if self.name is None:
            return ""
        if self.args_raw.startswith('"'):
            # Arguments sent as a JSON string: the fragments must parse to the object, so send it decoded at the end.
            if not self.done or self._sent:
                return ""
            self._sent, value = len(self.args_raw), self.arguments()
            return json.dumps(value, ensure_ascii=False) if value is not None else ""
        out, self._sent = self.args_raw[self._sent :], len(self.args_raw)
        return out

    def _step(self, ch: str) -> None:
        if self._lex.depth == 0:
            if ch == "{":
                self._lex.step(ch)
            elif not ch.isspace():
                raise NotACall("not an object")
            return
        structural = self._lex.step(ch)
        if structural and self._lex.depth == 0:  # the call object closed
            self._end_member()
            self._finish()
            return
        if structural and self._lex.depth == 1:
            if ch == ",":
                self._end_member()
                return
            if ch == ":" and self._key is None:
                self._start_value()
                return
        self._member += ch
        if self._key in ARGUMENT_KEYS and (self.args_raw or not ch.isspace()):
            # A raw control character inside a string (a sampled email body's newline) is invalid JSON; it
            # means its escape, so the fragments and the input stay JSON that clients can parse.
            self.args_raw += json.dumps(ch)[1:-1] if self._lex.in_string and ch < " " else ch

    def _fail(self, why: str) -> None:
        """Before the name this is not a call; after it the call has started, so it only loses its input."""
        if self.name is None:
            raise NotACall(why)
        self.broken = True

    def _start_value(self) -> None:
        try:
            key = _loads(self._member, "key")
        except NotACall:
            key = None
        if not isinstance(key, str):
            self._fail("key is not a string")
            key = ""
        if self.name is None and key not in LEADING_KEYS:
            raise NotACall(f"unexpected key {key!r}")
        self._key, self._member = key, ""

    def _end_member(self) -> None:
        if self._key == "name" and self.name is None:
            name = _loads(self._member, "name")
            if name not in self._tools:
                raise NotACall(f"unknown tool {name!r}")
            self.name = name
        elif self._key == "type" and self.name is None:
            if _loads(self._member, "type") != "function":
                raise NotACall("type is not 'function'")
        elif self._key is None and self._member.strip():
            self._fail("member without a value")
        self._key, self._member = None, ""

    def _finish(self) -> None:
        if self.name is None:
            raise NotACall("no name")
        self.done = True

    def arguments(self) -> dict[str, Any] | None:
        """The parsed input once done; None when the arguments are not a JSON object."""
        if self.broken:
            return None
        try:
            value = json.loads(self.args_raw) if self.args_raw.strip() else {}
            if isinstance(value, str):  # some models send the arguments as a JSON string
                value = json.loads(value)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None


def _loads(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotACall(f"{what} is not valid JSON") from exc
