"""Continuous batching: every active generation advances in the same `llama_decode` step.

One thread owns the llama.cpp context. Each step it puts, into one batch, the last sampled token of
every decoding sequence and then a chunk of each new prompt (small while others decode, so a long
prompt joining never stalls running streams for long); after the decode each sequence samples from its
own row with its own sampler (own grammar, own stop rules). Requests join and leave between steps; a
cancelled one is dropped before the next step and its slot — with the cache it built — is free at once.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

import llama_cpp
from llama_cpp._internals import LlamaBatch, LlamaContext

from ...core.params import SamplingParams
from ...core.thinking import BudgetTracker
from ...errors import EngineError
from ...grammar.threads import start_thread
from ..base import AfterDelivery, Done, Item, Sampled, Sink, Started
from .draft_cost import DraftCost
from .prefix_store import PrefixStore, Restored
from .prompt_lookup import PromptLookup
from .sampling import RequestSampler, logprobs
from .slot_cells import SlotCells
from .slots import Slot, SlotTable
from .states import SequenceStates


class DecodingModel(Protocol):
    """What the scheduler asks of its engine (`LlamaCppEngine`)."""

    n_ctx: int
    n_vocab: int
    after_delivery: AfterDelivery | None

    def close_reasoning_tokens(self, params: SamplingParams) -> list[int]: ...

    def is_end_of_generation(self, token: int) -> bool: ...

    def token_bytes(self, token: int) -> bytes: ...


NO_KV_ROOM = 1  # llama_decode's "could not find a KV slot": the cache is full; memory is left unchanged


class Request:
    """One generation: its prompt, its own sampler and stop state, and the slot it decodes in."""

    def __init__(self, prompt: list[int], params: SamplingParams, sink: Sink, sampler: RequestSampler,
                 wake: threading.Condition) -> None:
        self.prompt = prompt
        self.params = params
        self.sink = sink
        self.sampler = sampler
        self._wake = wake
        self.cancelled = False
        self.slot: Slot | None = None
        self.prefilled = 0  # prompt tokens in the cache
        self.pending: int | None = None  # sampled, not yet decoded
        self.produced = 0
        self.row = -1  # batch row to sample from after this step
        self.chunk: list[int] = []
        self.forced: list[int] = []  # tokens the server writes for the model (closing its reasoning)
        self.budget = BudgetTracker(params.reasoning_budget) if params.reasoning_budget else None
        self.restore: Future[Restored | None] | None = None  # a stored prefix being read from disk
        self.lookup: PromptLookup | None = None  # speculative drafts, when on

    def ready(self) -> bool:
        return self.restore is None or self.restore.done()

    def cancel(self) -> None:
        self.cancelled = True
        with self._wake:
            self._wake.notify()


def _can_join(request: Request) -> bool:
    return request.cancelled or request.ready()


# KV cells kept for each running generation's answer when another joins: past them, two long prompts that
# each fit the context but not together would fail at decode; a request that finds the cells taken waits.
ANSWER_RESERVE = 512


def _cells_needed(request: Request) -> int:
    """The cells `request` takes by the end of its prompt and its reserve of answer (or what it produced)."""
    return len(request.prompt) + max(request.produced + 1, min(request.params.max_tokens, ANSWER_RESERVE))


class BatchScheduler:
    def __init__(self, engine: DecodingModel, ctx: LlamaContext, n_slots: int, n_batch: int,
                 prefill_chunk: int, store: PrefixStore | None = None, draft_max: int = 0,
                 parked_bytes: int = 2 << 30) -> None:
        self._engine = engine
        self._draft_max = draft_max
        self._drafted = self._accepted = 0  # draft tokens verified, and taken
        self._draft_cost = DraftCost(draft_max)  # learned from this context's own steps
        self._ctx = ctx
        self._n_batch = n_batch
        self._prefill_chunk = max(1, min(prefill_chunk, n_batch))
        self._batch = LlamaBatch(n_tokens=n_batch, embd=0, n_seq_max=1, verbose=False)
        self.slots = SlotTable(n_slots, parked_bytes)
        self._store = store
        # with a store, the context has one sequence more than slots: the scratch one of snapshots
        states = SequenceStates(ctx, scratch=n_slots if store is not None else None)
        self._cells = SlotCells(ctx, self.slots, states, store)
        self._reader = ThreadPoolExecutor(1, "parley-prefix-read") if store is not None else None
        self._cond = threading.Condition()
        self._waiting: deque[Request] = deque()
        self._active: list[Request] = []  # in joining order; touched by the scheduler thread only
        # What the step produced, handed to the requests' sinks just before the next decode: a sink wakes
        # another thread, which takes the GIL at this thread's next ctypes call and holds it for its own
        # work; handed over while llama_decode runs (without the GIL) nobody waits for anybody.
        self._outgoing: list[tuple[Sink, Item]] = []
        self._closing = False
        self._thread = start_thread(self._run, "parley-batch")  # samples under grammars: a big stack

    # ---- any thread
    def submit(self, prompt: list[int], params: SamplingParams, sink: Sink, sampler: RequestSampler) -> Request:
        request = Request(prompt, params, sink, sampler, self._cond)
        if self._draft_max > 0:
            request.lookup = PromptLookup(prompt, self._draft_max, self._draft_cost)
        self._read_stored_prefix(request)
        with self._cond:
            if self._closing:
                raise EngineError("the model is being unloaded")
            self._waiting.append(request)
            self._cond.notify()
        return request

    def close(self, timeout: float = 30.0) -> bool:
        """Stop after the current step; True once the thread is gone and the context is unused."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        self._batch.close()
        if self._reader is not None:
            self._reader.shutdown(wait=True)
        return True

    def _read_stored_prefix(self, request: Request) -> None:
        """Start reading the longest stored prefix of the prompt from disk, when it is longer than any slot
        holds; the request joins once it is read (others go on meanwhile)."""
        if self._store is None or (match := self._store.longest(request.prompt)) is None:
            return
        if match.n_tokens > self.slots.held(request.prompt):
            request.restore = self._reader.submit(self._store.load, match, request.prompt)  # type: ignore[union-attr]
            request.restore.add_done_callback(lambda _: self._notify())

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify()

    def stats(self) -> dict[str, int]:
        return {"slots": len(self.slots.slots), "busy_slots": sum(s.busy for s in self.slots.slots),
                "waiting": len(self._waiting), "cached_tokens": self.slots.cached_tokens(),
                "parked_tokens": self.slots.parked.tokens(), "parked_bytes": self.slots.parked.nbytes(),
                "parks": self._cells.parks, "park_ms_max": round(self._cells.park_seconds_max * 1000),
                "cache_capacity": self._engine.n_ctx, "draft_tokens": self._drafted, "draft_accepted": self._accepted,
                **(self._store.stats() if self._store else {})}

    # ---- the scheduler thread
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closing and not self._active and not any(map(_can_join, self._waiting)):
                    self._cond.wait()
                if self._closing:
                    break
            self._drop_cancelled()  # first, so that a waiting request takes the slot a cancelled one held now
            with self._cond:
                joining = self._take_waiting()
            for request in joining:
                self._join(request)
            self._drop_cancelled()
            if self._active:
                self._step()
            self._deliver()
        with self._cond:
            leftover = list(self._waiting) + self._active
            self._waiting.clear()
        for request in leftover:
            self._finish(request, Done())
        self._deliver()

    def _deliver(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        for sink, item in outgoing:
            sink(item)
        if outgoing and (after := self._engine.after_delivery) is not None:
            after()

    def _drop_cancelled(self) -> None:
        for request in [r for r in self._active if r.cancelled]:
            self._finish(request, Done())

    def _take_waiting(self) -> list[Request]:
        free = sum(not s.busy for s in self.slots.slots)
        cells = self._engine.n_ctx - sum(map(_cells_needed, self._active))
        taken: list[Request] = []
        kept: deque[Request] = deque()
        blocked = False  # one whose KV cells are in use holds back those after it: no overtaking it
        for request in self._waiting:  # in order; one still reading its stored prefix lets others pass
            if request.cancelled:
                taken.append(request)
            elif blocked or not request.ready() or free == 0:
                kept.append(request)
            elif cells >= _cells_needed(request) or not (self._active or taken):
                taken.append(request)
                free -= 1
                cells -= _cells_needed(request)
            else:
                blocked = True
                kept.append(request)
        self._waiting = kept
        return taken

    def _join(self, request: Request) -> None:
        if request.cancelled:
            self._finish(request, Done())
            return
        placement = self.slots.place(request.prompt)
        assert placement is not None  # _take_waiting only takes what fits
        restored = request.restore.result() if request.restore is not None else None
        request.restore = None
        slot, reuse = placement.slot, self._cells.claim(placement, restored)
        del slot.tokens[reuse:]
        slot.busy = True
        slot.touch()
        request.slot, request.prefilled = slot, reuse
        self._active.append(request)
        self._outgoing.append((request.sink, Started(cached_tokens=reuse)))

    def _store_prefix(self, request: Request) -> None:
        """Hand the prompt's long prefix to the store (it writes on its own thread)."""
        n = self._store.worth_saving(request.prompt)  # type: ignore[union-attr]
        if n:
            state = self._cells.snapshot(request.slot, n)  # type: ignore[arg-type]
            if state is not None:
                self._store.save(request.prompt[:n], state)  # type: ignore[union-attr]

    def _finish(self, request: Request, item: Item) -> None:
        if request in self._active:
            self._active.remove(request)
        if request.slot is not None:
            request.slot.busy = False
            request.slot.touch()
            request.slot = None
        request.sampler.close()
        self._outgoing.append((request.sink, item))

    def _add(self, slot: Slot, tokens: list[int], logits: int) -> int:
        """Put `tokens` after what `slot` holds; the last `logits` of them get logits. Returns the batch row
        of the first token with logits (-1: none)."""
        batch = self._batch.batch
        start, pos = batch.n_tokens, len(slot.tokens)
        for i, token in enumerate(tokens):
            j = start + i
            batch.token[j] = token
            batch.pos[j] = pos + i
            batch.seq_id[j][0] = slot.seq_id
            batch.n_seq_id[j] = 1
            batch.logits[j] = i >= len(tokens) - logits
        batch.n_tokens = start + len(tokens)
        return batch.n_tokens - logits if logits else -1

    def _fill_batch(self) -> None:
        self._batch.batch.n_tokens = 0
        decoding = [r for r in self._active if r.pending is not None]
        room = self._n_batch - len(decoding)
        for request in decoding:
            draft = self._draft(request, room)
            room -= len(draft)
            request.chunk = [request.pending, *draft]  # type: ignore[list-item]
            request.row = self._add(request.slot, request.chunk, len(request.chunk))  # type: ignore[arg-type]
        cap = self._prefill_chunk if decoding else self._n_batch
        for request in self._active:
            if request.pending is not None:
                continue
            # The last prompt token goes alone, as it does when the rest came from the cache: its logits
            # start the answer, and a cached and a cold run then compute them the same way.
            last = len(request.prompt) - 1
            end = last if request.prefilled < last else len(request.prompt)
            request.chunk = request.prompt[request.prefilled : min(end, request.prefilled + min(room, cap))]
            request.row = -1
            if request.chunk:
                completes = request.prefilled + len(request.chunk) == len(request.prompt)
                request.row = self._add(request.slot, request.chunk, int(completes))  # type: ignore[arg-type]
                room -= len(request.chunk)

    def _draft(self, request: Request, room: int) -> list[int]:
        """Prompt-lookup tokens to verify after the pending one (none while the server writes tokens)."""
        if request.lookup is None or request.forced:
            return []
        left = min(request.params.max_tokens - request.produced,
                   self._engine.n_ctx - len(request.slot.tokens) - 2)  # type: ignore[union-attr]
        return request.lookup.draft(min(room // 2, left - 1))

    def _step(self) -> None:
        self._fill_batch()
        self._deliver()
        while True:
            started = time.perf_counter()
            rc = llama_cpp.llama_decode(self._ctx.ctx, self._batch.batch)
            if rc == 0:
                self._time_step(time.perf_counter() - started)
                break
            if rc == NO_KV_ROOM:
                if self._cells.evict_one():  # the bound of the prefix cache: drop the least recently used
                    continue
                newest = self._active[-1]
                self._finish(newest, EngineError("the context is full: too many tokens in flight at once"))
                return
            self._fail_all(EngineError(f"llama.cpp failed to decode (code {rc})"))
            return
        for request in list(self._active):
            chunk, request.chunk = request.chunk, []
            if not chunk:
                continue
            if request.pending is not None:
                self._decoded(request, chunk)
                continue
            request.slot.tokens.extend(chunk)  # type: ignore[union-attr]
            request.prefilled += len(chunk)
            if self._store is not None and request.prefilled == len(request.prompt):
                self._store_prefix(request)
            if request.row >= 0:
                self._sample(request, request.row)

    def _time_step(self, seconds: float) -> None:
        """Teach the draft cost what a step of one decoding sequence (its next token and any draft) took."""
        if self._draft_max and len(self._active) == 1 and (request := self._active[0]).pending is not None:
            self._draft_cost.record(len(request.chunk), seconds)

    def _decoded(self, request: Request, chunk: list[int]) -> None:
        """`chunk` is the pending token and a draft: sample row by row while the draft agrees with what is
        sampled, keep those cells, and drop the cells of the rest."""
        slot, row = request.slot, request.row
        for i, token in enumerate(chunk):
            slot.tokens.append(token)  # type: ignore[union-attr]  # in the cache, and on the sampled path
            request.pending = None
            if not self._sample(request, row + i) or i + 1 == len(chunk) or request.pending != chunk[i + 1]:
                break
        if request.lookup is not None:
            request.lookup.taken(len(chunk) - 1, i)
            self._drafted += len(chunk) - 1
            self._accepted += i
        if i + 1 < len(chunk):
            llama_cpp.llama_memory_seq_rm(self._ctx.memory, slot.seq_id, len(slot.tokens), -1)  # type: ignore[union-attr]

    def _sample(self, request: Request, row: int) -> bool:
        """Sample the next token from `row`; False when the generation ended with it."""
        engine, params = self._engine, request.params
        if not request.forced:
            token = request.sampler.sample(self._ctx, row)
            if request.budget and request.budget.reasoning and engine.is_end_of_generation(token):
                request.forced = engine.close_reasoning_tokens(params)  # a turn cannot end inside its reasoning
        if request.forced:
            token = request.forced.pop(0)
            request.sampler.accept(token)  # keeps a lazy grammar's view of the output whole
        logprob, top = None, ()
        if params.logprobs is not None:
            logprob, top = logprobs(self._ctx.ctx, row, engine.n_vocab, token, params.logprobs)
        self._outgoing.append((request.sink, Sampled(token, logprob, top)))
        request.produced += 1
        slot = request.slot
        if (engine.is_end_of_generation(token) or request.produced >= params.max_tokens
                or len(slot.tokens) + 1 >= engine.n_ctx):  # type: ignore[union-attr]
            self._finish(request, Done())
            return False
        if request.budget and request.budget.feed(engine.token_bytes(token).decode("utf-8", "ignore")):
            request.forced = engine.close_reasoning_tokens(params)
        request.pending = token
        if request.lookup is not None:
            request.lookup.append(token)
        return True

    def _fail_all(self, error: EngineError) -> None:
        """A failed decode leaves the cache in an unknown state: forget all of it."""
        llama_cpp.llama_memory_clear(self._ctx.memory, True)
        for slot in self.slots.slots:
            slot.tokens.clear()
        for request in list(self._active):
            self._finish(request, error)
