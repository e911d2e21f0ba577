"""The prompt-prefix cache: which llama.cpp sequence holds which tokens, and where a new prompt goes.

Every sequence id of the context is a slot. A slot keeps the tokens of its last generation in the
(unified, shared) KV cache after the request ends, so the next prompt that starts the same way — the
next turn of a conversation, another request with the same system prompt and tools — decodes only
what is new. The cache is bounded by the context's KV cells: when a decode finds no room, the least
recently used idle slot is emptied (see the scheduler).

Idle slots are parked while others run (as llama-server does with a unified cache): their KV state is
copied to host memory and their cells freed, because every decode step walks all cells in use, masked or
not (a step took 37.4 ms with an empty cache and 41.9 ms with 4,200 idle cells held). A parked state
belongs to no slot (`ParkedStates`): a slot is only where a conversation runs, so 4 slots keep the caches
of 8 conversations — 4 agent sessions and their side requests — and a new prompt never takes the cache
of the conversation that built it. A parked state is loaded back, into any free slot, when a prompt
continues it."""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass, field

# A prompt continues a conversation when it holds all of it but at most this many tokens at the end (the last
# answer re-rendered a little differently). A share by "most of it" is no test: four agent sessions share
# ~11.5k tokens of system prompt and tools and differ after, and cutting one to serve another loses its turns.
TAIL = 64


def continues(held: int, tokens: list[int]) -> bool:
    """Whether a prompt sharing `held` of `tokens` continues the conversation that built them."""
    return len(tokens) - held <= TAIL


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass
class Slot:
    seq_id: int
    tokens: list[int] = field(default_factory=list)  # what the KV cache holds for this sequence, in order
    busy: bool = False
    last_used: float = 0.0

    def touch(self) -> None:
        self.last_used = time.monotonic()


@dataclass(eq=False)
class Parked:
    """A conversation's KV state in host memory, its cells freed."""

    tokens: list[int]
    state: ctypes.Array  # llama.cpp's bytes for the sequence that held `tokens`
    last_used: float = field(default_factory=time.monotonic)

    @property
    def nbytes(self) -> int:
        return ctypes.sizeof(self.state)


class ParkedStates:
    """The parked states, least recently used first out beyond `max_bytes`. Written by the thread that owns
    the context; `longest` may be read from any thread."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: list[Parked] = []

    def longest(self, prompt: list[int], limit: int) -> tuple[Parked | None, int]:
        """The entry sharing the longest prefix with `prompt` (at most `limit` tokens of it), and that length."""
        best, held = None, 0
        for entry in list(self._entries):  # a copy: the owning thread may replace the list meanwhile
            n = min(common_prefix(entry.tokens, prompt), limit)
            if n > held:
                best, held = entry, n
        return best, held

    def add(self, tokens: list[int], state: ctypes.Array) -> None:
        """Keep `state`; an entry whose tokens it extends is dropped (the new one serves all its prefixes)."""
        self._entries = [e for e in self._entries
                         if not (len(e.tokens) <= len(tokens) and common_prefix(e.tokens, tokens) == len(e.tokens))]
        self._entries.append(Parked(tokens, state))

    def take(self, entry: Parked, n_tokens: int) -> None:
        """`entry`'s first `n_tokens` go back into a slot. When that is all of it (but a tail), the slot
        continues the conversation and parks it again, grown: the entry leaves. Otherwise (a shared system
        prompt) it stays for its own conversation."""
        entry.last_used = time.monotonic()
        if continues(n_tokens, entry.tokens):
            self._entries = [e for e in self._entries if e is not entry]

    def over_bound(self) -> list[Parked]:
        """Remove and return the least recently used entries beyond the byte bound."""
        total = self.nbytes()
        gone = []
        for entry in sorted(self._entries, key=lambda e: e.last_used):
            if total <= self.max_bytes:
                break
            gone.append(entry)
            total -= entry.nbytes
        if gone:
            self._entries = [e for e in self._entries if all(e is not g for g in gone)]
        return gone

    def tokens(self) -> int:
        return sum(len(e.tokens) for e in self._entries)

    def nbytes(self) -> int:
        return sum(e.nbytes for e in self._entries)


@dataclass(frozen=True)
class Placement:
    slot: Slot
    reuse: int  # prompt tokens already in the cache for this slot once placed
    source: Slot | Parked | None  # where the first `reuse` tokens come from: another slot's cells (shared),
    # a parked state (loaded), or None: the slot's own cells
    displaced: bool  # the slot holds a conversation this prompt does not continue: park it before reuse


class SlotTable:
    def __init__(self, n_slots: int, parked_bytes: int) -> None:
        self.slots = [Slot(i) for i in range(n_slots)]
        self.parked = ParkedStates(parked_bytes)

    def place(self, prompt: list[int]) -> Placement | None:
        """An idle slot for `prompt` and where its longest known prefix comes from. The slot: the one whose
        conversation the prompt continues, else an empty one, else the least recently used (whose conversation
        is parked first). The prefix: the slot's own cells, else a longer one held by another slot (even a busy
        one: its cells are shared, not recomputed, so a new conversation with the same system prompt and
        tools starts from them), else a longer parked state. The last prompt token is always decoded again:
        its logits start the answer."""
        idle = [s for s in self.slots if not s.busy]
        if not idle:
            return None
        limit = len(prompt) - 1
        own = {s.seq_id: min(common_prefix(s.tokens, prompt), limit) for s in self.slots}

        def rank(s: Slot) -> tuple[int, bool, float]:
            return (own[s.seq_id] if s.tokens and continues(own[s.seq_id], s.tokens) else 0, not s.tokens,
                    -s.last_used)

        target = max(idle, key=rank)
        reuse, source = own[target.seq_id], None
        donor = max(self.slots, key=lambda s: own[s.seq_id])
        if own[donor.seq_id] > reuse:
            reuse, source = own[donor.seq_id], donor
        entry, held = self.parked.longest(prompt, limit)
        if held > reuse:
            reuse, source = held, entry
        return Placement(target, reuse, source, not continues(own[target.seq_id], target.tokens))

    def held(self, prompt: list[int]) -> int:
        """The longest prefix of `prompt` held in the KV cache or in host memory."""
        # copies: the decode thread extends the slots' tokens meanwhile
        in_cells = max(common_prefix(list(s.tokens), prompt) for s in self.slots)
        return max(in_cells, self.parked.longest(prompt, len(prompt))[1])

    def evictable(self) -> Slot | None:
        """The least recently used idle slot that still holds cells."""
        idle = self.to_park()
        return min(idle, key=lambda s: s.last_used) if idle else None

    def to_park(self) -> list[Slot]:
        """Idle slots whose cells are in the KV cache."""
        return [s for s in self.slots if not s.busy and s.tokens]

    def cached_tokens(self) -> int:
        """KV cells in use. Slots share the cells of a common prefix (see `place`), so this counts the
        nodes of the token trie of the slots: total length less the prefixes neighbours share."""
        held = sorted(s.tokens for s in self.slots if s.tokens)
        shared = sum(common_prefix(a, b) for a, b in zip(held, held[1:], strict=False))
        return sum(len(t) for t in held) - shared
