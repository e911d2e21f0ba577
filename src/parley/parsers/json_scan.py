"""Incremental reading of one JSON tool-call object: `{"name": "...", "arguments": {...}}`.

Hands out the arguments' raw text as it is generated, so the API can stream `input_json_delta`
fragments whose concatenation parses to the final input.
"""

from __future__ import annotations

import json
from typing import Any

ARGUMENT_KEYS = ("arguments", "parameters")


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
        self.rest = ""
        self._sent = 0  # how much of args_raw has been handed out
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._key: str | None = None  # key of the current top-level member, once its ':' was seen
        self._member = ""  # text of the current top-level member (key, then value)

    def feed(self, text: str) -> str:
        for i, ch in enumerate(text):
            if self.done:
                self.rest += text[i:]
                break
            self._step(ch)
        if self.name is None:
            return ""
        out, self._sent = self.args_raw[self._sent :], len(self.args_raw)
        return out

    def _step(self, ch: str) -> None:
        if self._depth == 0:
            if ch == "{":
                self._depth = 1
            elif not ch.isspace():
                raise NotACall("not an object")
            return
        structural = not self._in_string
        if self._in_string:
            if self._escape:
                self._escape = False
            elif ch == "\\":
                self._escape = True
            elif ch == '"':
                self._in_string = False
        elif ch == '"':
            self._in_string = True
        elif ch in "{[":
            self._depth += 1
        elif ch in "}]":
            if self._depth == 1:
                self._end_member()
                self._finish()
                return
            self._depth -= 1
        if structural and self._depth == 1:
            if ch == ",":
                self._end_member()
                return
            if ch == ":" and self._key is None:
                self._start_value()
                return
        self._member += ch
        if self._key in ARGUMENT_KEYS and (self.args_raw or not ch.isspace()):
            self.args_raw += ch

    def _start_value(self) -> None:
        key = _loads(self._member, "key")
        if not isinstance(key, str):
            raise NotACall("key is not a string")
        if self.name is None and key not in ("name", *ARGUMENT_KEYS):
            raise NotACall(f"unexpected key {key!r}")
        self._key, self._member = key, ""

    def _end_member(self) -> None:
        if self._key == "name":
            name = _loads(self._member, "name")
            if name not in self._tools:
                raise NotACall(f"unknown tool {name!r}")
            self.name = name
        elif self._key is None and self._member.strip():
            raise NotACall("member without a value")
        self._key, self._member = None, ""

    def _finish(self) -> None:
        if self.name is None:
            raise NotACall("no name")
        self.done = True

    def arguments(self) -> dict[str, Any] | None:
        """The parsed input once done; None when the arguments are not a JSON object."""
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
