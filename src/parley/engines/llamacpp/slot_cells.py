"""What each slot holds in llama.cpp's KV cache, and moving it in and out: taking a slot for a new prompt
(sharing another slot's cells, loading a prefix read from disk, or cutting its own to the common prefix),
parking idle slots' states in host memory and loading them back, and sending the least recently used
parked states to the disk prompt cache.
Runs on the thread that owns the context (see `slots.py` for why idle slots are parked)."""

from __future__ import annotations

import ctypes
import logging
import time

import llama_cpp
from llama_cpp._internals import LlamaContext

from .prefix_store import PrefixStore, Restored
from .slots import Parked, Placement, Slot, SlotTable
from .states import SequenceStates

log = logging.getLogger("parley.llamacpp")


class SlotCells:
    def __init__(self, ctx: LlamaContext, slots: SlotTable, states: SequenceStates,
                 store: PrefixStore | None = None) -> None:
        self._ctx = ctx
        self.slots = slots
        self._states = states
        self._store = store  # where a parked state leaving host memory goes
        self.parks = 0  # states copied out of the KV cache, and the longest such copy: the decode thread's stall
        self.park_seconds_max = 0.0

    def claim(self, placement: Placement, restored: Restored | None) -> int:
        """Make the placed slot hold the longest known prefix of its prompt (a stored one read from disk when
        it is longer); park the other idle slots, and the conversation the slot held when the prompt does not
        continue it. Returns how many prompt tokens the slot now holds."""
        slot, reuse, source = placement.slot, placement.reuse, placement.source
        log.debug("claim: slot %d holding %d (displaced %s) for %d reused of %s, disk %s", slot.seq_id,
                  len(slot.tokens), placement.displaced, reuse, type(source).__name__,
                  restored.usable if restored else None)
        if placement.displaced:
            self._park(slot)
        if restored is not None and restored.usable > reuse:
            self._empty(slot)
            self.park_idle(besides=slot)
            return self._load(slot, restored.tokens, restored.state, restored.usable, "disk")
        if isinstance(source, Slot):
            self._empty(slot)
            llama_cpp.llama_memory_seq_cp(self._ctx.memory, source.seq_id, slot.seq_id, 0, reuse)
            slot.tokens = source.tokens[:reuse]
            self.park_idle(besides=slot)
            return reuse
        if isinstance(source, Parked):
            self.slots.parked.take(source, reuse)  # first: parking the others must not push it out
            self._empty(slot)
            self.park_idle(besides=slot)
            return self._load(slot, source.tokens, source.state, reuse, "host memory")
        self.park_idle(besides=slot)
        if not self._rm(slot, reuse):
            self._empty(slot)  # cannot cut mid-sequence: start over
            return 0
        return reuse

    def park_idle(self, besides: Slot) -> None:
        """Move the idle slots' KV states to host memory and free their cells, so that the steps to come
        walk only the cells of running sequences; the least recently used parked states beyond the bound
        go to the disk prompt cache."""
        for slot in self.slots.to_park():
            if slot is not besides:
                self._park(slot)
                self._empty(slot)
        self._trim()

    def _trim(self) -> None:
        """The least recently used parked states beyond the bound leave host memory for the disk cache."""
        for parked in self.slots.parked.over_bound():
            self._to_disk(parked)

    def _park(self, slot: Slot) -> None:
        """Copy the slot's state to host memory (its cells stay)."""
        started = time.perf_counter()
        state = self._states.whole(slot.seq_id)
        seconds = time.perf_counter() - started
        self.parks += 1
        self.park_seconds_max = max(self.park_seconds_max, seconds)
        if state is not None:
            self.slots.parked.add(list(slot.tokens), state)
            log.debug("parked %d tokens (%.1f MB) in %.3f s", len(slot.tokens), ctypes.sizeof(state) / 1e6, seconds)

    def _to_disk(self, parked: Parked) -> None:
        """A parked state leaving host memory goes to the disk prompt cache (its writer thread writes it) when
        it holds a block beyond what is stored: the stored prompt prefix lacks the answer and what followed."""
        store = self._store
        if store is not None and store.worth_saving(parked.tokens, min_new=store.block):
            if store.save(list(parked.tokens), parked.state):
                log.info("prompt cache: a parked state of %d tokens goes to disk", len(parked.tokens))

    def evict_one(self) -> bool:
        """Park the least recently used idle slot still in the KV cache; False when there is none."""
        victim = self.slots.evictable()
        if victim is None:
            return False
        self._park(victim)
        self._empty(victim)
        self._trim()
        return True

    def snapshot(self, slot: Slot, n_tokens: int) -> ctypes.Array | None:
        return self._states.snapshot(slot.seq_id, n_tokens)

    def _load(self, slot: Slot, tokens: list[int], state: object, usable: int, where: str) -> int:
        """Load a state holding `tokens` into the empty `slot` and keep its first `usable`, making room by
        parking idle slots as needed. Returns the tokens the slot holds (0: it did not fit)."""
        started = time.monotonic()
        while not self._states.restore(slot.seq_id, state):  # type: ignore[arg-type]
            self._empty(slot)
            if not self.evict_one():
                log.warning("prompt cache: no room in the KV cache to load %d tokens from %s", len(tokens), where)
                return 0
        self._rm(slot, usable)
        slot.tokens = tokens[:usable]
        log.info("prompt cache: restored %d tokens from %s in %.2f s", usable, where, time.monotonic() - started)
        return usable

    def _empty(self, slot: Slot) -> None:
        self._rm(slot, 0)
        slot.tokens = []

    def _rm(self, slot: Slot, start: int) -> bool:
        """Drop the slot's cells from position `start` on."""
        return llama_cpp.llama_memory_seq_rm(self._ctx.memory, slot.seq_id, start, -1)
