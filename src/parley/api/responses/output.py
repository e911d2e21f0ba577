"""Neutral events → Responses output items and the events that build them: one item open at a time.

The stream and the collected response both come from these operations, so the two cannot disagree; the
items are updated in place as events go out, so `items` is always the response's `output` so far."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ...core.events import (
    Event,
    Finish,
    TextDelta,
    ThinkingDelta,
    ThinkingEnd,
    TokenChoice,
    TokenLogprobs,
    ToolArgsDelta,
    ToolCallEnd,
    ToolCallStart,
)
from ...services.signatures import ThinkingSigner
from .tools import ToolSet
from .translate import new_id

Op = tuple[str, dict[str, Any]]  # (event type, its fields but `type` and `sequence_number`)


def _top(choice: TokenChoice, with_bytes: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"token": choice.text, "logprob": choice.logprob}
    if with_bytes:
        out["bytes"] = list(choice.bytes)
    return out


def logprob(event: TokenLogprobs, with_bytes: bool) -> dict[str, Any]:
    """A token's log-probability as an `output_text` part carries it (with bytes) or a delta event does."""
    return {**_top(event.chosen, with_bytes), "top_logprobs": [_top(c, with_bytes) for c in event.top]}


def _arguments_text(streamed: str, arguments: dict[str, Any] | None) -> str:
    """The deltas as sent, when they are the arguments (so that they add up to `.done`), else canonical JSON."""
    try:
        same = arguments is None or json.loads(streamed) == arguments
    except json.JSONDecodeError:
        same = False
    return streamed if same else json.dumps(arguments, ensure_ascii=False)


@dataclass
class _Open:
    """The item being written: its index in `output`, and what its deltas have added up to."""

    index: int
    item: dict[str, Any]
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprobs] = field(default_factory=list)
    skipped: bool = False  # a call past `max_tool_calls`: not reported


class OutputAssembler:
    """Per response."""

    def __init__(self, tools: ToolSet, signer: ThinkingSigner, seal_reasoning: bool,
                 max_tool_calls: int | None = None) -> None:
        self._tools = tools
        self._signer = signer
        self._seal = seal_reasoning  # include: reasoning.encrypted_content
        self._max_calls = max_tool_calls
        self._calls = 0
        self._open: _Open | None = None
        self._pending: list[TokenLogprobs] = []  # log-probabilities wait for the text of their token
        self.items: list[dict[str, Any]] = []
        self.reasoning_text: list[str] = []
        self.finish: Finish | None = None

    def fresh(self) -> OutputAssembler:
        """An assembler like this one with nothing written yet (a preempted response starts again)."""
        return OutputAssembler(self._tools, self._signer, self._seal, self._max_calls)

    def feed(self, event: Event) -> list[Op]:
        if isinstance(event, TokenLogprobs):
            self._pending.append(event)
            return []
        if isinstance(event, ThinkingDelta):
            ops = self._ensure("reasoning")
            self._open.text.append(event.text)  # type: ignore[union-attr]
            return [*ops, ("response.reasoning_text.delta", {**self._at(), "content_index": 0, "delta": event.text})]
        if isinstance(event, ThinkingEnd):
            return [*self._ensure("reasoning"), *self._close("completed", event.text)]
        if isinstance(event, TextDelta):
            ops = self._ensure("message")
            opened = self._open
            assert opened is not None
            opened.text.append(event.text)
            taken, self._pending = self._pending, []
            opened.logprobs += taken
            return [*ops, ("response.output_text.delta", {**self._at(), "content_index": 0, "delta": event.text,
                                                          "logprobs": [logprob(t, False) for t in taken]})]
        if isinstance(event, ToolCallStart):
            return [*self._close("completed"), *self._start_call(event)]
        if isinstance(event, ToolArgsDelta):
            return self._args(event.json)
        if isinstance(event, ToolCallEnd):
            return self._end_call(event.input)
        if isinstance(event, Finish):
            self.finish = event
            return self._close("incomplete" if event.stop_reason == "max_tokens" else "completed")
        return []

    # ---- items
    def _at(self) -> dict[str, Any]:
        assert self._open is not None
        return {"item_id": self._open.item["id"], "output_index": self._open.index}

    def _add(self, item: dict[str, Any], skipped: bool = False) -> list[Op]:
        self._open = _Open(len(self.items), item, skipped=skipped)
        if skipped:
            return []
        self.items.append(item)
        return [("response.output_item.added", {"output_index": self._open.index, "item": dict(item)})]

    def _ensure(self, kind: str) -> list[Op]:
        if self._open is not None and self._open.item["type"] == kind:
            return []
        ops = self._close("completed")
        if kind == "message":
            ops += self._add({"id": new_id("msg"), "type": "message", "role": "assistant", "status": "in_progress",
                              "content": []})
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        else:
            ops += self._add({"id": new_id("rs"), "type": "reasoning", "summary": [], "content": [],
                              "status": "in_progress"})
            part = {"type": "reasoning_text", "text": ""}
        return [*ops, ("response.content_part.added", {**self._at(), "content_index": 0, "part": part})]

    def _close(self, status: str, reasoning: str | None = None) -> list[Op]:
        opened, self._open = self._open, None
        if opened is None or opened.skipped:
            return []
        item, at = opened.item, {"item_id": opened.item["id"], "output_index": opened.index}
        ops: list[Op] = []
        if item["type"] == "message":
            text = "".join(opened.text)
            logprobs = [logprob(t, True) for t in opened.logprobs]
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs}
            ops += [("response.output_text.done", {**at, "content_index": 0, "text": text,
                                                   "logprobs": [logprob(t, False) for t in opened.logprobs]}),
                    ("response.content_part.done", {**at, "content_index": 0, "part": part})]
            item["content"] = [part]
        elif item["type"] == "reasoning":
            text = reasoning if reasoning is not None else "".join(opened.text)
            self.reasoning_text.append(text)
            part = {"type": "reasoning_text", "text": text}
            ops += [("response.reasoning_text.done", {**at, "content_index": 0, "text": text}),
                    ("response.content_part.done", {**at, "content_index": 0, "part": part})]
            item["content"] = [part]
            if self._seal:
                item["encrypted_content"] = self._signer.sign(text, sealed=True)
        item["status"] = status
        return [*ops, ("response.output_item.done", {"output_index": opened.index, "item": dict(item)})]

    # ---- tool calls
    def _start_call(self, event: ToolCallStart) -> list[Op]:
        self._calls += 1
        skipped = self._max_calls is not None and self._calls > self._max_calls  # "further calls are ignored"
        call_id = "call_" + event.id.removeprefix("toolu_")
        if self._tools.is_custom(event.name):
            item = {"id": new_id("ctc"), "type": "custom_tool_call", "call_id": call_id, "name": event.name,
                    "input": ""}
        else:
            item = {"id": new_id("fc"), "type": "function_call", "call_id": call_id, "name": event.name,
                    "arguments": "", "status": "in_progress"}
        if namespace := self._tools.namespaces.get(event.name):
            item["namespace"] = namespace
        return self._add(item, skipped)

    def _args(self, fragment: str) -> list[Op]:
        opened = self._open
        if opened is None or opened.skipped:
            return []
        opened.text.append(fragment)
        if opened.item["type"] == "custom_tool_call":
            return []  # a custom tool's input is the string inside the JSON: sent whole at its end
        return [("response.function_call_arguments.delta", {**self._at(), "delta": fragment})]

    def _end_call(self, arguments: dict[str, Any] | None) -> list[Op]:
        opened = self._open
        if opened is None or opened.skipped:
            self._open = None
            return []
        item, at = opened.item, self._at()
        self._open = None
        status = "completed" if arguments is not None else "incomplete"
        if item["type"] == "custom_tool_call":
            text = arguments.get("input") if arguments is not None else None
            item["input"] = text if isinstance(text, str) else json.dumps(arguments or {}, ensure_ascii=False)
            ops: list[Op] = [("response.custom_tool_call_input.delta", {**at, "delta": item["input"]}),
                             ("response.custom_tool_call_input.done", {**at, "input": item["input"]})]
        else:
            item["arguments"] = _arguments_text("".join(opened.text), arguments)
            item["status"] = status
            ops = [("response.function_call_arguments.done", {**at, "arguments": item["arguments"]})]
        return [*ops, ("response.output_item.done", {"output_index": opened.index, "item": dict(item)})]
