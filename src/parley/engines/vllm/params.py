"""parley's SamplingParams as vLLM's, and the up-front grammar check.

Forced grammars (tool_choice any/tool, json_schema output) go to vLLM's structured outputs as GBNF: its "auto"
backend compiles it with xgrammar's EBNF parser (GBNF-compatible) and falls back to llguidance. Lazy ones go to
parley's logits processor (lazy_grammar.py), which compiles them with llguidance.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ...core.params import GrammarConstraint, SamplingParams
from ...errors import InvalidRequestError
from ..constrained import compile_gbnf
from .grammar import EXTRA_KEY


def to_vllm(params: SamplingParams, max_tokens: int, eos: Iterable[int], min_p: float) -> Any:
    from vllm import SamplingParams as VllmParams
    from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

    grammar = params.grammar
    structured = StructuredOutputsParams(grammar=grammar.gbnf) if grammar and not grammar.lazy else None
    extra = {EXTRA_KEY: {"gbnf": grammar.gbnf, "triggers": list(grammar.triggers)}} if grammar and grammar.lazy \
        else None
    sampling = params.temperature > 0
    return VllmParams(
        max_tokens=max_tokens, temperature=max(params.temperature, 0.0), top_p=params.top_p or 1.0,
        top_k=params.top_k or 0, min_p=min_p if sampling else 0.0, seed=params.seed,
        stop_token_ids=sorted(eos), logprobs=params.logprobs, structured_outputs=structured, extra_args=extra,
        output_kind=RequestOutputKind.DELTA,
        detokenize=False)  # parley detokenizes (and matches stop strings) itself


def check_grammar(grammar: GrammarConstraint) -> None:
    """InvalidRequestError when the grammar will not compile, before the response starts."""
    try:
        if grammar.lazy:
            compile_gbnf(grammar.gbnf)
            return
        import xgrammar

        try:
            xgrammar.Grammar.from_ebnf(grammar.gbnf)
        except Exception:  # as vLLM's "auto" backend does: xgrammar, else llguidance
            compile_gbnf(grammar.gbnf)
    except Exception as exc:
        raise InvalidRequestError(f"the grammar could not be compiled for the vLLM engine: {exc}") from exc
