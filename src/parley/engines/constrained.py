"""Constrained decoding over llguidance: one matcher for the engines that mask logits themselves (MLX, vLLM).

The GBNF that llama.cpp compiles natively (tool calls, `json_schema` output) is compiled by llguidance here;
each step the matcher takes the token sampled last and says which tokens keep the output inside the grammar.
A lazy grammar (`tool_choice: auto`) works as llama.cpp's does: free output until a trigger regex matches at
its end, then the grammar holds from the trigger's first group on. Engines wrap `ConstrainedOutput` in a thin
adapter for their own arrays (mlx-lm's logits processors, vLLM's per-request logits processor), the way
outlines and xgrammar keep one matcher and per-framework processors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def compile_gbnf(gbnf: str) -> str:
    """llguidance's form of a GBNF grammar; ValueError when it cannot be compiled."""
    from llguidance import LLMatcher, grammar_from

    grammar = grammar_from("gbnf", gbnf)
    if problem := LLMatcher.validate_grammar(grammar):
        raise ValueError(problem)
    return grammar


def make_tokenizer(tokenizer_json: str, n_vocab: int, eos: list[int]) -> Any:
    """llguidance's view of the model's tokenizer (about a second to build: made once per model)."""
    from llguidance import LLTokenizer

    return LLTokenizer(tokenizer_json, n_vocab=n_vocab, eos_token=eos)


class ConstrainedOutput:
    """Per request: fed every sampled token in order, it answers which tokens may come next (None: any)."""

    def __init__(self, tokenizer: Any, grammar: str, triggers: Sequence[str] | None,
                 token_bytes: Callable[[int], bytes], tokenize: Callable[[str], list[int]]) -> None:
        """`grammar` from `compile_gbnf`; `triggers` None for a grammar that holds from the first token."""
        from llguidance.numpy import allocate_token_bitmask

        self._tokenizer, self._grammar = tokenizer, grammar
        self._token_bytes, self._tokenize = token_bytes, tokenize
        self._bitmask = allocate_token_bitmask(1, tokenizer.vocab_size)
        self._triggers = [re.compile(t) for t in triggers or ()]
        self._waiting = triggers is not None  # for a trigger
        self._text = b""
        self._matcher = None if self._waiting else self._new_matcher()

    def _new_matcher(self) -> Any:
        from llguidance import LLMatcher

        return LLMatcher(self._tokenizer, self._grammar)

    def consume(self, token: int) -> None:
        if self._matcher is not None:
            self._matcher.consume_token(token)
        elif self._waiting:
            self._watch(token)

    def _watch(self, token: int) -> None:
        self._text += self._token_bytes(token)
        text = self._text.decode("utf-8", "ignore")
        for trigger in self._triggers:
            # As llama.cpp does: search the whole output; the trigger itself ends in `$`.
            if (match := trigger.search(text)) and match.end() == len(text):
                self._waiting = False
                matcher, tail = self._new_matcher(), self._tokenize(text[match.start(1):])
                # The grammar must accept the text since the trigger; if not, this call stays unconstrained.
                self._matcher = matcher if matcher.try_consume_tokens(tail) == len(tail) else None
                return

    def allowed(self, vocab: int) -> np.ndarray | None:
        """A boolean row of `vocab` entries (the logits' width), or None while the output is unconstrained."""
        from llguidance.numpy import fill_next_token_bitmask

        if self._matcher is None:
            return None
        fill_next_token_bitmask(self._matcher, self._bitmask, 0)
        allowed = np.unpackbits(self._bitmask[0].view(np.uint8), bitorder="little")[:vocab].astype(bool)
        if allowed.shape[0] < vocab:  # a model whose embedding is padded past the tokenizer's vocabulary
            allowed = np.concatenate([allowed, np.zeros(vocab - allowed.shape[0], dtype=bool)])
        return allowed
