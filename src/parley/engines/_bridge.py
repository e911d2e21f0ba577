"""The one place where the synchronous engine meets the event loop.

A runner owns one engine: requests are admitted into a bounded queue (529 beyond it), then take the
engine in turn. Generation runs on a worker thread and hands tokens to the loop; closing the token
stream cancels the thread before its next decode step, and the engine passes to the next request
only once that thread has really finished.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

from ..chat.params import SamplingParams
from ..errors import EngineError, OverloadedError, ParleyError
from .base import Engine

_DONE = object()


class EngineRunner:
    def __init__(self, engine: Engine, max_queue: int) -> None:
        self.engine = engine
        self._max_queue = max_queue
        self._turn = asyncio.Lock()
        self.admitted = 0  # waiting + running
        self.active_generations = 0  # worker threads alive (engine-side truth)
        self.tokens_generated = 0
        self._workers: dict[threading.Thread, threading.Event] = {}

    def close(self, timeout: float = 10.0) -> None:
        """Cancel running generations, wait for their threads, then free the model."""
        workers = list(self._workers.items())
        for _, cancelled in workers:
            cancelled.set()
        for thread, _ in workers:
            thread.join(timeout)
        if not any(thread.is_alive() for thread, _ in workers):
            self.engine.close()  # never free a model a thread may still be decoding with

    def admit(self) -> Admission:
        if self.admitted >= self._max_queue + 1:
            raise OverloadedError("Overloaded: too many requests are waiting for this model; retry shortly.")
        self.admitted += 1
        return Admission(self)


class Admission:
    """One request's place in a runner's queue; `tokens` may be iterated once."""

    def __init__(self, runner: EngineRunner) -> None:
        self._runner = runner
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._runner.admitted -= 1

    async def tokens(self, prompt: list[int], params: SamplingParams) -> AsyncIterator[int]:
        runner = self._runner
        try:
            await runner._turn.acquire()
        except BaseException:
            self.release()
            raise
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancelled = threading.Event()

        def finished() -> None:
            runner._workers.pop(worker, None)
            runner.active_generations -= 1
            runner._turn.release()
            self.release()

        def post(item: object) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone (shutdown): nobody is listening
                cancelled.set()

        def work() -> None:
            try:
                for token in runner.engine.generate(prompt, params, cancelled):
                    runner.tokens_generated += 1
                    post(token)
                post(_DONE)
            except BaseException as exc:  # handed to the consumer, re-raised there
                post(exc)
            finally:
                try:
                    loop.call_soon_threadsafe(finished)
                except RuntimeError:
                    pass

        runner.active_generations += 1
        worker = threading.Thread(target=work, name="parley-generate", daemon=True)
        runner._workers[worker] = cancelled
        worker.start()
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    return
                if isinstance(item, ParleyError):
                    raise item
                if isinstance(item, BaseException):
                    raise EngineError("generation failed") from item
                yield item  # type: ignore[misc]
        finally:
            cancelled.set()
