"""Server-sent events: byte encoding, keep-alive heartbeats, and a response that stops on disconnect."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from typing import Any, TypeVar

import anyio
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ..errors import ClientGoneError, OverloadedError, RequestTimeoutError
from ..services import services

T = TypeVar("T")


def sse_event(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


def request_guard(request: Request) -> Guard:
    """The guard of a request that starts now, under the app's settings."""
    svc = services(request)
    return Guard(time.monotonic() + svc.settings.request_timeout, svc.stopping)


class Guard:
    """What may end a response early: the request's wall-clock deadline, or the server shutting down."""

    TIMED_OUT = "The request ran past the server's time limit (PARLEY_REQUEST_TIMEOUT)."

    def __init__(self, deadline: float, stopping: asyncio.Event | None = None) -> None:
        self.deadline = deadline  # time.monotonic()
        self.stopping = stopping

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def check(self) -> None:
        if self.stopping is not None and self.stopping.is_set():
            raise OverloadedError("The server is shutting down; retry the request.")
        if self.left() <= 0:
            raise RequestTimeoutError(self.TIMED_OUT)


class _Raised:
    """An exception the source raised, carried across the queue to the consumer."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()  # the source is exhausted
_STOP = object()  # the server is stopping


async def with_heartbeat(source: AsyncIterator[T], interval: float, guard: Guard | None = None
                         ) -> AsyncIterator[T | None]:
    """Yield `source`'s items, and None whenever it stays silent for `interval` seconds; raise when the
    guard's deadline passes or the server stops.

    One pump task drains the source into a queue, so that waiting for the next item under a timeout never
    cancels the source itself. (A task and an `asyncio.wait` per item, as before, cost the API process
    more CPU per streamed token than all the rest of the SSE path.)"""
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for item in source:
                queue.put_nowait(item)
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # noqa: BLE001 - re-raised by the consumer
            queue.put_nowait(_Raised(error))
        else:
            queue.put_nowait(_END)

    async def watch_stopping(stopping: asyncio.Event) -> None:
        await stopping.wait()
        queue.put_nowait(_STOP)

    helpers = [asyncio.ensure_future(pump())]
    if guard and guard.stopping:
        helpers.append(asyncio.ensure_future(watch_stopping(guard.stopping)))
    try:
        while True:
            if guard:
                guard.check()
            timeout = interval if guard is None else max(0.0, min(interval, guard.left()))
            if queue.empty():
                try:
                    async with asyncio.timeout(timeout):
                        item = await queue.get()
                except TimeoutError:
                    if guard is None or guard.left() > 0:
                        yield None
                    continue
            else:
                item = queue.get_nowait()
            if item is _END:
                return
            if item is _STOP:
                continue  # guard.check() raises the shutdown error
            if isinstance(item, _Raised):
                raise item.error
            yield item
    finally:
        for helper in helpers:
            helper.cancel()
            with suppress(BaseException):
                await helper
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()


class EventStreamResponse(StreamingResponse):
    """Streams SSE and, whatever the ASGI version, races the body against `http.disconnect` so that
    a client that leaves cancels the stream (and with it the generation) at once."""

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[bytes], on_close: Callable[[], None] | None = None) -> None:
        headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        super().__init__(content, headers=headers, media_type=self.media_type)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as tg:

            async def run_and_cancel(func) -> None:
                await func()
                tg.cancel_scope.cancel()

            tg.start_soon(run_and_cancel, lambda: self.stream_response(send))
            try:
                await run_and_cancel(lambda: self.listen_for_disconnect(receive))
            finally:
                if self._on_close is not None:  # also when the body never started
                    self._on_close()


async def until_disconnected(receive: Receive, work: asyncio.Future[T] | Any, guard: Guard | None = None) -> T:
    """Await `work`, cancelling it if the client disconnects first (for non-streaming responses), or
    when the guard's deadline passes or the server stops (then raising the guard's error)."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watchers = {asyncio.ensure_future(watch())}
    if guard and guard.stopping:
        watchers.add(asyncio.ensure_future(guard.stopping.wait()))
    timed_out = False
    try:
        done, _ = await asyncio.wait({task, *watchers}, timeout=guard.left() if guard else None,
                                     return_when=asyncio.FIRST_COMPLETED)
        timed_out = not done
    finally:
        for watcher in watchers:
            watcher.cancel()
        if not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task  # the generation is stopped before anything else happens
            if guard:
                guard.check()
            if timed_out:  # uvloop may fire the deadline's timer a hair before the monotonic clock reaches it
                raise RequestTimeoutError(Guard.TIMED_OUT)
            raise ClientGoneError("The client closed the connection.")
    return await task
