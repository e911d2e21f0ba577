"""llama.cpp engine over llama-cpp-python: GGUF models on the CPU, several generations at once."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import llama_cpp
from llama_cpp._internals import LlamaContext

from ...core.params import SamplingParams
from ...errors import InvalidRequestError
from ...grammar.threads import on_grammar_thread
from ..base import AfterDelivery, Generation, Sink, SpeaksThroughVocabulary
from ..features import EngineFeatures
from ..formats.facts import served_context
from . import cpu_backend
from .prefix_store import PrefixStore
from .sampling import build_sampler, compile_check
from .scheduler import BatchScheduler
from .states import model_identity
from .vocab import LlamaCppVocab

log = logging.getLogger("parley.llamacpp")


class LlamaCppEngine(SpeaksThroughVocabulary):
    """One model and one llama.cpp context whose KV cache is shared by `n_slots` sequences: each
    runs one generation at a time and keeps its tokens afterwards as a prompt-prefix cache."""

    features = EngineFeatures(forced_reasoning_close=True, lazy_grammar=True, logprobs=True, batching=True)

    def __init__(self, path: Path, n_ctx: int, n_threads: int | None = None, n_batch: int = 512,
                 min_p: float = 0.05, n_slots: int = 4, prefill_chunk: int = 128,
                 disk_cache: dict[str, Any] | None = None, draft_max: int = 0,
                 rope_scaling_factor: float = 1.0, cache_ram: int = 2 << 30) -> None:
        """`disk_cache`: {"dir", "max_bytes", "min_tokens"} of the persistent prompt cache (None: off);
        `draft_max`: the longest prompt-lookup draft verified per step (0: no speculative decoding);
        `rope_scaling_factor` > 1: YaRN past the trained length, by that factor; `cache_ram`: the bytes of
        idle conversations' KV states kept in host memory."""
        self.cpu_backend = cpu_backend.ensure_loaded()
        self.vocab = LlamaCppVocab(path)
        self._model = self.vocab.model
        threads = n_threads or os.cpu_count() or 1
        try:
            trained = self._model.n_ctx_train()
            params = llama_cpp.llama_context_default_params()
            params.n_ctx = served_context(n_ctx, trained if trained > 0 else None, rope_scaling_factor)
            if rope_scaling_factor > 1 and trained > 0:  # as llama-server's --rope-scaling yarn --rope-scale
                params.rope_scaling_type = llama_cpp.LLAMA_ROPE_SCALING_TYPE_YARN
                params.rope_freq_scale = 1 / rope_scaling_factor
                params.yarn_orig_ctx = trained
            params.n_batch = params.n_ubatch = n_batch
            params.n_threads = params.n_threads_batch = threads
            on_disk = bool(disk_cache and disk_cache["max_bytes"] > 0)
            params.n_seq_max = n_slots + on_disk  # a scratch sequence to snapshot prefixes from
            params.n_outputs_max_per_seq = draft_max + 1  # a row of logits for each draft token
            params.kv_unified = True  # one pool of cells: any sequence may use the whole context
            self._ctx = LlamaContext(model=self._model, params=params, verbose=False)
        except (ValueError, RuntimeError) as exc:
            self.vocab.close()
            raise InvalidRequestError(f"model file '{path.name}' could not be loaded") from exc
        self._min_p = min_p
        self.n_ctx = self._ctx.n_ctx()
        self.n_slots = n_slots
        self.n_vocab = self.vocab.n_vocab
        self.metadata = self.vocab.metadata
        self._store = _open_store(disk_cache, path, params) if on_disk else None
        self.after_delivery: AfterDelivery | None = None  # see engines/base.py
        self._scheduler = BatchScheduler(self, self._ctx, n_slots, n_batch, prefill_chunk, self._store, draft_max,
                                         cache_ram)

    def close_reasoning_tokens(self, params: SamplingParams) -> list[int]:
        # Not vocab.tokenize: that adds BOS for models whose vocabulary asks for one.
        close = params.reasoning_budget.close_text  # type: ignore[union-attr]
        return self._model.tokenize(close.encode(), add_bos=False, special=True)

    def check(self, prompt: list[int], params: SamplingParams) -> None:
        """Compile the grammar once up front, so a bad one is a 400 before the response starts."""
        if params.grammar is not None:
            on_grammar_thread(compile_check, self._model.vocab, params.grammar)

    def submit(self, prompt: list[int], params: SamplingParams, sink: Sink) -> Generation:
        # A grammar in the chain is compiled by recursion: on a thread with the stack for it (no hop without one).
        build = on_grammar_thread if params.grammar is not None else (lambda fn, *args: fn(*args))
        sampler = build(build_sampler, self._model.vocab, params, self._min_p)
        try:
            return self._scheduler.submit(prompt, params, sink, sampler)
        except BaseException:
            sampler.close()
            raise

    def stats(self) -> dict[str, int | str]:
        return {**self._scheduler.stats(), "cpu_backend": self.cpu_backend}

    def close(self) -> None:
        closed = self._scheduler.close()
        if self._store is not None:
            self._store.close()  # queued saves are written first
        if closed:  # never free a context a decode step may still be using
            self._ctx.close()
            self._model.close()


def _open_store(disk_cache: dict[str, Any], path: Path, params: llama_cpp.llama_context_params) -> PrefixStore | None:
    try:
        return PrefixStore(Path(disk_cache["dir"]), model_identity(path, params), int(disk_cache["max_bytes"]),
                           min_tokens=int(disk_cache["min_tokens"]))
    except OSError as exc:  # an unwritable data directory costs the cache, not the model
        log.warning("prompt cache on disk is off: %s", exc)
        return None
