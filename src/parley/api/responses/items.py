"""Input items → the neutral conversation's turns.

A `message` becomes a turn (system/developer ones before the first turn extend the system prompt); an
assistant's text, `function_call`s and `custom_tool_call`s in a row are one assistant turn, as the model wrote
them; each `*_output` is a tool turn; a `reasoning` item's sealed text goes with the assistant turn after it.
Calls of hosted tools parley never runs (web search, ...) carry nothing the model wrote and are skipped."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from ...core.messages import ChatMessage, ToolCall
from ...errors import InvalidRequestError
from ...services.signatures import ThinkingSigner
from ..attachments import image_note, pdf_text

TEXT_PARTS = ("input_text", "output_text", "text", "summary_text", "reasoning_text")
HOSTED_CALLS = ("web_search_call", "file_search_call", "computer_call", "computer_call_output",
                "code_interpreter_call", "image_generation_call", "mcp_list_tools", "mcp_approval_request",
                "mcp_approval_response", "mcp_call", "tool_search_call", "tool_search_output")


def _file_text(part: dict[str, Any], where: str) -> str:
    data = part.get("file_data")
    if not isinstance(data, str):
        raise InvalidRequestError(f"{where}: only `file_data` is supported for input_file (nothing is fetched "
                                  "or looked up on a client's behalf: no file_id or file_url)")
    header, _, payload = data.rpartition(",") if data.startswith("data:") else ("", "", data)
    name = part.get("filename") or "file"
    if header and "pdf" not in header:
        try:
            text = base64.b64decode(payload, validate=True).decode("utf-8")
        except (binascii.Error, ValueError) as exc:
            raise InvalidRequestError(f"{where}.file_data: not base64 of UTF-8 text ({exc})") from None
    else:
        text = pdf_text(payload, f"{where}.file_data")
    return f"<document>\n<title>{name}</title>\n<content>\n{text}\n</content>\n</document>"


def _part_text(part: Any, where: str) -> str:
    if not isinstance(part, dict):
        raise InvalidRequestError(f"{where}: Input should be an object")
    kind = part.get("type")
    if kind in TEXT_PARTS or kind == "refusal":
        text = part.get("text", part.get("refusal"))
        if not isinstance(text, str):
            raise InvalidRequestError(f"{where}.text: Field required")
        return text
    if kind == "input_image":
        return image_note()
    if kind == "input_file":
        return _file_text(part, where)
    raise InvalidRequestError(f"{where}.type: content part type '{kind}' is not supported")


def content_text(content: Any, where: str) -> str:
    """A message's content (a string or parts) or a tool output, as prompt text."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise InvalidRequestError(f"{where}: Input should be a string or a list of content parts")
    return "\n\n".join(_part_text(part, f"{where}.{i}") for i, part in enumerate(content))


def _field(item: dict[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        raise InvalidRequestError(f"{where}.{name}: Field required (a string)")
    return value


def _arguments(raw: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError:
        raise InvalidRequestError(f"{where}.arguments: not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{where}.arguments: must be a JSON object")
    return value


@dataclass
class _Turns:
    """Per request: the turns so far, and what the next assistant turn inherits."""

    signer: ThinkingSigner
    system: list[str] = field(default_factory=list)
    messages: list[ChatMessage] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # call_id → tool name
    unanswered: dict[str, str] = field(default_factory=dict)  # call_id → where the call is, until its output
    reasoning: list[str] = field(default_factory=list)

    def add(self, turn: ChatMessage) -> None:
        prev = self.messages[-1] if self.messages else None
        if turn.role == "assistant":
            reasoning = "\n\n".join(self.reasoning) or None
            self.reasoning = []
            if prev is not None and prev.role == "assistant":  # text and calls of one model turn
                text = "\n\n".join(t for t in (prev.content, turn.content) if t)
                self.messages[-1] = ChatMessage("assistant", text, prev.tool_calls + turn.tool_calls,
                                                reasoning=prev.reasoning or reasoning)
                return
            turn = ChatMessage("assistant", turn.content, turn.tool_calls, reasoning=reasoning)
        self.messages.append(turn)

    def call(self, call_id: str, name: str, arguments: dict[str, Any], where: str) -> None:
        self.names[call_id] = name
        self.unanswered[call_id] = where
        self.add(ChatMessage("assistant", "", (ToolCall(call_id, name, arguments),)))

    def item(self, item: Any, where: str) -> None:
        if not isinstance(item, dict):
            raise InvalidRequestError(f"{where}: Input should be an object")
        kind = item.get("type", "message")
        if kind == "message":
            self._message(item, where)
        elif kind == "function_call":
            call_id = _field(item, "call_id", where)
            self.call(call_id, _field(item, "name", where), _arguments(item.get("arguments", "{}"), where), where)
        elif kind == "custom_tool_call":
            call_id = _field(item, "call_id", where)
            self.call(call_id, _field(item, "name", where), {"input": _field(item, "input", where)}, where)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            call_id = _field(item, "call_id", where)
            if call_id not in self.names:  # the API's own words
                raise InvalidRequestError(f"{where}: No tool call found for function call output with call_id "
                                          f"{call_id}.")
            self.unanswered.pop(call_id, None)
            text = content_text(item.get("output"), f"{where}.output")
            self.messages.append(ChatMessage("tool", text, tool_call_id=call_id, name=self.names.get(call_id)))
        elif kind == "reasoning":
            self._reasoning(item, where)
        elif kind not in HOSTED_CALLS:
            raise InvalidRequestError(f"{where}.type: input item type '{kind}' is not supported")

    def _message(self, item: dict[str, Any], where: str) -> None:
        role = item.get("role")
        text = content_text(item.get("content"), f"{where}.content")
        if role in ("system", "developer"):
            if self.messages:  # a late system turn: the chat template renders it, or folds it into user text
                self.messages.append(ChatMessage("system", text))
            else:
                self.system.append(text)
        elif role in ("user", "assistant"):
            self.add(ChatMessage(role, text))
        else:
            raise InvalidRequestError(f"{where}.role: Input should be 'user', 'assistant', 'system' or 'developer'")

    def _reasoning(self, item: dict[str, Any], where: str) -> None:
        """Only sealed reasoning (ours, from `encrypted_content`) is trusted back into the prompt; a summary or
        raw text alone is dropped, as the API drops what it cannot verify."""
        sealed = item.get("encrypted_content")
        if not sealed:
            return
        try:
            self.reasoning.append(self.signer.verify("", sealed, where))
        except InvalidRequestError:
            raise InvalidRequestError(f"{where}.encrypted_content: the reasoning could not be verified (it was "
                                      "changed, or sealed with another server's key)") from None


def to_turns(items: list[Any], signer: ThinkingSigner, where: str = "input") -> tuple[list[str], list[ChatMessage]]:
    """(system texts, turns) of `items`."""
    turns = _Turns(signer)
    for i, item in enumerate(items):
        turns.item(item, f"{where}.{i}")
    if turns.unanswered:
        call_id, at = next(iter(turns.unanswered.items()))
        raise InvalidRequestError(f"{at}: No tool output found for function call {call_id}.")
    return turns.system, turns.messages
