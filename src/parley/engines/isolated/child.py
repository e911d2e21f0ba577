"""The model's child process: builds the engine, runs commands from the API process, and sends back what
the engine produced in batches of whatever is ready (one pipe message per decode step, not per token)."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from ..base import Done, Generation, Item, Sampled, Sink
from .faults import Fault, crash
from .spec import EngineSpec
from .wire import ACCEPTED, CHECKED, DONE, FAILED, READY, STARTED, STATS, encode_error, encode_item

_SENT = object()  # a marker in the writer's queue: what came before it is sent
STATS_EVERY = 0.25  # seconds between engine figures sent while streams run (always sent when one starts or ends)


class Outbox:
    """What goes to the API process. Entries the engine hands over in a burst (one decode step of every
    stream) are held and sent as one message by the engine's own thread when the burst ends, just before its
    next decode; anything else goes through a writer thread. Waking that thread for every token cost the
    model a tenth of a millisecond per token on a 2-core machine, where any extra runnable thread preempts
    one of the decode's."""

    def __init__(self, conn: Connection, stats: Callable[[], dict[str, int]]) -> None:
        self._conn = conn
        self._stats = stats
        self._send_lock = threading.Lock()  # one message at a time on the pipe
        self._last_stats = 0.0
        self._burst_thread: int | None = None  # the engine's delivering thread, once it flushed a burst
        self._held: list[tuple] = []  # this burst's entries (touched by that thread only)
        self._queue: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="parley-outbox", daemon=True)
        self._thread.start()

    def put(self, entry: tuple) -> None:
        if threading.get_ident() == self._burst_thread:
            self._held.append(entry)
        else:
            self._queue.put(entry)

    def flush(self) -> None:
        """The end of a burst (the engine's `after_delivery`)."""
        if self._burst_thread is None:
            # This first burst went through the writer thread: wait until it is sent, so that the next one,
            # sent from here, cannot overtake it.
            sent = threading.Event()
            self._queue.put((_SENT, sent))
            while not sent.wait(0.5) and self._thread.is_alive():
                pass  # (a writer that found the pipe closed has stopped)
            self._burst_thread = threading.get_ident()
            return
        batch, self._held = self._held, []
        if batch:
            self._send(batch)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(10)

    def _run(self) -> None:
        closing = False
        while not closing:
            batch: list[tuple] = []
            entry = self._queue.get()
            while entry is not None:
                if entry[0] is _SENT:
                    if batch and not self._send(batch):
                        return
                    batch = []
                    entry[1].set()
                else:
                    batch.append(entry)
                try:
                    entry = self._queue.get_nowait()
                except queue.Empty:
                    break
            closing = entry is None
            if (batch or closing) and not self._send(batch, force_stats=closing):
                return

    def _send(self, batch: list[tuple], force_stats: bool = False) -> bool:
        with self._send_lock:
            now = time.monotonic()
            if force_stats or now - self._last_stats >= STATS_EVERY or any(
                    e[0] in (STARTED, DONE, FAILED) for e in batch):
                batch.append((STATS, self._stats()))
                self._last_stats = now
            try:
                self._conn.send(batch)
            except OSError:  # the API process is gone
                return False
        return True


class Runs:
    """Generations in this process by request id, so that a cancel finds its run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, Generation] = {}
        self._ended: set[int] = set()  # ended before `submit` returned its handle

    def add(self, rid: int, generation: Generation) -> None:
        with self._lock:
            if rid in self._ended:
                self._ended.discard(rid)
            else:
                self._running[rid] = generation

    def ended(self, rid: int) -> None:
        with self._lock:
            if self._running.pop(rid, None) is None:
                self._ended.add(rid)

    def get(self, rid: int) -> Generation | None:
        return self._running.get(rid)


def _sink(rid: int, outbox: Outbox, runs: Runs, fault: Fault | None) -> Sink:
    sampled = 0

    def sink(item: Item) -> None:
        nonlocal sampled
        if fault is not None and isinstance(item, Sampled):
            sampled += 1
            if sampled >= fault.step:
                crash(fault)
        if isinstance(item, Done | BaseException):
            runs.ended(rid)
        outbox.put(encode_item(rid, item))

    return sink


def serve(spec: EngineSpec, commands: Connection, conn: Connection) -> None:
    """The child's main: runs `commands` until the API process says close or goes away; sends on `conn`."""
    if hasattr(os, "setpgrp"):  # a terminal's Ctrl-C is for the API process, which closes this one on shutdown
        os.setpgrp()
    logging.basicConfig(level=spec.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s [model pid %(process)d] %(message)s")
    try:
        engine = spec.open_engine()
    except BaseException as exc:  # reported to the API process, which raises it from the load
        conn.send([(READY, None, encode_error(exc))])
        return
    conn.send([(READY, {"n_ctx": engine.n_ctx, "n_slots": engine.n_slots, "stats": engine.stats()}, None)])
    outbox = Outbox(conn, engine.stats)
    if hasattr(engine, "after_delivery"):
        engine.after_delivery = outbox.flush
    runs = Runs()
    while True:
        try:
            command = commands.recv()
        except (EOFError, OSError):  # the API process is gone: nobody reads what this would produce
            break
        op = command[0]
        if op == "submit":
            _, rid, prompt, params, fault = command
            sink = _sink(rid, outbox, runs, fault)
            if fault is not None and fault.step == 0:
                crash(fault)
            try:
                runs.add(rid, engine.submit(prompt, params, sink))
                outbox.put((ACCEPTED, rid))  # past the native work of submitting (its grammar is compiled)
            except Exception as exc:
                sink(exc)
        elif op == "cancel":
            if (generation := runs.get(command[1])) is not None:
                generation.cancel()
        elif op == "check":
            _, cid, prompt, params = command
            try:
                engine.check(prompt, params)
                outbox.put((CHECKED, cid, None))
            except Exception as exc:
                outbox.put((CHECKED, cid, encode_error(exc)))
        elif op == "close":
            break
    engine.close()  # ends what still runs (each gets Done) before the last message goes out
    outbox.close()
