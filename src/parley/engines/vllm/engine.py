"""vLLM engine: Hugging Face model directories through vLLM's AsyncLLM (the v1 engine), in-process.

AsyncLLM runs on its own asyncio loop in a background thread (loop.py); its engine core is vLLM's own child
process, so vLLM isolates its model itself. Prompts go in as token ids rendered by parley's templates; tokens
stream back as deltas and are handed to the sink from the loop's thread. vLLM batches and caches prefixes
itself: `Started` carries its per-request cached-token count.

The thinking budget is kept here, not in vLLM (whose `thinking_token_budget` needs an engine-wide reasoning
parser and forces a single end token): once the budget is spent, or the model would end its turn inside its
reasoning, the request is aborted, the tokens of `close_text` are handed out as if sampled, and the generation
goes on as a new request over prompt + output so far, which the prefix cache makes cheap. The same
continuation keeps `max_tokens` and the context end exact across segments.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...core.params import SamplingParams
from ...core.thinking import BudgetTracker
from ...errors import EngineError, InvalidRequestError, ModelCrashedError
from ..base import Done, Generation, Sampled, Sink, SpeaksThroughVocabulary, Started, TokenLogprob
from ..features import EngineFeatures
from .grammar import PROCESSOR
from .loop import LoopThread
from .params import check_grammar, to_vllm
from .vocab import VllmVocab, vllm_available

_ids = itertools.count()
log = logging.getLogger(__name__)


@dataclass(eq=False)  # kept in a set: by identity
class _Job:
    prompt: list[int]
    params: SamplingParams
    sink: Sink
    loop: asyncio.AbstractEventLoop
    cancelled: bool = False
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def cancel(self) -> None:
        self.cancelled = True
        self.loop.call_soon_threadsafe(self._cancel_task)

    def _cancel_task(self) -> None:
        if self.task is not None:
            self.task.cancel()


def engine_args(path: Path, n_ctx: int, max_num_seqs: int, vllm_args: dict[str, Any] | None) -> Any:
    """AsyncEngineArgs for this model: parley's defaults, then the user's `vllm_args` unchanged on top."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.platforms import current_platform

    args: dict[str, Any] = {"model": str(path), "tokenizer": str(path), "max_model_len": n_ctx,
                            "max_num_seqs": max_num_seqs, "enable_prefix_caching": True,
                            "logits_processors": [PROCESSOR]}
    user = vllm_args or {}
    if current_platform.is_cpu():  # no CUDA graphs here; bf16 halves the weights' memory traffic
        # Prefixes are cached in whole blocks: vLLM's CPU default of 128 tokens would miss most shared prompts.
        args.update(dtype="bfloat16", enforce_eager=True, block_size=32)
        # On CPU vLLM reserves gpu_memory_utilization (0.92) of all RAM unless told the KV cache size.
        if not {"kv_cache_memory_bytes", "gpu_memory_utilization"} & set(user) and \
                "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
            args["kv_cache_memory_bytes"] = _kv_bytes(path, n_ctx, max_num_seqs)
    args.update(user)
    if PROCESSOR not in args["logits_processors"]:  # the user's own processors join parley's, not replace it
        args["logits_processors"] = [*args["logits_processors"], PROCESSOR]
    return AsyncEngineArgs(**args)


def _kv_bytes(path: Path, n_ctx: int, max_num_seqs: int) -> int:
    """A KV cache for `max_num_seqs` full contexts in bf16 (at most 8 GiB, at least 256 MiB)."""
    config = json.loads((path / "config.json").read_text())
    config = config.get("text_config", config)
    heads = config.get("num_attention_heads", 1)
    head_dim = config.get("head_dim") or config.get("hidden_size", 4096) // heads
    per_token = 2 * 2 * config.get("num_hidden_layers", 32) * config.get("num_key_value_heads", heads) * head_dim
    return max(256 << 20, min(8 << 30, per_token * n_ctx * max_num_seqs))


class VllmEngine(SpeaksThroughVocabulary):
    features = EngineFeatures(forced_reasoning_close=True, lazy_grammar=True, logprobs=True, batching=True)

    def __init__(self, path: Path, n_ctx: int, max_num_seqs: int = 8, vllm_args: dict[str, Any] | None = None,
                 min_p: float = 0.05) -> None:
        if (reason := vllm_available()) is not None:
            raise InvalidRequestError(reason)
        self.vocab = VllmVocab(path)
        trained = self.vocab.n_ctx_train
        n_ctx = min(n_ctx, trained) if isinstance(trained, int) and trained > 0 else n_ctx
        self._loop = LoopThread()
        self._args = engine_args(path, n_ctx, max_num_seqs, vllm_args)
        self._restarted: asyncio.Future[None] | None = None  # a restart in progress, on the loop
        self.restarts = self.crashes = 0
        try:
            self._llm = self._loop.call(self._start(self._args))
        except Exception as exc:
            self._loop.stop()
            raise InvalidRequestError(f"vLLM could not load model '{path.name}': {exc}") from exc
        self.n_ctx = int(self._llm.model_config.max_model_len)
        self.n_slots = int(self._llm.vllm_config.scheduler_config.max_num_seqs)
        self._min_p = min_p
        self._jobs: set[_Job] = set()
        self._lock = threading.Lock()
        self._closing = False

    @staticmethod
    async def _start(args: Any) -> Any:
        from vllm.v1.engine.async_llm import AsyncLLM

        return AsyncLLM.from_engine_args(args)

    def check(self, prompt: list[int], params: SamplingParams) -> None:
        if params.grammar is not None:
            check_grammar(params.grammar)

    def submit(self, prompt: list[int], params: SamplingParams, sink: Sink) -> Generation:
        job = _Job(prompt, params, sink, self._loop.loop)
        with self._lock:
            if self._closing:
                raise EngineError("the model is being unloaded")
            self._jobs.add(job)
        self._loop.spawn(self._start_job(job))
        return job

    async def _start_job(self, job: _Job) -> None:
        job.task = asyncio.current_task()
        try:
            if self._restarted is not None:  # queued behind a restart: runs on the new engine core
                await asyncio.shield(self._restarted)
            if not job.cancelled:
                await self._drive(job)
            job.sink(Done())
        except asyncio.CancelledError:  # Generation.cancel: vLLM aborted the request as the stream closed
            job.sink(Done())
        except Exception as exc:  # handed to the request, which reports it
            job.sink(self._engine_died() if _engine_dead(exc) else _parley_error(exc))
        finally:
            with self._lock:
                self._jobs.discard(job)

    async def _drive(self, job: _Job) -> None:
        """One generation, as one vLLM request or (after a forced close of the reasoning) several."""
        from vllm.inputs import TokensPrompt

        params, sink = job.params, job.sink
        budget = BudgetTracker(params.reasoning_budget) if params.reasoning_budget else None
        tokens, produced, started = list(job.prompt), 0, False
        while not job.cancelled:
            limit = min(params.max_tokens - produced, self.n_ctx - len(tokens))
            if limit <= 0:
                if not started:
                    sink(Started(cached_tokens=0))
                return
            forced: list[int] | None = None
            request_id = f"parley-{next(_ids)}"
            stream = self._llm.generate(TokensPrompt(prompt_token_ids=tokens),
                                        to_vllm(params, limit, self.vocab.eos, self._min_p), request_id)
            try:
                async for out in stream:
                    if not started:
                        sink(Started(cached_tokens=int(out.num_cached_tokens or 0)))
                        started = True
                    completion = out.outputs[0]
                    for i, token in enumerate(completion.token_ids):
                        if job.cancelled:
                            return
                        if budget and budget.reasoning and self.is_end_of_generation(token):
                            forced = self.close_reasoning_tokens(params)  # a turn cannot end inside its reasoning
                            break
                        sink(_sampled(token, completion.logprobs[i] if completion.logprobs else None, params))
                        produced += 1
                        tokens.append(token)
                        if self.is_end_of_generation(token) or produced >= params.max_tokens:
                            return
                        if budget and budget.feed(self.token_bytes(token).decode("utf-8", "ignore")):
                            forced = self.close_reasoning_tokens(params)
                            break
                    if forced is not None:
                        break
            finally:
                await stream.aclose()  # aborts the vLLM request if it still runs
            if forced is None:
                return  # vLLM stopped: the length it was given (the context's end)
            for token in forced:
                sink(Sampled(token, 0.0 if params.logprobs is not None else None))
                produced += 1
                tokens.append(token)
                budget.feed(self.token_bytes(token).decode("utf-8", "ignore"))  # type: ignore[union-attr]
                if produced >= params.max_tokens:
                    return

    def _engine_died(self) -> ModelCrashedError:
        """vLLM's engine core (its own process) is gone: as with parley's own model processes, the requests
        in flight end with a crash error, and the core is started again while new requests wait for it."""
        self.crashes += 1
        if self._restarted is None:
            self._restarted = self._loop.loop.create_future()
            self._restarting = self._loop.loop.create_task(self._restart(self._restarted))  # held: not collected
        return ModelCrashedError("the model process crashed (vLLM's engine core died) and is restarting; "
                                 "retry the request")

    async def _restart(self, done: asyncio.Future[None]) -> None:
        log.warning("vLLM's engine core died; starting it again")
        old, self._llm = self._llm, None
        try:
            await asyncio.to_thread(old.shutdown)
        except Exception:  # it is dead already
            log.debug("shutting the dead vLLM engine down failed", exc_info=True)
        try:
            self._llm = await self._start(self._args)
            self.restarts += 1
            done.set_result(None)
        except Exception as exc:
            log.exception("vLLM's engine core could not be restarted")
            done.set_exception(EngineError(f"the model could not be restarted: {exc}"))
            done.exception()  # retrieved here; the waiting requests get it too
        finally:
            self._restarted = None

    def stats(self) -> dict[str, int]:
        busy = len(self._jobs)
        return {"slots": self.n_slots, "busy_slots": min(busy, self.n_slots),
                "waiting": max(0, busy - self.n_slots), "cached_tokens": 0, "cache_capacity": self.n_ctx,
                "restarts": self.restarts, "crashes": self.crashes}

    def close(self) -> None:
        """Cancel what runs, wait for the sinks to get Done, shut vLLM's engine core down."""
        with self._lock:
            self._closing = True
            jobs = list(self._jobs)
        for job in jobs:
            job.cancel()

        async def shutdown() -> None:
            for _ in range(300):
                if not self._jobs:
                    break
                await asyncio.sleep(0.1)
            if self._llm is not None:  # None: a restart failed
                self._llm.shutdown()
            self._llm = None  # collected now, not at interpreter exit (its __del__ shuts down again)

        try:
            self._loop.call(shutdown(), timeout=60)
        finally:
            self._loop.stop()


def _engine_dead(exc: BaseException) -> bool:
    from vllm.v1.engine.exceptions import EngineDeadError

    return isinstance(exc, EngineDeadError) or isinstance(exc.__cause__, EngineDeadError)


def _parley_error(exc: Exception) -> Exception:
    """vLLM's client errors (a request it will not run) are 400s; the rest are the engine's failures."""
    from vllm.exceptions import VLLMClientError

    if isinstance(exc, InvalidRequestError | EngineError):
        return exc
    if isinstance(exc, VLLMClientError):
        return InvalidRequestError(f"vLLM rejected the request: {exc}")
    return EngineError(f"vLLM failed: {exc}")


def _sampled(token: int, logprobs: Any, params: SamplingParams) -> Sampled:
    """vLLM's logprobs of one position: {token id: Logprob(logprob, rank, ...)} with the sampled token and the
    `n` most likely."""
    if params.logprobs is None or logprobs is None:
        return Sampled(token)
    chosen = logprobs.get(token)
    best = sorted(logprobs.items(), key=lambda kv: (kv[1].rank or 0, -kv[1].logprob))[: params.logprobs]
    return Sampled(token, float(chosen.logprob) if chosen is not None else None,
                   tuple(TokenLogprob(int(t), float(lp.logprob)) for t, lp in best))
