"""Per-request sampler chains (grammar included) and log-probabilities, over llama.cpp's samplers."""

from __future__ import annotations

import ctypes
import random

import llama_cpp
import numpy as np
from llama_cpp._internals import LlamaSampler

from ...core.params import GrammarConstraint, SamplingParams
from ...errors import InvalidRequestError
from ..base import TokenLogprob


def add_grammar(sampler: LlamaSampler, vocab: llama_cpp.llama_vocab_p, grammar: GrammarConstraint) -> None:
    if grammar.lazy:
        patterns = (ctypes.c_char_p * len(grammar.triggers))(*(p.encode() for p in grammar.triggers))
        no_tokens = (llama_cpp.llama_token * 0)()
        handle = llama_cpp.llama_sampler_init_grammar_lazy_patterns(
            vocab, grammar.gbnf.encode(), b"root", patterns, len(grammar.triggers), no_tokens, 0)
    else:
        handle = llama_cpp.llama_sampler_init_grammar(vocab, grammar.gbnf.encode(), b"root")
    if not handle:
        raise InvalidRequestError("the tool schemas could not be compiled into a grammar")
    llama_cpp.llama_sampler_chain_add(sampler.sampler, handle)


def compile_check(vocab: llama_cpp.llama_vocab_p, grammar: GrammarConstraint) -> None:
    """Compile once and free: a grammar llama.cpp refuses is an error before the response starts."""
    sampler = LlamaSampler()
    try:
        add_grammar(sampler, vocab, grammar)
    finally:
        sampler.close()


def build_sampler(vocab: llama_cpp.llama_vocab_p, params: SamplingParams, min_p: float) -> LlamaSampler:
    """The whole chain, built in one place, fresh for each request."""
    sampler = LlamaSampler()
    if params.grammar is not None:
        add_grammar(sampler, vocab, params.grammar)
    if params.temperature <= 0:
        sampler.add_greedy()
        return sampler
    if params.top_k:
        sampler.add_top_k(params.top_k)
    if params.top_p is not None and params.top_p < 1.0:
        sampler.add_top_p(params.top_p, 1)
    if min_p > 0:
        sampler.add_min_p(min_p, 1)
    sampler.add_temp(params.temperature)
    sampler.add_dist(params.seed if params.seed is not None else random.getrandbits(32))
    return sampler


def logprobs(ctx: llama_cpp.llama_context_p, index: int, n_vocab: int, token: int,
             top: int) -> tuple[float, tuple[TokenLogprob, ...]]:
    """The model's own distribution at batch row `index` (before any sampler cut), as log-softmax."""
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, index), shape=(n_vocab,))
    shifted = logits - logits.max()
    log_z = float(np.log(np.exp(shifted).sum()))
    chosen = float(shifted[token]) - log_z
    if top <= 0:
        return chosen, ()
    best = np.argpartition(shifted, -top)[-top:]
    best = best[np.argsort(shifted[best])[::-1]]
    return chosen, tuple(TokenLogprob(int(t), float(shifted[t]) - log_z) for t in best)
