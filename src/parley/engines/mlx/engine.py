"""MLX engine over mlx-lm: MLX / Hugging Face model directories (config.json, safetensors, tokenizer).

The fast path on Apple silicon (Metal); on Linux it runs on `mlx[cpu]`. Generations run one at a time on
one long-lived MLX thread, shared by all MLX models: MLX keeps per-thread stream state whose teardown, when
a thread that used it exits, aborts the process, so that thread never exits. Each generation's KV cache is
kept afterwards in mlx-lm's `LRUPromptCache` (bounded by `--cache-ram`, least recently used out first), and a
new prompt starts from the stored conversation that shares most of it, so an agent and its side requests do
not evict each other. mlx-lm is imported only when an MLX model is loaded.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...core.params import SamplingParams
from ...core.thinking import BudgetTracker
from ...errors import InvalidRequestError
from ..base import Done, Generation, Sampled, Sink, SpeaksThroughVocabulary, Started, TokenLogprob
from ..constrained import make_tokenizer
from ..features import EngineFeatures
from ..formats.facts import served_context
from .grammar import GrammarProcessor, compile_grammar
from .vocab import MlxVocab, mlx_available

_work: queue.SimpleQueue[Any] = queue.SimpleQueue()
_worker_lock = threading.Lock()
_worker: threading.Thread | None = None


def _run_forever() -> None:
    while True:
        _work.get()()


def _on_mlx_thread(task: Any) -> None:
    global _worker
    with _worker_lock:
        if _worker is None:
            _worker = threading.Thread(target=_run_forever, name="parley-mlx", daemon=True)
            _worker.start()
    _work.put(task)


@dataclass
class _Job:
    prompt: list[int]
    params: SamplingParams
    sink: Sink
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


_KEY = "model"  # LRUPromptCache keys entries by model too: each engine has its own


class MlxEngine(SpeaksThroughVocabulary):
    n_slots = 1
    features = EngineFeatures(forced_reasoning_close=True, lazy_grammar=True, logprobs=True)

    def __init__(self, path: Path, n_ctx: int, min_p: float = 0.05, cache_ram: int = 2 << 30) -> None:
        if (reason := mlx_available()) is not None:
            raise InvalidRequestError(reason)
        from mlx_lm import load
        from mlx_lm.models.cache import LRUPromptCache, make_prompt_cache

        try:
            self._model, self._tokenizer = load(str(path))
        except (OSError, ValueError, KeyError) as exc:
            raise InvalidRequestError(f"MLX model '{path.name}' could not be loaded: {exc}") from exc
        self.vocab = MlxVocab(path, self._tokenizer)
        trained = self.vocab.n_ctx_train
        self.n_ctx = served_context(n_ctx, trained if isinstance(trained, int) and trained > 0 else None)
        self._hf = self.vocab.hf
        self._eos = self.vocab.eos
        self._min_p = min_p
        self._cache = make_prompt_cache(self._model)  # the running (or last) generation's
        self._cache_tokens: list[int] = []
        self._kept = LRUPromptCache(max_size=1 << 20, max_bytes=cache_ram)  # idle conversations' caches
        self._busy = False
        self._closed = threading.Event()
        self._lltok: Any = None

    def check(self, prompt: list[int], params: SamplingParams) -> None:
        if params.grammar is not None:
            compile_grammar(params.grammar.gbnf)

    def _grammar_tokenizer(self) -> Any:
        if self._lltok is None:
            vocab = self._model.model.embed_tokens.weight.shape[0] if hasattr(self._model, "model") else None
            self._lltok = make_tokenizer(self._hf.backend_tokenizer.to_str(), vocab or len(self._hf),
                                         sorted(self._eos))
        return self._lltok

    def submit(self, prompt: list[int], params: SamplingParams, sink: Sink) -> Generation:
        job = _Job(prompt, params, sink)
        _on_mlx_thread(lambda: self._run(job))
        return job

    def stats(self) -> dict[str, int]:
        return {"slots": 1, "busy_slots": int(self._busy), "cached_tokens": len(self._cache_tokens),
                "kept_conversations": len(self._kept), "parked_bytes": self._kept.nbytes,
                "cache_capacity": self.n_ctx}

    def close(self) -> None:
        """Once the jobs queued before it are done (each cancelled), drop the model's arrays."""
        def release() -> None:
            self._model = self._cache = None
            self._kept.trim_to(n_sequences=0)
            self._closed.set()

        _on_mlx_thread(release)
        self._closed.wait(30)

    # ---- on the MLX thread
    def _run(self, job: _Job) -> None:
        if self._model is None:
            job.sink(Done())
            return
        self._busy = True
        try:
            self._generate(job)
            if self._cache_tokens:
                self._kept.insert_cache(_KEY, list(self._cache_tokens), self._cache)
            job.sink(Done())
        except Exception as exc:  # handed to the request, which reports it; its cache is not kept
            self._cache_tokens = []
            job.sink(exc)
        finally:
            self._busy = False

    def _reuse(self, prompt: list[int]) -> int:
        """Start from the kept conversation that shares most of `prompt` (a copy: the entry stays for other
        prompts), or from an empty cache; at least the prompt's last token is left to compute."""
        from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache

        cache, rest = self._kept.fetch_nearest_cache(_KEY, prompt)
        if cache is None:
            cache, rest = make_prompt_cache(self._model), prompt
        elif not rest:  # the whole prompt is stored: its last token is computed again, for its logits
            trim_prompt_cache(cache, 1)
            rest = prompt[-1:]
        self._cache = cache
        self._cache_tokens = prompt[: len(prompt) - len(rest)]
        return len(self._cache_tokens)

    def _generate(self, job: _Job) -> None:
        import mlx.core as mx
        from mlx_lm.sample_utils import make_sampler

        params = job.params
        if job.cancelled:
            return
        cached = self._reuse(job.prompt)
        job.sink(Started(cached_tokens=cached))
        if params.seed is not None:
            mx.random.seed(params.seed)
        sampler = make_sampler(temp=max(params.temperature, 0.0), top_p=params.top_p or 0.0,
                               min_p=self._min_p if params.temperature > 0 else 0.0, top_k=params.top_k or 0)
        grammar = None
        if params.grammar is not None:
            grammar = GrammarProcessor(self._grammar_tokenizer(), params.grammar, self.token_bytes, self.tokenize)
        budget = BudgetTracker(params.reasoning_budget) if params.reasoning_budget else None
        generated: list[int] = []
        pending = job.prompt[cached:]  # what the cache lacks: the prompt's rest, later a forced close
        while not job.cancelled:
            forced = self._segment(job, pending, generated, sampler, grammar, budget)
            if forced is None:
                return
            for token in forced:  # written for the model, handed out as if sampled (as llama.cpp and vLLM do)
                job.sink(Sampled(token, 0.0 if params.logprobs is not None else None))
                generated.append(token)
                budget.feed(self.token_bytes(token).decode("utf-8", "ignore"))  # type: ignore[union-attr]
                if len(generated) >= params.max_tokens:
                    return  # the cache holds what the model read: the segment noted it
            if grammar is not None:
                grammar.written(forced)
            pending = forced

    def _segment(self, job: _Job, pending: list[int], generated: list[int], sampler: Any,
                 grammar: GrammarProcessor | None, budget: BudgetTracker | None) -> list[int] | None:
        """Decode from `pending` over the kept cache, appending to `generated`: None when the generation ended,
        else the tokens that close the reasoning (its budget is spent, or the turn would end inside it). The
        thinking budget is kept here, as in the vLLM engine: mlx-lm samples a step ahead, so a token cannot be
        swapped in place; the step generator stops and a new one goes on from the written tokens."""
        import mlx.core as mx
        from mlx_lm.generate import generate_step

        params = job.params
        limit = min(params.max_tokens - len(generated), self.n_ctx - len(job.prompt) - len(generated))
        if limit <= 0:
            return None
        steps = generate_step(mx.array(pending), self._model, max_tokens=limit, sampler=sampler,
                              prompt_cache=self._cache, logits_processors=[grammar] if grammar else [])
        try:
            for token, logprobs in steps:
                token = int(token)
                if budget and budget.reasoning and token in self._eos:
                    return self.close_reasoning_tokens(params)  # a turn cannot end inside its reasoning
                generated.append(token)
                job.sink(self._sampled(token, logprobs, params))
                if job.cancelled or token in self._eos:
                    return None
                if budget and budget.feed(self.token_bytes(token).decode("utf-8", "ignore")):
                    return self.close_reasoning_tokens(params)
            return None
        finally:
            steps.close()
            mx.synchronize()  # mlx-lm evaluates a step ahead: let that finish before the cache is trimmed
            self._note_cache(job.prompt + generated)

    def _sampled(self, token: int, logprobs: Any, params: SamplingParams) -> Sampled:
        if params.logprobs is None:
            return Sampled(token)
        import mlx.core as mx
        import numpy as np
        from mlx_lm.generate import generation_stream

        with mx.stream(generation_stream):  # the stream mlx-lm computed it on; another one aborts at exit
            values = np.array(logprobs.astype(mx.float32))
        top: tuple[TokenLogprob, ...] = ()
        if params.logprobs > 0:
            best = np.argpartition(values, -params.logprobs)[-params.logprobs:]
            best = best[np.argsort(values[best])[::-1]]
            top = tuple(TokenLogprob(int(t), float(values[t])) for t in best)
        return Sampled(token, float(values[token]), top)

    def _note_cache(self, known: list[int]) -> None:
        """mlx-lm computes one step ahead: the cache may hold a token that was never handed out; drop it."""
        from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

        held = self._cache[0].offset if self._cache else 0
        if held > len(known) and can_trim_prompt_cache(self._cache):
            trim_prompt_cache(self._cache, held - len(known))
            held = len(known)
        self._cache_tokens = known[:held]
