"""Neutral events → OpenAI chat completions: streamed chunks, or one collected completion."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from ...chat.pipeline import PreparedChat
from ...core.events import (
    Event,
    Finish,
    TextDelta,
    ThinkingDelta,
    TokenChoice,
    TokenLogprobs,
    ToolArgsDelta,
    ToolCallEnd,
    ToolCallStart,
)
from ...errors import ParleyError
from ..errors import exception_envelope
from ..sse import Guard, with_heartbeat
from .translate import FINISH_REASONS

log = logging.getLogger(__name__)


def usage_body(prompt_tokens: int, finish: Finish | None) -> dict[str, Any]:
    completion_tokens = finish.output_tokens if finish else 0
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": finish.cached_tokens if finish else 0}}


def _choice(choice: TokenChoice) -> dict[str, Any]:
    return {"token": choice.text, "logprob": choice.logprob, "bytes": list(choice.bytes)}


def logprob_entry(event: TokenLogprobs) -> dict[str, Any]:
    return {**_choice(event.chosen), "top_logprobs": [_choice(c) for c in event.top]}


def logprobs_body(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"content": entries, "refusal": None}


class DeltaMapper:
    """Per request: neutral events → `choices[0].delta` objects (tool calls indexed in order)."""

    def __init__(self) -> None:
        self._tool_index = -1

    def delta(self, event: Event) -> dict[str, Any] | None:
        if isinstance(event, TextDelta):
            return {"content": event.text}
        if isinstance(event, ThinkingDelta):
            return {"reasoning_content": event.text}
        if isinstance(event, ToolCallStart):
            self._tool_index += 1
            return {"tool_calls": [{"index": self._tool_index, "id": call_id(event.id), "type": "function",
                                    "function": {"name": event.name, "arguments": ""}}]}
        if isinstance(event, ToolArgsDelta):
            return {"tool_calls": [{"index": self._tool_index, "function": {"arguments": event.json}}]}
        return None


def call_id(tool_id: str) -> str:
    """OpenAI spells tool-call ids `call_…`."""
    return "call_" + tool_id.removeprefix("toolu_")


def _data(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


async def sse_completion(chat: PreparedChat, completion_id: str, model: str, ping_interval: float,
                         include_usage: bool, guard: Guard | None = None) -> AsyncIterator[bytes]:
    """role chunk → content / reasoning / tool-call chunks → finish chunk → (usage chunk) → [DONE].
    SSE comments keep a silent connection alive during queueing and prefill."""
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}

    pending: list[dict[str, Any]] = []  # log-probabilities ride on the next chunk that carries output

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        logprobs = logprobs_body(pending[:]) if pending else None
        pending.clear()
        return _data({**base, "choices": [{"index": 0, "delta": delta, "logprobs": logprobs,
                                           "finish_reason": finish}]})

    yield chunk({"role": "assistant", "content": ""})
    mapper = DeltaMapper()
    try:
        async for event in with_heartbeat(chat.events(), ping_interval, guard):
            if event is None:
                yield b": ping\n\n"
            elif isinstance(event, TokenLogprobs):
                pending.append(logprob_entry(event))
            elif isinstance(event, Finish):
                yield chunk({}, FINISH_REASONS[event.stop_reason])
                if include_usage:
                    yield _data({**base, "choices": [], "usage": usage_body(len(chat.prompt_tokens), event)})
            elif (delta := mapper.delta(event)) is not None:
                yield chunk(delta)
    except Exception as exc:  # after the first byte, an error can only travel in-stream
        if not isinstance(exc, ParleyError):
            log.exception("stream failed")
        yield _data(exception_envelope(True, exc))
    yield b"data: [DONE]\n\n"


async def collect_completion(chat: PreparedChat, completion_id: str, model: str) -> dict[str, Any]:
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    finish: Finish | None = None
    logprobs: list[dict[str, Any]] | None = [] if chat.params.logprobs is not None else None
    async for event in chat.events():
        if isinstance(event, TokenLogprobs) and logprobs is not None:
            logprobs.append(logprob_entry(event))
        elif isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, ThinkingDelta):
            reasoning.append(event.text)
        elif isinstance(event, ToolCallStart):
            function = {"name": event.name, "arguments": ""}
            calls.append({"id": call_id(event.id), "type": "function", "function": function})
        elif isinstance(event, ToolArgsDelta):
            calls[-1]["function"]["arguments"] += event.json
        elif isinstance(event, ToolCallEnd) and event.input is not None:
            calls[-1]["function"]["arguments"] = json.dumps(event.input, ensure_ascii=False)
        elif isinstance(event, Finish):
            finish = event
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message,
                     "logprobs": logprobs_body(logprobs) if logprobs is not None else None,
                     "finish_reason": FINISH_REASONS[finish.stop_reason] if finish else "stop"}],
        "usage": usage_body(len(chat.prompt_tokens), finish),
    }
