"""Grammar-constrained decoding on MLX: the shared llguidance matcher (`engines/constrained.py`) as an mlx-lm
logits processor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ...core.params import GrammarConstraint
from ...errors import InvalidRequestError
from ..constrained import ConstrainedOutput, compile_gbnf


def compile_grammar(gbnf: str) -> str:
    try:
        return compile_gbnf(gbnf)
    except ValueError as exc:
        raise InvalidRequestError(f"the grammar could not be compiled for the MLX engine: {exc}") from exc


class GrammarProcessor:
    """Per request. mlx-lm calls it with the tokens so far and the next logits; it feeds the matcher the
    token sampled last and masks every token the grammar forbids."""

    def __init__(self, tokenizer: Any, grammar: GrammarConstraint, token_bytes: Callable[[int], bytes],
                 tokenize: Callable[[str], list[int]]) -> None:
        triggers = list(grammar.triggers) if grammar.lazy else None
        self._output = ConstrainedOutput(tokenizer, compile_grammar(grammar.gbnf), triggers, token_bytes, tokenize)
        self._started = False

    def written(self, tokens: list[int]) -> None:
        """Tokens the engine wrote for the model (a forced end of reasoning), which a new step generator
        starts from: the matcher takes them, and that generator's first call has no sampled token to feed."""
        for token in tokens:
            self._output.consume(token)
        self._started = False

    def __call__(self, tokens: Any, logits: Any) -> Any:
        import mlx.core as mx

        if self._started:
            self._output.consume(int(tokens[-1].item()))
        self._started = True
        allowed = self._output.allowed(logits.shape[-1])
        if allowed is None:
            return logits
        return mx.where(mx.array(allowed), logits, mx.array(-np.inf, dtype=logits.dtype))
