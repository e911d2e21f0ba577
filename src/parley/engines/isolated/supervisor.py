"""An engine whose model runs in a supervised child process.

The API process keeps the vocabulary (rendering, counting and detokenizing stay local) and forwards
generations over a pipe. When the child dies — a signal, an abort, the OOM killer — the generations that
had started end with `ModelCrashedError`, those still queued wait and run on a new child, and a request
that was in flight in two crashes is refused from then on (a poison request). A child whose memory passes
the RSS ceiling is replaced the same way, but between requests: new ones wait until the old child is idle.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import cached_property

import psutil

from ...core.params import SamplingParams
from ...errors import EngineError, ModelCrashedError, ParleyError
from ..base import Done, Sink, SpeaksThroughVocabulary, Started, Vocabulary
from .faults import Fault, find_fault
from .poison import CrashLedger, fingerprint
from .process import ModelProcess, describe_exit
from .spec import EngineSpec
from .wire import ACCEPTED, CHECKED, DONE, FAILED, SAMPLED, STARTED, STATS, decode_error, decode_sampled

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 600.0  # a check waits this long for a (re)starting child


class _Request:
    """A prompt and its constraints; hashed only when a crash or the poison rule needs it."""

    prompt: list[int]
    params: SamplingParams

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint(self.prompt, self.params)


@dataclass(eq=False)
class _Run(_Request):
    rid: int
    prompt: list[int]
    params: SamplingParams
    sink: Sink
    fault: Fault | None
    owner: IsolatedEngine
    sent: bool = False  # to the current child
    accepted: bool = False  # the child built its sampler and queued it
    started: bool = False  # in a slot: decoding

    @property
    def blamed(self) -> bool:
        """Could it have caused a crash of its child: running native code (decoding, or compiling its grammar)?
        A request waiting in the child's queue could not."""
        return self.started or not self.accepted

    def cancel(self) -> None:
        self.owner._cancel(self)

    def command(self) -> tuple:
        return ("submit", self.rid, self.prompt, self.params, self.fault)


@dataclass(eq=False)
class _Check(_Request):
    prompt: list[int]
    params: SamplingParams
    result: Future[None] = field(default_factory=Future)


class IsolatedEngine(SpeaksThroughVocabulary):
    """The Engine protocol, with the model in a child process (see the module's docstring)."""

    def __init__(self, spec: EngineSpec, vocab: Vocabulary | None = None, max_rss_mb: float = 0,
                 fault_injection: bool = False, name: str = "",
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        """`loop`: the event loop that reads the child's pipe (its sinks then run on that loop's thread);
        None: a reader thread per child."""
        self._spec = spec
        self._loop = loop
        self.features = spec.features
        self._name = name or spec.path.name
        self.vocab = vocab or spec.open_vocab()
        self._max_rss = int(max_rss_mb * 1024 * 1024)
        self._fault_injection = fault_injection
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._runs: dict[int, _Run] = {}  # not yet ended, whether sent to the child or held back
        self._checks: dict[int, _Check] = {}  # sent to the child, not yet answered
        self._ledger = CrashLedger()
        self._figures: dict[str, int | str] = {}  # the child's last engine stats
        self._accepting = threading.Event()  # the child takes new work (not starting, restarting, draining)
        self._recycling = False
        self._down: str | None = None  # why the last restart failed
        self._closing = False
        self.restarts = 0
        self.crashes = 0
        self._start()
        self.n_ctx = self._child.info["n_ctx"]
        self.n_slots = self._child.info["n_slots"]

    # ---- the Engine protocol (any thread)
    def check(self, prompt: list[int], params: SamplingParams) -> None:
        check, cid = _Check(prompt, params), next(self._ids)
        if self._ledger and (refusal := self._ledger.refusal(check.fingerprint)) is not None:
            log.warning("refused a request of %s (fingerprint %s): %s", self._name, check.fingerprint,
                        refusal.message)
            raise refusal
        deadline = time.monotonic() + CHECK_TIMEOUT
        revived = False
        while True:
            with self._lock:
                if self._closing:
                    raise EngineError("the model is being unloaded")
                if self._down is not None:
                    if revived:  # the restart this request asked for failed too
                        raise EngineError(f"the model process could not be restarted: {self._down}")
                    revived = self._revive()
                if self._accepting.is_set():
                    self._checks[cid] = check
                    self._child.send(("check", cid, prompt, params))
                    break
            if time.monotonic() > deadline:
                raise EngineError("the model process is not available")
            self._accepting.wait(1.0)  # a (re)starting or draining child
        check.result.result()

    def submit(self, prompt: list[int], params: SamplingParams, sink: Sink) -> _Run:
        run = _Run(next(self._ids), prompt, params, sink, self._fault(prompt), self)
        with self._lock:
            if self._closing:
                raise EngineError("the model is being unloaded")
            self._runs[run.rid] = run
            if self._accepting.is_set():
                run.sent = True
                self._child.send(run.command())
            else:
                self._revive()  # held until a child takes it
        return run

    def stats(self) -> dict[str, int | str]:
        return {**self._figures, "pid": self._child.pid, "restarts": self.restarts, "crashes": self.crashes}

    def close(self) -> None:
        with self._lock:
            self._closing = True
            self._accepting.clear()
            child = self._child
        child.stop()
        if self._loop is not None and _on_loop(self._loop) and not child.eof:
            # (shutdown) the loop cannot read while it waits here: read what is left now
            self._loop.remove_reader(child.conn.fileno())
            self._read(child)
        child.read_done.wait(10)
        if (close_vocab := getattr(self.vocab, "close", None)) is not None:
            close_vocab()

    # ---- internals
    def _revive(self) -> bool:
        """(under the lock) After a failed restart, the next request tries again."""
        if self._down is None or self._closing:
            return False
        self._down = None
        threading.Thread(target=self._restart, name="parley-model-restart", daemon=True).start()
        return True

    def _fault(self, prompt: list[int]) -> Fault | None:
        if not self._fault_injection:
            return None
        return find_fault(b"".join(self.token_bytes(t) for t in prompt))

    def _start(self) -> None:
        child = ModelProcess(self._spec)
        child.wait_ready()
        with self._lock:
            self._attach(child)

    def _attach(self, child: ModelProcess) -> None:
        """(under the lock) A loaded child takes over: read from it, send it what was held, accept new work."""
        self._child, self._figures = child, child.info["stats"]
        try:
            watching = self._loop is not None and self._loop.call_soon_threadsafe(self._watch, child) is not None
        except RuntimeError:  # the loop is closed
            watching = False
        if not watching:
            threading.Thread(target=self._read, args=(child,), name="parley-model-read", daemon=True).start()
        for run in self._runs.values():  # held while there was no child, in arrival order
            run.sent = True
            child.send(run.command())
        self._accepting.set()
        log.info("model %s runs in process %d%s", self._name, child.pid,
                 f" (restart {self.restarts})" if self.restarts else "")

    def _cancel(self, run: _Run) -> None:
        with self._lock:
            held = run.rid in self._runs and not run.sent
            if held:
                del self._runs[run.rid]
            elif run.rid in self._runs:
                self._child.send(("cancel", run.rid))
        if held:
            run.sink(Done())

    def _read(self, child: ModelProcess) -> None:
        """The reader thread of one child: dispatches its messages until it exits, then handles the exit."""
        try:
            while True:
                self._dispatch(child.conn.recv())
        except (EOFError, OSError):
            child.eof = True
        self._handle_exit(child)

    def _watch(self, child: ModelProcess) -> None:
        """(on the loop) Read the child's pipe from the event loop: a token then costs the API process no
        thread wake-up and no hand-over to the loop."""
        self._loop.add_reader(child.conn.fileno(), self._readable, child)  # type: ignore[union-attr]

    def _readable(self, child: ModelProcess) -> None:
        conn = child.conn
        try:  # one message a call (the loop calls again while more is there): polling for more costs more
            self._dispatch(conn.recv())  # the child writes a message whole: this does not wait
        except (EOFError, OSError):
            child.eof = True
            self._loop.remove_reader(conn.fileno())  # type: ignore[union-attr]
            threading.Thread(target=self._handle_exit, args=(child,), name="parley-model-exit", daemon=True).start()

    def _handle_exit(self, child: ModelProcess) -> None:
        child.process.join(10)
        try:
            self._exited(child)
        finally:
            child.read_done.set()

    def _dispatch(self, batch: list[tuple]) -> None:
        settled = False  # a generation ended or a check was answered: the child may be idle
        for entry in batch:
            kind = entry[0]
            if kind == SAMPLED:
                run = self._runs.get(entry[1])
                if run is not None:
                    run.sink(decode_sampled(entry))
            elif kind == STARTED:
                run = self._runs.get(entry[1])
                if run is not None:
                    run.started = run.accepted = True
                    run.sink(Started(entry[2]))
            elif kind == ACCEPTED:
                run = self._runs.get(entry[1])
                if run is not None:
                    run.accepted = True
            elif kind == DONE or kind == FAILED:
                with self._lock:
                    run = self._runs.pop(entry[1], None)
                if run is not None:
                    run.sink(Done() if kind == DONE else decode_error(entry[2]))
                settled = True
            elif kind == CHECKED:
                with self._lock:
                    check = self._checks.pop(entry[1], None)
                if check is not None:
                    if entry[2] is None:
                        check.result.set_result(None)
                    else:
                        check.result.set_exception(decode_error(entry[2]))
                settled = True
            elif kind == STATS:
                self._figures = entry[1]
        if settled and self._max_rss:
            self._recycle_if_large()

    # ---- memory ceiling
    def _recycle_if_large(self) -> None:
        with self._lock:
            if self._recycling or self._closing:
                self._drained()
                return
            try:
                rss = psutil.Process(self._child.pid).memory_info().rss
            except psutil.Error:
                return
            if rss <= self._max_rss:
                return
            log.info("model process of %s uses %.0f MB > %.0f MB: replacing it once its requests end",
                     self._name, rss / 2**20, self._max_rss / 2**20)
            self._recycling = True
            self._accepting.clear()  # new requests wait for the new process
            self._drained()

    def _drained(self) -> None:
        """(under the lock) Once nothing runs in a child being replaced, close it: its reader restarts it."""
        if (self._recycling and not self._child.planned_exit and not self._checks
                and not any(r.sent for r in self._runs.values())):
            self._child.planned_exit = True
            self._child.send(("close",))

    # ---- the child's end
    def _exited(self, child: ModelProcess) -> None:
        with self._lock:
            self._accepting.clear()
            if self._closing:
                leftover, self._runs = list(self._runs.values()), {}
                checks, self._checks = list(self._checks.values()), {}
            else:
                leftover, checks = [], []
        if self._closing:  # unloaded: what was still there ends as a cancelled generation would
            for run in leftover:
                run.sink(Done())
            for check in checks:
                check.result.set_exception(EngineError("the model was unloaded"))
            return
        if not child.planned_exit:
            self._fail_in_flight(describe_exit(child.process.exitcode), child.pid)
        self._restart()

    def _fail_in_flight(self, why: str, pid: int) -> None:
        error = ModelCrashedError(f"the model process crashed ({why}) and is restarting; retry the request")
        failed: list[tuple[_Run, ParleyError]] = []
        with self._lock:
            self.crashes += 1
            victims = [r for r in self._runs.values() if r.sent]
            checks, self._checks = list(self._checks.values()), {}
            self._ledger.record([r.fingerprint for r in victims if r.blamed] + [c.fingerprint for c in checks])
            for run in victims:
                run.sent = run.accepted = False
                if run.started:
                    failed.append((run, error))
                elif (refusal := self._ledger.refusal(run.fingerprint)) is not None:
                    failed.append((run, refusal))
            for run, _ in failed:
                del self._runs[run.rid]
        log.error("the model process of %s (pid %d) %s with %d generations in flight (%d failed, the rest "
                  "wait); restarting it", self._name, pid, why, len(victims) + len(checks), len(failed) + len(checks))
        for run, exc in failed:
            run.sink(exc)
        for check in checks:
            check.result.set_exception(error)

    def _restart(self) -> None:
        try:
            child = ModelProcess(self._spec)
            child.wait_ready()
        except Exception as exc:  # the model no longer loads (file gone, memory): its requests fail, not hang
            why = exc.message if isinstance(exc, ParleyError) else str(exc)
            log.error("the model process of %s could not be restarted: %s", self._name, why)
            with self._lock:
                held, self._runs = list(self._runs.values()), {}
                self._down = why
            for run in held:
                run.sink(EngineError(f"the model process could not be restarted: {why}"))
            return
        with self._lock:
            if self._closing:
                child.stop()
                return
            self.restarts += 1
            self._recycling = False
            self._attach(child)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
