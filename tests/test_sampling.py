"""The grammar fast path (engines/llamacpp/sampling.py) against the grammar-first chain it replaces, on a real
model's logits: greedy choices identical at every step, with both the fast and the fallback path taken."""

from __future__ import annotations

import llama_cpp
from llama_cpp._internals import LlamaSampler

from parley.core.params import GrammarConstraint, SamplingParams
from parley.engines.llamacpp import cpu_backend
from parley.engines.llamacpp.sampling import RequestSampler, add_grammar, build_sampler
from parley.grammar.json_output import check_strict_schema, strict_gbnf
from parley.models.packaged import SMOLLM2_135M
from parley.settings import Settings

SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}, "year": {"type": "integer"},
                                            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2}},
          "required": ["city", "year", "tags"]}


def _same_tokens(params: SamplingParams, reference: LlamaSampler, question: str, steps: int,
                 min_p: float = 0.0) -> tuple[list[int], RequestSampler]:
    """Answer `question` greedily, checking parley's sampler against `reference` at every step (both on the
    same logits); the tokens chosen, and parley's sampler (closed)."""
    cpu_backend.ensure_loaded()  # llama-cpp-python's Llama looks for ggml's backends only beside python
    llm = llama_cpp.Llama(str(SMOLLM2_135M.gguf_path(Settings().cache_dir)), n_ctx=512, verbose=False)
    if params.grammar is not None:
        add_grammar(reference, llm._model.vocab, params.grammar)
    reference.add_greedy()
    fast = build_sampler(llm._model.vocab, params, min_p)
    llm.eval(llm.tokenize(f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n".encode(),
                          special=True))
    chosen: list[int] = []
    try:
        for _ in range(steps):
            token = fast.sample(llm._ctx, -1)
            expected = llama_cpp.llama_sampler_sample(reference.sampler, llm._ctx.ctx, -1)
            assert token == expected, (len(chosen), llm.detokenize(chosen))
            chosen.append(token)
            if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
                break
            llm.eval([token])
    finally:
        fast.close()
        reference.close()
    return chosen, fast


def test_fast_path_gives_the_grammar_first_greedy_tokens():
    grammar = GrammarConstraint(strict_gbnf(check_strict_schema(SCHEMA, "s"), "s"))
    params = SamplingParams(max_tokens=80, temperature=0.0, grammar=grammar)
    chosen, fast = _same_tokens(params, LlamaSampler(), "Describe Rome as JSON.", 80)
    assert 0 < fast.resampled < len(chosen)  # both paths ran: the model's own choice, and the grammar's


def test_greedy_by_argmax_gives_llama_cpps_greedy_tokens():
    """Greedy requests read the row's best logit with numpy instead of llama.cpp's sampler (which copies the
    whole vocabulary first): the same token at every step of a free-text answer."""
    params = SamplingParams(max_tokens=120, temperature=0.0)
    chosen, _ = _same_tokens(params, LlamaSampler(), "Write a short poem about rivers.", 120, min_p=0.05)
    assert len(chosen) > 20  # a real answer was compared, token by token


def test_a_json_string_in_a_grammar_takes_no_raw_control_character():
    """JSON strings cannot hold a raw newline; llama-cpp-python's converter allowed one (`[^"\\\\]`), and a sampled
    email body then came back as arguments that do not parse. Its escape is allowed, as is ordinary text."""
    import ctypes

    from parley.engines.llamacpp.sampling import grammar_sampler
    from parley.engines.mlx.grammar import compile_grammar

    cpu_backend.ensure_loaded()
    llm = llama_cpp.Llama(str(SMOLLM2_135M.gguf_path(Settings().cache_dir)), vocab_only=True, verbose=False)
    schema = {"type": "object", "properties": {"body": {"type": "string"}}, "required": ["body"]}
    grammar = GrammarConstraint(strict_gbnf(check_strict_schema(schema, "s"), "s"))
    compile_grammar(grammar.gbnf)  # llguidance (the MLX and vLLM engines) reads the same rule

    def allowed_after(prefix: str, text: str) -> bool:
        handle = grammar_sampler(llm._model.vocab, grammar)
        try:
            for token in llm.tokenize(prefix.encode(), add_bos=False, special=False):
                llama_cpp.llama_sampler_accept(handle, token)
            (token,) = llm.tokenize(text.encode(), add_bos=False, special=False)
            one = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
            view = llama_cpp.llama_token_data_array(one, 1, -1, False)
            llama_cpp.llama_sampler_apply(handle, ctypes.byref(view))
            return one[0].logit != float("-inf")
        finally:
            llama_cpp.llama_sampler_free(handle)

    assert allowed_after('{"body": "Buy', " milk")
    assert allowed_after('{"body": "Buy', "\\")  # the start of an escape, `\n` written as JSON writes it
    assert not allowed_after('{"body": "Buy', "\n")
    assert not allowed_after('{"body": "Buy', "\t")
