"""uvicorn's server with a graceful end for long streams."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from types import FrameType

import uvicorn


class GracefulServer(uvicorn.Server):
    """On SIGTERM/SIGINT uvicorn stops accepting and waits for running responses; here streams get `grace`
    seconds to finish, then `stopping` is set and they end with an in-stream error event. The models are
    freed in the lifespan shutdown, once every response is done."""

    def __init__(self, config: uvicorn.Config, stopping: asyncio.Event, grace: float,
                 on_ready: Callable[[int], None] | None = None) -> None:
        super().__init__(config)
        self._stopping = stopping
        self._grace = grace
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._on_ready is not None and self.servers:
            # The port bound, not the one asked for: `--port 0` picks one.
            self._on_ready(self.servers[0].sockets[0].getsockname()[1])

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            loop = asyncio.get_event_loop()
            loop.call_soon_threadsafe(loop.call_later, self._grace, self._stopping.set)
        super().handle_exit(sig, frame)
