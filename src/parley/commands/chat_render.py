"""How `parley chat` draws a streaming answer: text as it comes, thinking dimmed, tool calls as they are written."""

from __future__ import annotations

import time
from typing import Any, TextIO

DIM, RESET = "\x1b[2m", "\x1b[0m"


class Renderer:
    """Draws the raw stream events of one answer and keeps what an interrupted answer may keep (its text)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()  # escapes only for a terminal; a pipe gets plain, prefixed text
        self.text: list[str] = []  # the text deltas so far
        self.block: str | None = None  # the type of the block being drawn
        self.at_line_start = True
        self.started = time.monotonic()
        self.first_token_at: float | None = None

    def write(self, s: str) -> None:
        if s:
            self.out.write(s)
            self.out.flush()  # the point is to see each delta as it arrives
            if s not in (DIM, RESET):  # an escape alone moves no cursor
                self.at_line_start = s.endswith("\n")

    def end_line(self) -> None:
        if not self.at_line_start:
            self.write("\n")

    def dim(self, line: str) -> None:
        """One line of chrome (status, notices), on a line of its own."""
        self.end_line()
        self.write(f"{DIM}{line}{RESET}\n" if self.tty else line + "\n")

    def event(self, event: Any) -> None:
        """One event from `client.messages.stream(...)`; the SDK's derived events (`text`, ...) are skipped."""
        kind = event.type
        if kind == "content_block_start":
            self._start(event.content_block)
        elif kind == "content_block_delta":
            self._delta(event.delta)
        elif kind == "content_block_stop":
            self._stop()

    def _start(self, block: Any) -> None:
        self.block = block.type
        if block.type == "thinking":
            self.end_line()
            self.write(DIM if self.tty else "thinking: ")
        elif block.type == "redacted_thinking":
            self.dim("[redacted thinking]")
        elif block.type == "tool_use":
            self.end_line()
            self.write(f"⚙ {block.name}(")
        elif block.type == "text" and self.text:
            self.end_line()  # a second text block (after a tool call or thinking) starts a line of its own

    def _delta(self, delta: Any) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
        if delta.type == "text_delta":
            self.text.append(delta.text)
            self.write(delta.text)
        elif delta.type == "thinking_delta":
            self.write(delta.thinking)
        elif delta.type == "input_json_delta":
            self.write(delta.partial_json)

    def _stop(self) -> None:
        if self.block == "thinking":
            if self.tty:
                self.write(RESET)
            self.end_line()
        elif self.block == "tool_use":
            self.write(")\n")
        self.block = None

    def interrupted(self) -> None:
        """Ctrl-C mid-answer: leave no dim escape open, and say so."""
        if self.block == "thinking" and self.tty:
            self.write(RESET)
        self.block = None
        self.dim("[stopped]")

    def status(self, message: Any) -> None:
        """stop reason, tokens in and out, decode speed (tokens after the first, over the time after the first)."""
        usage = message.usage
        rate = "-"
        if self.first_token_at is not None and usage.output_tokens > 1:
            elapsed = time.monotonic() - self.first_token_at
            if elapsed > 0:
                rate = f"{(usage.output_tokens - 1) / elapsed:.1f}"
        # The whole prompt: parley reuses any cached prefix, and the API counts that apart from `input_tokens`.
        cached = usage.cache_read_input_tokens or 0
        prompt = usage.input_tokens + cached + (usage.cache_creation_input_tokens or 0)
        self.dim(f"[{message.stop_reason} · in {prompt} ({cached} cached) · out {usage.output_tokens} · {rate} tok/s"
                 f" · {message.model}]")
