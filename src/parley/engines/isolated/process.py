"""One model's child process: started, awaited until its model has loaded, fed commands, stopped."""

from __future__ import annotations

import multiprocessing
import signal
import threading

from ...errors import EngineError
from . import child as child_main
from .spec import EngineSpec
from .wire import READY, decode_error

CLOSE_TIMEOUT = 35.0  # the child's own close waits up to 30 s for a decode step


def describe_exit(code: int | None) -> str:
    if code is None:
        return "stopped responding"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


class ModelProcess:
    """One process, its two pipes, and a sender thread (so that submitting never blocks the caller).

    One pipe each way, not one two-way socket pair: on a socket pair, every message this process read woke
    the child's command reader, asleep on the same socket, for nothing (a context switch per token, on a core
    a decode was using)."""

    def __init__(self, spec: EngineSpec) -> None:
        ctx = multiprocessing.get_context("spawn")  # the API process has threads: never fork it
        commands_in, self.commands = ctx.Pipe(duplex=False)
        self.conn, results_out = ctx.Pipe(duplex=False)  # what the child sends: read here
        self.process = ctx.Process(target=child_main.serve, args=(spec, commands_in, results_out),
                                   name="parley-model", daemon=True)
        self.process.start()
        commands_in.close()  # the child's ends live only in the child: its death is an EOF here
        results_out.close()
        self.planned_exit = False
        self.eof = False  # its reader saw the pipe close
        self.read_done = threading.Event()  # and its exit was handled
        self.info: dict = {}
        self._queue: list[tuple] = []
        self._cond = threading.Condition()

    def wait_ready(self) -> dict:
        try:
            message = self.conn.recv()
        except (EOFError, OSError):
            self.process.join(5)
            raise EngineError(f"the model process {describe_exit(self.process.exitcode)} while loading") from None
        _, info, error = message[0]
        assert message[0][0] == READY
        if error is not None:
            self.process.join(5)
            raise decode_error(error)
        self.info = info
        threading.Thread(target=self._send_loop, name="parley-model-send", daemon=True).start()
        return info

    @property
    def pid(self) -> int:
        return self.process.pid or 0

    def send(self, command: tuple) -> None:
        with self._cond:
            self._queue.append(command)
            self._cond.notify()

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                commands, self._queue = self._queue, []
            for command in commands:
                try:
                    self.commands.send(command)
                except OSError:  # the child is gone; the reader handles that
                    return
                if command[0] == "close":
                    return

    def stop(self, timeout: float = CLOSE_TIMEOUT) -> None:
        self.planned_exit = True
        self.send(("close",))
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
