"""What each slot holds in llama.cpp's KV cache, and moving it in and out: taking a slot for a new prompt
(sharing another slot's cells, loading a prefix read from disk, or cutting its own to the common prefix),
parking idle slots in host memory and loading them back, and emptying one when the cells run out.
Runs on the thread that owns the context (see `slots.py` for why idle slots are parked)."""

from __future__ import annotations

import ctypes
import logging
import time

import llama_cpp
from llama_cpp._internals import LlamaContext

from ..prefix_store import PrefixStore, Restored
from .slots import Placement, Slot, SlotTable
from .states import SequenceStates

log = logging.getLogger("parley.llamacpp")


class SlotCells:
    def __init__(self, ctx: LlamaContext, slots: SlotTable, states: SequenceStates, n_ctx: int,
                 store: PrefixStore | None = None) -> None:
        self._ctx = ctx
        self.slots = slots
        self._states = states
        self._n_ctx = n_ctx
        self._store = store  # where a parked state dropped from host memory goes

    def claim(self, placement: Placement, restored: Restored | None) -> int:
        """Make the placed slot hold the longest known prefix of its prompt (a stored one read from disk when
        it is longer); park the other idle slots. Returns how many prompt tokens the slot now holds."""
        slot, reuse, donor = placement.slot, placement.reuse, placement.copy_from
        if restored is not None and restored.usable > reuse:
            slot.parked = None  # its own state is not what this prompt continues
            self.park_idle(besides=slot)
            return restored.usable if self._load_stored(slot, restored) else 0
        if donor is not None:
            slot.parked = None
            self._rm(slot, 0)
            llama_cpp.llama_memory_seq_cp(self._ctx.memory, donor.seq_id, slot.seq_id, 0, reuse)
            slot.tokens = donor.tokens[:reuse]
            self.park_idle(besides=slot)
            return reuse
        self.park_idle(besides=slot)
        if slot.parked is not None and not self._unpark(slot):
            return 0
        if not self._rm(slot, reuse):
            self._rm(slot, 0)  # cannot cut mid-sequence: start over
            return 0
        return reuse

    def park_idle(self, besides: Slot) -> None:
        """Copy the idle slots' KV states to host memory and free their cells, so that the steps to come
        walk only the cells of running sequences; keep at most a context's worth of parked tokens."""
        for slot in self.slots.to_park():
            if slot is not besides:
                slot.parked = self._states.whole(slot.seq_id)
                if slot.parked is None:
                    slot.tokens.clear()
                self._rm(slot, 0)
        for slot in self.slots.parked_over(self._n_ctx):
            self._to_disk(slot)
            slot.parked = None
            slot.tokens.clear()

    def _to_disk(self, slot: Slot) -> None:
        """A parked state leaving host memory goes to the disk prompt cache (its writer thread writes it), when
        it holds enough beyond what is stored: the stored prompt prefix lacks the answer and what followed."""
        if self._store is not None and slot.parked is not None and self._store.worth_saving(slot.tokens):
            if self._store.save(list(slot.tokens), slot.parked):
                log.info("prompt cache: a parked state of %d tokens goes to disk", len(slot.tokens))

    def evict_one(self) -> bool:
        """Empty the least recently used idle slot still in the KV cache; False when there is none."""
        victim = self.slots.evictable()
        if victim is None:
            return False
        self._rm(victim, 0)
        victim.tokens.clear()
        return True

    def snapshot(self, slot: Slot, n_tokens: int) -> ctypes.Array | None:
        return self._states.snapshot(slot.seq_id, n_tokens)

    def _unpark(self, slot: Slot) -> bool:
        """Load a parked slot's state back into its cells; False (and the slot emptied) when it did not fit."""
        state, slot.parked = slot.parked, None
        self._rm(slot, 0)
        if self._states.restore(slot.seq_id, state):  # type: ignore[arg-type]
            return True
        self._rm(slot, 0)
        slot.tokens.clear()
        return False

    def _load_stored(self, slot: Slot, restored: Restored) -> bool:
        """Load a stored prefix into `slot`, making room by emptying idle slots as needed."""
        started = time.monotonic()
        self._rm(slot, 0)
        slot.tokens.clear()
        while not self._states.restore(slot.seq_id, restored.state):
            if not self.evict_one():
                self._rm(slot, 0)
                return False
        self._rm(slot, restored.usable)
        slot.tokens = restored.tokens[: restored.usable]
        log.info("prompt cache: restored %d tokens from disk in %.2f s", restored.usable, time.monotonic() - started)
        return True

    def _rm(self, slot: Slot, start: int) -> bool:
        """Drop the slot's cells from position `start` on."""
        return llama_cpp.llama_memory_seq_rm(self._ctx.memory, slot.seq_id, start, -1)
