"""One response in the making: the request it answers, its generation and output, and the response object
it is reported as at any moment (created, in progress, completed, incomplete, failed, cancelled)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ...chat.pipeline import PreparedChat
from .output import OutputAssembler
from .protocol import ResponsesRequest


@dataclass
class ResponseCall:
    """Per request."""

    id: str
    body: ResponsesRequest
    chat: PreparedChat | None  # None while a background response waits to be prepared
    output: OutputAssembler
    context: list[dict[str, Any]]  # the input items it is made from, earlier turns included
    created_at: int = field(default_factory=lambda: int(time.time()))
    cached_tokens: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)  # as sent, kept for replay when stored

    @property
    def store(self) -> bool:
        return self.body.store is not False

    def final_status(self) -> str:
        finish = self.output.finish
        return "incomplete" if finish is not None and finish.stop_reason == "max_tokens" else "completed"

    def usage(self) -> dict[str, Any] | None:
        if self.chat is None:
            return None
        finish = self.output.finish
        produced = finish.output_tokens if finish else 0
        cached = finish.cached_tokens if finish else self.cached_tokens
        reasoning = "".join(self.output.reasoning_text)
        reasoning_tokens = min(produced, len(self.chat.engine.tokenize(reasoning))) if reasoning else 0
        prompt = len(self.chat.prompt_tokens)
        return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
                "output_tokens": produced, "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
                "total_tokens": prompt + produced}

    def snapshot(self, status: str, error: dict[str, Any] | None = None) -> dict[str, Any]:
        """The response object now; `usage` once it has ended."""
        body = self.body
        ended = status in ("completed", "incomplete", "failed", "cancelled")
        fmt = body.text.format.model_dump(by_alias=True, exclude_none=True) if body.text and body.text.format else {
            "type": "text"}
        return {
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "background": bool(body.background), "completed_at": int(time.time()) if status == "completed" else None,
            "error": error,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": body.instructions, "max_output_tokens": body.max_output_tokens,
            "max_tool_calls": body.max_tool_calls, "metadata": body.metadata or {}, "model": body.model,
            "output": list(self.output.items), "parallel_tool_calls": body.parallel_tool_calls is not False,
            "previous_response_id": body.previous_response_id, "prompt_cache_key": body.prompt_cache_key,
            "reasoning": {"effort": body.reasoning.effort if body.reasoning else None,
                          "summary": body.reasoning.summary if body.reasoning else None},
            "safety_identifier": body.safety_identifier, "service_tier": "default", "store": self.store,
            "temperature": 1.0 if body.temperature is None else body.temperature,
            "text": {"format": fmt, "verbosity": (body.text.verbosity if body.text else None) or "medium"},
            "tool_choice": body.tool_choice or "auto", "tools": body.tools or [],
            "top_logprobs": body.top_logprobs or 0, "top_p": 1.0 if body.top_p is None else body.top_p,
            "truncation": body.truncation or "disabled", "usage": self.usage() if ended else None,
            "user": body.user,
        }
