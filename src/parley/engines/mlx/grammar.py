"""Grammar-constrained decoding on MLX: llguidance masks the logits through an mlx-lm logits processor.

The same GBNF that the llama.cpp engine compiles (tool calls, `json_schema` output) is converted to
llguidance's grammar format; each step the matcher takes the token sampled last and yields the set of tokens
that keep the output inside the grammar. A lazy grammar (`tool_choice: auto`) works as llama.cpp's does: free
output until a trigger regex matches at its end, then the grammar takes over from the trigger's first group.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from ...core.params import GrammarConstraint
from ...errors import InvalidRequestError


def compile_grammar(gbnf: str) -> str:
    from llguidance import LLMatcher, grammar_from

    try:
        grammar = grammar_from("gbnf", gbnf)
    except ValueError as exc:
        raise InvalidRequestError(f"the grammar could not be compiled for the MLX engine: {exc}") from exc
    if problem := LLMatcher.validate_grammar(grammar):
        raise InvalidRequestError(f"the grammar could not be compiled for the MLX engine: {problem}")
    return grammar


def make_tokenizer(tokenizer_json: str, n_vocab: int, eos: list[int]) -> Any:
    """llguidance's view of the model's tokenizer (about a second to build: made once per model)."""
    from llguidance import LLTokenizer

    return LLTokenizer(tokenizer_json, n_vocab=n_vocab, eos_token=eos)


class GrammarProcessor:
    """Per request. mlx-lm calls it with the tokens so far and the next logits; it feeds the matcher the
    token sampled last and masks every token the grammar forbids."""

    def __init__(self, tokenizer: Any, grammar: GrammarConstraint, token_bytes: Callable[[int], bytes],
                 tokenize: Callable[[str], list[int]]) -> None:
        from llguidance.numpy import allocate_token_bitmask

        self._tokenizer = tokenizer
        self._grammar = compile_grammar(grammar.gbnf)
        self._bitmask = allocate_token_bitmask(1, tokenizer.vocab_size)
        self._token_bytes, self._tokenize = token_bytes, tokenize
        self._triggers = [re.compile(t) for t in grammar.triggers] if grammar.lazy else []
        self._waiting = grammar.lazy  # for a trigger
        self._text = b""
        self._matcher = None if grammar.lazy else self._new_matcher()
        self._started = False

    def _new_matcher(self) -> Any:
        from llguidance import LLMatcher

        return LLMatcher(self._tokenizer, self._grammar)

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

    def __call__(self, tokens: Any, logits: Any) -> Any:
        import mlx.core as mx
        from llguidance.numpy import fill_next_token_bitmask

        if self._started:
            token = int(tokens[-1].item())
            if self._matcher is not None:
                self._matcher.consume_token(token)
            elif self._waiting:
                self._watch(token)
        self._started = True
        if self._matcher is None:
            return logits
        fill_next_token_bitmask(self._matcher, self._bitmask, 0)
        vocab = logits.shape[-1]
        allowed = np.unpackbits(self._bitmask[0].view(np.uint8), bitorder="little")[:vocab].astype(bool)
        if allowed.shape[0] < vocab:  # a model whose embedding is padded past the tokenizer's vocabulary
            allowed = np.concatenate([allowed, np.zeros(vocab - allowed.shape[0], dtype=bool)])
        return mx.where(mx.array(allowed), logits, mx.array(-np.inf, dtype=logits.dtype))
