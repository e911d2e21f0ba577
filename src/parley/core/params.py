"""Sampling settings: one value object per request."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GrammarConstraint:
    """A GBNF grammar; lazy ones engage only once the output matches one of `triggers` (regexes)."""

    gbnf: str
    lazy: bool = False
    triggers: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReasoningBudget:
    """Once the model has reasoned for `max_tokens` tokens, the engine writes `close_text` for it."""

    max_tokens: int
    close_text: str
    open_text: str
    starts_open: bool  # the prompt already opened the reasoning


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0  # 0 means greedy
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    grammar: GrammarConstraint | None = None
    reasoning_budget: ReasoningBudget | None = None
    logprobs: int | None = None  # None: none; n: the chosen token's and the n most likely ones'
