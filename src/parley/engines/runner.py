"""The one place where an engine's thread meets the event loop.

A runner owns one engine: requests are admitted up to the engine's slots plus a bounded queue (529
beyond it). An admitted request submits to the engine, whose thread hands items back to the loop;
closing the item stream cancels the generation before its next decode step.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from ..core.params import SamplingParams
from ..errors import EngineError, OverloadedError, ParleyError
from .base import Done, Engine, Item, Sampled, Started


@dataclass(frozen=True)
class GenerationStats:
    prompt_tokens: int
    cached_tokens: int
    output_tokens: int
    ttft: float | None  # seconds from submission to the first token
    decode_tok_s: float | None  # after the first token


class EngineRunner:
    def __init__(self, engine: Engine, max_queue: int,
                 on_generation: Callable[[GenerationStats], None] | None = None, engine_name: str = "") -> None:
        self.engine = engine
        self.engine_name = engine_name
        self._on_generation = on_generation
        self._capacity = engine.n_slots + max_queue
        self.admitted = 0  # waiting + running, as the server counts them
        self.active_generations = 0  # submitted and not yet reported done by the engine (engine-side truth)
        self.tokens_generated = 0

    def close(self) -> None:
        """Cancel running generations, wait for them, then free the model."""
        self.engine.close()

    def admit(self) -> Admission:
        if self.admitted >= self._capacity:
            raise OverloadedError("Overloaded: too many requests are waiting for this model; retry shortly.")
        self.admitted += 1
        return Admission(self)

    def health(self) -> dict[str, Any]:
        offered = self.engine.features
        features = [f.name for f in dataclasses.fields(offered) if getattr(offered, f.name)]
        return {"engine": self.engine_name, "features": features, "active_generations": self.active_generations,
                "admitted": self.admitted, "tokens_generated": self.tokens_generated, **self.engine.stats()}


class Admission:
    """One request's place in a runner; `items` may be iterated once."""

    def __init__(self, runner: EngineRunner) -> None:
        self._runner = runner
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._runner.admitted -= 1

    async def items(self, prompt: list[int], params: SamplingParams) -> AsyncIterator[Started | Sampled]:
        runner = self._runner
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Item] = asyncio.Queue()

        def ended() -> None:
            runner.active_generations -= 1

        def sink(item: Item) -> None:  # on the engine's thread
            if isinstance(item, Sampled):
                runner.tokens_generated += 1
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
                if isinstance(item, Done | BaseException):
                    loop.call_soon_threadsafe(ended)
            except RuntimeError:  # the loop is gone (shutdown): closing the engine cancels the rest
                pass

        runner.active_generations += 1
        submitted = time.monotonic()
        try:
            generation = runner.engine.submit(prompt, params, sink)
        except BaseException:
            runner.active_generations -= 1
            raise
        cached = produced = 0
        first = last = 0.0
        try:
            while True:
                item = await queue.get()
                if isinstance(item, Done):
                    return
                if isinstance(item, ParleyError):
                    raise item
                if isinstance(item, BaseException):
                    raise EngineError("generation failed") from item
                if isinstance(item, Started):
                    cached = item.cached_tokens
                else:
                    produced += 1
                    last = time.monotonic()
                    first = first or last
                yield item
        finally:
            generation.cancel()
            if runner._on_generation is not None:
                runner._on_generation(GenerationStats(
                    len(prompt), cached, produced, first - submitted if produced else None,
                    (produced - 1) / (last - first) if produced > 1 and last > first else None))
