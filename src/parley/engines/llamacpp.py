"""llama.cpp engine over llama-cpp-python: GGUF models on the CPU."""

from __future__ import annotations

import ctypes
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import llama_cpp
from llama_cpp import Llama
from llama_cpp._internals import LlamaModel, LlamaSampler

from ..chat.params import GrammarConstraint, SamplingParams
from ..chat.reasoning import BudgetTracker
from ..chat.template import ChatTemplate
from ..errors import EngineError, InvalidRequestError

GGUF_MAGIC = b"GGUF"
# Control tokens that output parsers must see; llama.cpp renders control tokens as "" by default.
PRESERVED_MARKERS = ("<tool_call>", "</tool_call>", "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "<|python_tag|>",
                     "<think>", "</think>", "<|channel|>", "<|message|>", "<|start|>", "<|end|>")


def read_gguf_magic(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == GGUF_MAGIC


class LlamaCppEngine:
    """One llama.cpp context. Keeps the tokens currently in its KV cache so that a new prompt
    sharing a prefix with the previous one re-uses it instead of prefilling again."""

    def __init__(self, path: Path, n_ctx: int, n_threads: int | None = None, n_batch: int = 512,
                 min_p: float = 0.05) -> None:
        if not path.is_file() or not read_gguf_magic(path):
            raise InvalidRequestError(f"model file '{path.name}' is not a valid GGUF file")
        threads = n_threads or os.cpu_count() or 1
        try:
            # Weights are memory-mapped, so probing the trained context length first is cheap.
            probe = LlamaModel(path_model=str(path), params=llama_cpp.llama_model_default_params(), verbose=False)
            trained = probe.n_ctx_train()
            probe.close()
            self._llama = Llama(str(path), n_ctx=min(n_ctx, trained) if trained > 0 else n_ctx,
                                n_threads=threads, n_threads_batch=threads, n_batch=n_batch, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise InvalidRequestError(f"model file '{path.name}' could not be loaded") from exc
        self._model = self._llama._model
        self._ctx = self._llama._ctx
        self._batch = self._llama._batch
        self._n_batch = n_batch
        self._min_p = min_p
        self._kv_tokens: list[int] = []  # what the KV cache holds now, position by position
        self.n_ctx = self._llama.n_ctx()
        self.metadata = dict(self._llama.metadata)
        self._markers = self._marker_tokens()
        self.chat_template = ChatTemplate(
            self.metadata.get("tokenizer.chat_template"),
            bos_token=self._special_text(self._model.token_bos()),
            eos_token=self._special_text(self._model.token_eos()),
        )

    def _special_text(self, token: int) -> str:
        return self._model.token_get_text(token) if token >= 0 else ""

    def tokenize(self, text: str) -> list[int]:
        # The template writes BOS itself when the model wants one; llama.cpp adds it only if the
        # vocabulary says so, so drop a rendered copy to avoid a doubled BOS.
        bos = self.chat_template.bos_token
        if bos and self._model.add_bos_token() and text.startswith(bos):
            text = text[len(bos):]
        return self._model.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def _marker_tokens(self) -> frozenset[int]:
        found = set()
        for marker in PRESERVED_MARKERS:
            ids = self._model.tokenize(marker.encode(), add_bos=False, special=True)
            if len(ids) == 1:
                found.add(ids[0])
        return frozenset(found)

    def token_bytes(self, token: int) -> bytes:
        # llama-cpp-python's own token_to_piece returns its whole fixed buffer, NULs included.
        special = token in self._markers
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self._model.vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._model.vocab, token, buf, len(buf), 0, special)
        return buf.raw[: max(n, 0)]

    def is_end_of_generation(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._model.vocab, token))

    def _sampler(self, params: SamplingParams) -> LlamaSampler:
        """The whole sampler chain, built in one place, fresh for each request."""
        sampler = LlamaSampler()
        if params.grammar is not None:
            self._add_grammar(sampler, params.grammar)
        if params.temperature <= 0:
            sampler.add_greedy()
            return sampler
        if params.top_k:
            sampler.add_top_k(params.top_k)
        if params.top_p is not None and params.top_p < 1.0:
            sampler.add_top_p(params.top_p, 1)
        if self._min_p > 0:
            sampler.add_min_p(self._min_p, 1)
        sampler.add_temp(params.temperature)
        seed = params.seed if params.seed is not None else random.getrandbits(32)
        sampler.add_dist(seed)
        return sampler

    def _add_grammar(self, sampler: LlamaSampler, grammar: GrammarConstraint) -> None:
        vocab = self._model.vocab
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

    def _close_reasoning(self, params: SamplingParams) -> list[int]:
        close = params.reasoning_budget.close_text
        return self._model.tokenize(close.encode(), add_bos=False, special=True)

    def check_grammar(self, grammar: GrammarConstraint) -> None:
        """Compile once up front, so a bad grammar is a 400 before the response starts."""
        self._add_grammar(LlamaSampler(), grammar)

    def _decode(self, tokens: list[int]) -> None:
        self._batch.set_batch(batch=tokens, n_past=len(self._kv_tokens), logits_all=False)
        self._ctx.decode(self._batch)
        self._kv_tokens.extend(tokens)

    def _reuse_prefix(self, prompt: list[int]) -> int:
        n = 0
        for a, b in zip(self._kv_tokens, prompt, strict=False):
            if a != b:
                break
            n += 1
        n = min(n, len(prompt) - 1)  # the last prompt token is always decoded: its logits are needed
        if n <= 0 or not self._ctx.kv_cache_seq_rm(-1, n, -1):
            self._ctx.kv_cache_clear()
            n = 0
        del self._kv_tokens[n:]
        return n

    def generate(self, prompt: list[int], params: SamplingParams, cancelled: threading.Event) -> Iterator[int]:
        sampler = self._sampler(params)
        try:
            start = self._reuse_prefix(prompt)
            for i in range(start, len(prompt), self._n_batch):
                if cancelled.is_set():
                    return
                self._decode(prompt[i : i + self._n_batch])
            budget = BudgetTracker(params.reasoning_budget) if params.reasoning_budget else None
            forced: list[int] = []  # tokens the server writes for the model (closing its reasoning)
            for _ in range(params.max_tokens):
                if cancelled.is_set() or len(self._kv_tokens) >= self.n_ctx:
                    return
                if not forced:
                    token = sampler.sample(self._ctx, -1)
                    if budget and budget.reasoning and self.is_end_of_generation(token):
                        forced = self._close_reasoning(params)  # a turn cannot end inside its reasoning
                if forced:
                    token = forced.pop(0)
                    sampler.accept(token)  # keeps a lazy grammar's view of the output whole
                yield token
                if self.is_end_of_generation(token):
                    return
                if budget and budget.feed(self.token_bytes(token).decode("utf-8", "ignore")):
                    forced = self._close_reasoning(params)
                self._decode([token])
        except RuntimeError as exc:
            # A failed decode leaves the cache in an unknown state: forget it.
            self._kv_tokens.clear()
            self._ctx.kv_cache_clear()
            raise EngineError("llama.cpp failed to decode") from exc
        finally:
            sampler.close()

    def close(self) -> None:
        self._llama.close()
