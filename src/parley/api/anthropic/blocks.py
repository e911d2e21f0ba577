"""Neutral events → Anthropic content blocks: one block open at a time, indices consecutive.

Both the SSE stream and the collected (non-streaming) message are built from these operations, so the
two can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...core.events import (
    Event,
    Finish,
    TextDelta,
    ThinkingDelta,
    ThinkingEnd,
    ToolArgsDelta,
    ToolCallEnd,
    ToolCallStart,
)
from ...services.signatures import ThinkingSigner


@dataclass(frozen=True)
class BlockOp:
    event: str  # content_block_start | content_block_delta | content_block_stop
    payload: dict[str, Any]
    final_input: dict[str, Any] | None = None  # on a tool_use block's stop: its parsed input


class BlockAssembler:
    """Per request."""

    def __init__(self, signer: ThinkingSigner, omit_thinking: bool = False) -> None:
        self._signer = signer
        self._omit = omit_thinking  # display "omitted": the text travels only sealed in the signature
        self._index = -1
        self._open: str | None = None

    def feed(self, event: Event) -> list[BlockOp]:
        if isinstance(event, ThinkingDelta):
            ops = [] if self._open == "thinking" else [*self._close(), self._start_thinking()]
            return ops if self._omit else [*ops, self._delta({"type": "thinking_delta", "thinking": event.text})]
        if isinstance(event, ThinkingEnd):
            ops = [] if self._open == "thinking" else [*self._close(), self._start_thinking()]
            signature = self._signer.sign(event.text, sealed=self._omit)
            return [*ops, self._delta({"type": "signature_delta", "signature": signature}), *self._close()]
        if isinstance(event, TextDelta):
            ops = [] if self._open == "text" else [*self._close(), self._start({"type": "text", "text": ""})]
            return [*ops, self._delta({"type": "text_delta", "text": event.text})]
        if isinstance(event, ToolCallStart):
            block = {"type": "tool_use", "id": event.id, "name": event.name, "input": {}}
            return [*self._close(), self._start(block)]
        if isinstance(event, ToolArgsDelta):
            return [self._delta({"type": "input_json_delta", "partial_json": event.json})]
        if isinstance(event, ToolCallEnd):
            return self._close(event.input or {})
        if isinstance(event, Finish):
            if self._index < 0:  # nothing was generated: still one (empty) text block
                return [self._start({"type": "text", "text": ""}), *self._close()]
            return self._close()
        return []

    def _start_thinking(self) -> BlockOp:
        return self._start({"type": "thinking", "thinking": "", "signature": ""})

    def _start(self, block: dict[str, Any]) -> BlockOp:
        self._index += 1
        self._open = block["type"]
        return BlockOp("content_block_start",
                       {"type": "content_block_start", "index": self._index, "content_block": block})

    def _delta(self, delta: dict[str, Any]) -> BlockOp:
        return BlockOp("content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta})

    def _close(self, final_input: dict[str, Any] | None = None) -> list[BlockOp]:
        if self._open is None:
            return []
        self._open = None
        return [BlockOp("content_block_stop", {"type": "content_block_stop", "index": self._index}, final_input)]


class ContentCollector:
    """Applies block operations to build a non-streaming message's `content`."""

    def __init__(self) -> None:
        self.content: list[dict[str, Any]] = []

    def apply(self, op: BlockOp) -> None:
        if op.event == "content_block_start":
            self.content.append(dict(op.payload["content_block"]))
        elif op.event == "content_block_delta":
            delta = op.payload["delta"]
            if delta["type"] == "text_delta":
                self.content[-1]["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                self.content[-1]["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                self.content[-1]["signature"] = delta["signature"]
        elif op.event == "content_block_stop" and self.content[-1]["type"] == "tool_use":
            self.content[-1]["input"] = op.final_input or {}
