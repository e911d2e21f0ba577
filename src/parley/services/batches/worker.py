"""Runs stored batch requests on the engines, at low priority, through the `answer` callable it is given
(the API layer's: `/v1/messages`' own code and errors, so this service knows no wire format).

Up to `concurrency` requests are in flight (one per slot of a model); each runs in a task of its own under
`low_priority()`, so it takes a slot only when interactive requests leave one free and gives it back when one
arrives (`Preempted`: the request stays pending and runs again from the start). A result is
written in one transaction with the request's state; a request cut short by shutdown or a crash stays pending.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ...engines.runner import Preempted, low_priority
from ...errors import OverloadedError
from .store import CANCELED, BatchRow, BatchStore, PendingRequest

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 60.0  # expiry, retention and the data-dir lock are checked this often
OVERLOADED_RETRY_SECONDS = 1.0  # a batch request the server could not take now waits this long, then runs again

# One request's stored `params` → (outcome, result object). It raises Preempted when an interactive request took
# its slot and OverloadedError when the server could not take it now (the worker runs it again later); any other
# failure is the callable's to answer as an `errored` result.
Answer = Callable[[dict[str, Any]], Awaitable[tuple[str, dict[str, Any]]]]


@dataclass
class _Job:
    request: PendingRequest
    task: asyncio.Task[None] | None = None
    canceled: bool = False  # its batch is being canceled: end it as `canceled`


class BatchWorker:
    def __init__(self, store: BatchStore, answer: Answer, concurrency: int, retention_days: float) -> None:
        self._store = store
        self._answer = answer
        self._concurrency = max(1, concurrency)
        self._retention = retention_days * 86400.0
        self._jobs: dict[tuple[int, int], _Job] = {}
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._owner = False  # holds the data dir's lock: runs the batches
        self._told = False

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="parley-batches")

    async def stop(self) -> None:
        """Stop taking requests and abandon the running ones: they stay pending, to run after a restart."""
        tasks = [t for t in [self._loop_task, *(j.task for j in self._jobs.values())] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def wake(self) -> None:
        self._wake.set()

    async def cancel(self, batch_id: str) -> BatchRow | None:
        batch = await asyncio.to_thread(self._store.get, batch_id)
        if batch is None or batch.status != "in_progress":
            return batch
        running = [job for key, job in self._jobs.items() if key[0] == batch.seq]
        for job in running:
            job.canceled = True  # before the store call: a job that ends meanwhile still ends canceled
        batch = await asyncio.to_thread(self._store.begin_cancel, batch_id, [j.request.idx for j in running])
        # The flagged ones answer `canceled`; any taken meanwhile was canceled in the store and just stops.
        self._drop(batch.seq if batch else -1)
        return batch

    async def _run(self) -> None:
        last_housekeeping = -HOUSEKEEPING_SECONDS
        while True:
            self._wake.clear()
            if time.monotonic() - last_housekeeping >= HOUSEKEEPING_SECONDS:
                last_housekeeping = time.monotonic()
                await self._housekeep()
            if self._owner:
                try:
                    await self._fill()
                except Exception:  # as housekeeping: the next wake-up tries again
                    log.exception("could not take batch requests from the store")
            try:
                await asyncio.wait_for(self._wake.wait(), HOUSEKEEPING_SECONDS)
            except TimeoutError:
                pass

    async def _housekeep(self) -> None:
        try:
            if not self._owner:
                self._owner = await asyncio.to_thread(self._store.try_lock)
                if not self._owner:
                    if not self._told:
                        self._told = True
                        log.info("another parley process runs the batches in %s", self._store.path.parent)
                    return
            purged = await asyncio.to_thread(self._store.purge, time.time() - self._retention)
            if purged:
                log.info("removed %d batches past retention", purged)
            running: dict[int, list[int]] = {}
            for seq, idx in self._jobs:
                running.setdefault(seq, []).append(idx)
            for seq in await asyncio.to_thread(self._store.sweep, running):
                self._drop(seq)
        except Exception:  # a bad disk moment must not stop the worker; the next pass tries again
            log.exception("batch housekeeping failed")

    def _drop(self, batch_seq: int) -> None:
        """Stop a batch's running requests (it expired, or is being canceled)."""
        for key, job in list(self._jobs.items()):
            if key[0] == batch_seq and job.task is not None:
                job.task.cancel()

    async def _fill(self) -> None:
        free = self._concurrency - len(self._jobs)
        if free <= 0:
            return
        pending = await asyncio.to_thread(self._store.next_pending, free + len(self._jobs))
        for request in pending:
            if free <= 0:
                break
            if request.key in self._jobs:
                continue
            job = self._jobs[request.key] = _Job(request)
            job.task = asyncio.create_task(self._work(job))
            free -= 1

    async def _work(self, job: _Job) -> None:
        request = job.request
        try:
            outcome = await self._outcome(job)
            if outcome is not None:
                state, result = outcome
                text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False,
                                                                         separators=(",", ":"))
                # Shielded: once the answer exists it is written, whatever cancels this task meanwhile.
                await asyncio.shield(asyncio.to_thread(self._store.finish, request.batch_seq, request.idx,
                                                       state, text))
        except asyncio.CancelledError:
            pass  # shutdown, or its batch ended meanwhile: nothing of it is kept
        except Exception:
            log.exception("batch request %s/%s could not be stored", request.batch_seq, request.idx)
        finally:
            self._jobs.pop(request.key, None)
            self._wake.set()

    async def _outcome(self, job: _Job) -> tuple[str, dict[str, Any] | str] | None:
        """None: leave the request pending, to run again."""
        try:
            with low_priority():
                return await self._answer(json.loads(job.request.params))
        except Preempted:
            return ("canceled", CANCELED) if job.canceled else None
        except OverloadedError:
            await asyncio.sleep(OVERLOADED_RETRY_SECONDS)
            return ("canceled", CANCELED) if job.canceled else None
        except asyncio.CancelledError:
            if job.canceled:
                return "canceled", CANCELED
            raise
