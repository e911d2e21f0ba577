"""llama.cpp engine over llama-cpp-python: GGUF models on the CPU, several generations at once."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import llama_cpp
from llama_cpp._internals import LlamaContext, LlamaModel
from llama_cpp._logger import set_verbose

from ...chat.params import GrammarConstraint, SamplingParams
from ...chat.template import ChatTemplate
from ...errors import InvalidRequestError
from ...grammar.threads import on_grammar_thread
from ..base import Generation, Sink
from .sampling import build_sampler, compile_check
from .scheduler import BatchScheduler

GGUF_MAGIC = b"GGUF"
# Control tokens that output parsers must see; llama.cpp renders control tokens as "" by default.
PRESERVED_MARKERS = ("<tool_call>", "</tool_call>", "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "<|python_tag|>",
                     "<think>", "</think>", "<|channel|>", "<|message|>", "<|start|>", "<|end|>")


def read_gguf_magic(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == GGUF_MAGIC


class LlamaCppEngine:
    """One model and one llama.cpp context whose KV cache is shared by `n_slots` sequences: each
    runs one generation at a time and keeps its tokens afterwards as a prompt-prefix cache."""

    def __init__(self, path: Path, n_ctx: int, n_threads: int | None = None, n_batch: int = 512,
                 min_p: float = 0.05, n_slots: int = 4, prefill_chunk: int = 128) -> None:
        if not path.is_file() or not read_gguf_magic(path):
            raise InvalidRequestError(f"model file '{path.name}' is not a valid GGUF file")
        threads = n_threads or os.cpu_count() or 1
        set_verbose(False)  # llama.cpp logs through llama-cpp-python's logger: only warnings and errors
        try:
            self._model = LlamaModel(path_model=str(path), params=llama_cpp.llama_model_default_params(),
                                     verbose=False)
            trained = self._model.n_ctx_train()
            params = llama_cpp.llama_context_default_params()
            params.n_ctx = min(n_ctx, trained) if trained > 0 else n_ctx
            params.n_batch = params.n_ubatch = n_batch
            params.n_threads = params.n_threads_batch = threads
            params.n_seq_max = n_slots
            params.kv_unified = True  # one pool of cells: any sequence may use the whole context
            self._ctx = LlamaContext(model=self._model, params=params, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise InvalidRequestError(f"model file '{path.name}' could not be loaded") from exc
        self._min_p = min_p
        self.n_ctx = self._ctx.n_ctx()
        self.n_slots = n_slots
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._model.vocab)
        self.metadata = self._model.metadata()
        self._markers = self._marker_tokens()
        self.chat_template = ChatTemplate(
            self.metadata.get("tokenizer.chat_template"),
            bos_token=self._special_text(self._model.token_bos()),
            eos_token=self._special_text(self._model.token_eos()),
        )
        self._scheduler = BatchScheduler(self, self._ctx, n_slots, n_batch, prefill_chunk)

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

    def close_reasoning_tokens(self, params: SamplingParams) -> list[int]:
        close = params.reasoning_budget.close_text  # type: ignore[union-attr]
        return self._model.tokenize(close.encode(), add_bos=False, special=True)

    def check_grammar(self, grammar: GrammarConstraint) -> None:
        """Compile once up front, so a bad grammar is a 400 before the response starts."""
        on_grammar_thread(compile_check, self._model.vocab, grammar)

    def submit(self, prompt: list[int], params: SamplingParams, sink: Sink) -> Generation:
        # A grammar in the chain is compiled by recursion: on a thread with the stack for it (no hop without one).
        build = on_grammar_thread if params.grammar is not None else (lambda fn, *args: fn(*args))
        sampler = build(build_sampler, self._model.vocab, params, self._min_p)
        try:
            return self._scheduler.submit(prompt, params, sink, sampler)
        except BaseException:
            sampler.close()
            raise

    def stats(self) -> dict[str, int]:
        return self._scheduler.stats()

    def close(self) -> None:
        if self._scheduler.close():  # never free a context a decode step may still be using
            self._ctx.close()
            self._model.close()
