"""The one place where an engine's thread meets the event loop.

A runner owns one engine: requests are admitted up to the engine's slots plus a bounded queue (529
beyond it). An admitted request submits to the engine, whose thread hands items back to the loop;
closing the item stream cancels the generation before its next decode step.

Admissions made under `low_priority()` (the batch worker's) yield to interactive ones: they take a slot only
when more slots are free than interactive requests want, and an interactive submission that would have to wait
behind them preempts the most recent one (its items end with `Preempted`; the caller runs it again later).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from ..core.params import SamplingParams
from ..errors import EngineError, OverloadedError, ParleyError
from .base import Done, Engine, Generation, Item, Sampled, Started

# Read when a request is admitted; set by the batch worker for the task that runs one batch request.
_low_priority: ContextVar[bool] = ContextVar("parley_low_priority", default=False)


@contextmanager
def low_priority() -> Iterator[None]:
    """Admissions made inside (in this task and what it starts) give their slots up to interactive requests."""
    token = _low_priority.set(True)
    try:
        yield
    finally:
        _low_priority.reset(token)


class Preempted(Exception):  # noqa: N818 - a signal to the batch worker, not an error anyone reports
    """A low-priority generation gave its slot to an interactive request; nothing of it is kept."""


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
        self.low_admitted = 0  # of `admitted`, the low-priority ones (outside the queue bound)
        self.interactive_running = 0  # interactive generations submitted, not yet done
        self.preemptions = 0
        self._low_running: list[Admission] = []  # holding (or about to hold) a slot, in submission order
        self._changed = asyncio.Event()  # set, and replaced, whenever a slot may have freed

    def close(self) -> None:
        """Cancel running generations, wait for them, then free the model."""
        self.engine.close()

    def admit(self) -> Admission:
        low = _low_priority.get()
        if not low and self.admitted - self.low_admitted >= self._capacity:
            raise OverloadedError("Overloaded: too many requests are waiting for this model; retry shortly.")
        self.admitted += 1
        self.low_admitted += low
        return Admission(self, low)

    # ---- priorities (all on the event loop)
    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _low_may_start(self) -> bool:
        """A slot is free beyond what the interactive requests admitted now (waiting or running) want."""
        interactive = self.admitted - self.low_admitted
        return interactive + len(self._low_running) < self.engine.n_slots

    async def _wait_for_low_slot(self) -> None:
        while not self._low_may_start():
            await self._changed.wait()

    def _make_room(self) -> None:
        """An interactive generation was submitted: preempt the newest low-priority ones it would wait behind."""
        while self._low_running and self.interactive_running + len(self._low_running) > self.engine.n_slots:
            self._low_running.pop()._preempt()
            self.preemptions += 1

    def health(self) -> dict[str, Any]:
        offered = self.engine.features
        features = [f.name for f in dataclasses.fields(offered) if getattr(offered, f.name)]
        return {"engine": self.engine_name, "features": features, "active_generations": self.active_generations,
                "admitted": self.admitted, "batch_admitted": self.low_admitted, "preemptions": self.preemptions,
                "tokens_generated": self.tokens_generated, **self.engine.stats()}


class Admission:
    """One request's place in a runner; `items` may be iterated once."""

    def __init__(self, runner: EngineRunner, low_priority: bool = False) -> None:
        self._runner = runner
        self._released = False
        self.low_priority = low_priority
        self._generation: Generation | None = None
        self._preempted = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._runner.admitted -= 1
            self._runner.low_admitted -= self.low_priority
            self._runner._notify()

    def _preempt(self) -> None:
        self._preempted = True
        if self._generation is not None:
            self._generation.cancel()

    async def items(self, prompt: list[int], params: SamplingParams) -> AsyncIterator[Started | Sampled]:
        runner = self._runner
        loop, loop_thread = asyncio.get_running_loop(), threading.get_ident()
        queue: asyncio.Queue[Item] = asyncio.Queue()

        def ended() -> None:
            runner.active_generations -= 1
            if self.low_priority:
                if self in runner._low_running:
                    runner._low_running.remove(self)
            else:
                runner.interactive_running -= 1
            runner._notify()

        def sink(item: Item) -> None:  # on the engine's thread, or on the loop (an engine that reads there)
            if isinstance(item, Sampled):
                runner.tokens_generated += 1
            call = _call_now if threading.get_ident() == loop_thread else loop.call_soon_threadsafe
            try:
                call(queue.put_nowait, item)
                if isinstance(item, Done | BaseException):
                    call(ended)
            except RuntimeError:  # the loop is gone (shutdown): closing the engine cancels the rest
                pass

        if self.low_priority:
            await runner._wait_for_low_slot()
            runner._low_running.append(self)
        else:
            runner.interactive_running += 1
        runner.active_generations += 1
        submitted = time.monotonic()
        try:
            generation = self._generation = runner.engine.submit(prompt, params, sink)
        except BaseException:
            ended()
            raise
        if not self.low_priority:
            runner._make_room()
        cached = produced = 0
        first = last = 0.0
        try:
            while True:
                item = await queue.get()
                if isinstance(item, Done):
                    if self._preempted:
                        raise Preempted()
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


def _call_now(fn: Callable[..., object], *args: object) -> None:
    fn(*args)
