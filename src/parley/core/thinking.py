"""Extended thinking in the core: what the request asks, whether the model can, and the budget rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .params import ReasoningBudget

OPEN, CLOSE = "<think>", "</think>"


@dataclass(frozen=True)
class Thinking:
    enabled: bool = False
    budget_tokens: int | None = None  # None: up to max_tokens (adaptive)
    effort: str | None = None
    display: Literal["summarized", "omitted"] = "summarized"


def template_reasons(template_source: str) -> bool:
    """A template that writes or switches `<think>` blocks belongs to a reasoning model."""
    return OPEN in template_source or "enable_thinking" in template_source or "reasoning_content" in template_source


def template_switches(thinking: Thinking) -> dict[str, Any]:
    """The variables reasoning templates read (Qwen3 `enable_thinking`, gpt-oss `reasoning_effort`)."""
    switches: dict[str, Any] = {"enable_thinking": thinking.enabled}
    if thinking.enabled and thinking.effort:
        switches["reasoning_effort"] = thinking.effort
    return switches


def starts_in_reasoning(prompt: str) -> bool:
    """The rendered prompt opened a `<think>` block that the model is to continue."""
    tail = prompt.rstrip()
    return tail.endswith(OPEN)


def budget_for(thinking: Thinking, prompt: str, max_tokens: int) -> ReasoningBudget | None:
    if not thinking.enabled:
        return None
    limit = thinking.budget_tokens if thinking.budget_tokens is not None else max_tokens
    return ReasoningBudget(limit, close_text=f"\n{CLOSE}\n\n", open_text=OPEN, starts_open=starts_in_reasoning(prompt))


class BudgetTracker:
    """Per generation: follows the output text and says when the reasoning has used its budget."""

    def __init__(self, budget: ReasoningBudget) -> None:
        self._budget = budget
        self._open = budget.starts_open
        self._done = False
        self._spent = 0
        self._tail = ""

    @property
    def reasoning(self) -> bool:
        """Inside an open reasoning block: an end of turn here must close the reasoning instead."""
        return self._open and not self._done

    def feed(self, piece: str) -> bool:
        """Account one generated token's text; True when the engine must close the reasoning now."""
        if self._done:
            return False
        self._tail = (self._tail + piece)[-64:]
        if not self._open:
            if OPEN in self._tail:
                self._open, self._tail = True, ""
            elif self._tail.strip() and not OPEN.startswith(self._tail.strip()):
                self._done = True  # the answer began without reasoning
            return False
        if CLOSE in self._tail:
            self._done = True
            return False
        self._spent += 1
        if self._spent >= self._budget.max_tokens:
            self._done = True
            return True
        return False
