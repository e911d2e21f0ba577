"""Per-request samplers (chain and grammar) and log-probabilities, over llama.cpp's samplers."""

from __future__ import annotations

import ctypes
import random

import llama_cpp
import numpy as np
from llama_cpp._internals import LlamaContext, LlamaSampler

from ...core.params import GrammarConstraint, SamplingParams
from ...errors import InvalidRequestError
from ..base import TokenLogprob


def grammar_sampler(vocab: llama_cpp.llama_vocab_p, grammar: GrammarConstraint) -> llama_cpp.llama_sampler_p:
    if grammar.lazy:
        patterns = (ctypes.c_char_p * len(grammar.triggers))(*(p.encode() for p in grammar.triggers))
        no_tokens = (llama_cpp.llama_token * 0)()
        handle = llama_cpp.llama_sampler_init_grammar_lazy_patterns(
            vocab, grammar.gbnf.encode(), b"root", patterns, len(grammar.triggers), no_tokens, 0)
    else:
        handle = llama_cpp.llama_sampler_init_grammar(vocab, grammar.gbnf.encode(), b"root")
    if not handle:
        raise InvalidRequestError("the tool schemas could not be compiled into a grammar")
    return handle


def add_grammar(sampler: LlamaSampler, vocab: llama_cpp.llama_vocab_p, grammar: GrammarConstraint) -> None:
    """`grammar` as one more link of a chain (the grammar-safety tests drive it so)."""
    llama_cpp.llama_sampler_chain_add(sampler.sampler, grammar_sampler(vocab, grammar))


def compile_check(vocab: llama_cpp.llama_vocab_p, grammar: GrammarConstraint) -> None:
    """Compile once and free: a grammar llama.cpp refuses is an error before the response starts."""
    llama_cpp.llama_sampler_free(grammar_sampler(vocab, grammar))


def _chain(params: SamplingParams, min_p: float) -> LlamaSampler:
    sampler = LlamaSampler()
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


def build_sampler(vocab: llama_cpp.llama_vocab_p, params: SamplingParams, min_p: float) -> RequestSampler:
    """The whole chain, built in one place, fresh for each request."""
    chain = _chain(params, min_p)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    greedy = params.temperature <= 0
    if params.grammar is None:
        return RequestSampler(chain, n_vocab=n_vocab, greedy=greedy)
    try:
        return RequestSampler(chain, grammar_sampler(vocab, params.grammar), n_vocab, greedy)
    except BaseException:
        chain.close()
        raise


_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])  # llama_token_data


class RequestSampler:
    """One request's sampling: its chain and, apart from it, its grammar. A grammar applied to the whole
    vocabulary at every step costs a third of decode speed (152k tokens for Qwen); so the token is sampled
    unconstrained first and only checked against the grammar, and resampled under it only when rejected —
    llama-server's fast path. Greedy output is the same either way (the best token overall, if allowed, is the
    best allowed one); sampled output draws from the same allowed set.

    Greedy sampling reads the row's best logit with numpy: llama.cpp's sampler first copies the whole
    vocabulary into candidates, 0.2 ms a token, for the same first maximum."""

    def __init__(self, chain: LlamaSampler, grammar: llama_cpp.llama_sampler_p | None = None,
                 n_vocab: int = 0, greedy: bool = False) -> None:
        self._chain = chain
        self._grammar = grammar
        self._n_vocab = n_vocab
        self._greedy = greedy and n_vocab > 0
        self._one = (llama_cpp.llama_token_data * 1)()
        self.resampled = 0  # tokens the grammar rejected (for tests and curiosity)

    def sample(self, context: LlamaContext, row: int) -> int:
        ctx = context.ctx
        if self._greedy:  # the greedy link keeps no state: nothing to accept into the chain
            token = int(np.argmax(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, row),
                                                        shape=(self._n_vocab,))))
        else:
            token = llama_cpp.llama_sampler_sample(self._chain.sampler, ctx, row)  # accepts into the chain
        if self._grammar is None:
            return token
        if not self._allows(token):
            self.resampled += 1
            token = self._constrained(ctx, row)
        llama_cpp.llama_sampler_accept(self._grammar, token)
        return token

    def accept(self, token: int) -> None:
        """A token written for the model (a forced reasoning close)."""
        llama_cpp.llama_sampler_accept(self._chain.sampler, token)
        if self._grammar is not None:
            llama_cpp.llama_sampler_accept(self._grammar, token)

    def _allows(self, token: int) -> bool:
        self._one[0].id, self._one[0].logit, self._one[0].p = token, 0.0, 0.0
        view = llama_cpp.llama_token_data_array(self._one, 1, -1, False)
        llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(view))
        return self._one[0].logit != -np.inf

    def _constrained(self, ctx: llama_cpp.llama_context_p, row: int) -> int:
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, row), shape=(self._n_vocab,))
        data = np.empty(self._n_vocab, dtype=_TOKEN_DATA)
        data["id"], data["logit"], data["p"] = np.arange(self._n_vocab, dtype=np.int32), logits, 0.0
        pointer = data.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data))
        view = llama_cpp.llama_token_data_array(pointer, self._n_vocab, -1, False)
        llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(view))
        llama_cpp.llama_sampler_apply(self._chain.sampler, ctypes.byref(view))
        return int(data["id"][view.selected])

    def close(self) -> None:
        self._chain.close()
        if self._grammar is not None:
            llama_cpp.llama_sampler_free(self._grammar)
            self._grammar = None


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
