"""Prompt-lookup drafts for speculative decoding: agents echo what they have seen (an Edit's `old_string`,
a file rewritten with one change), so the tokens that followed the last few tokens where they occurred
before in the prompt or the output are a likely continuation. The engine decodes a draft in one batch
with the next token and keeps the prefix its own sampler agrees with; the output is the same as without
drafts (each token is still sampled from its own row), only sooner when drafts hit — up to float
rounding: a row computed in a batch can differ in the last bits from one computed alone."""

from __future__ import annotations

from collections.abc import Sequence

from .draft_cost import MAX_NGRAM, MIN_NGRAM, DraftCost

MAX_REST = 32  # steps without drafts after repeated misses, at most


class PromptLookup:
    """One request's drafts. `tokens` grows with the output; the n-gram table is filled lazily, one step
    behind the end, so that the tail never finds itself. `cost` (the engine's, shared by its requests)
    says how long a draft and how long a match a draft needs to pay on this machine; without it drafts
    are taken to be free."""

    def __init__(self, prompt: Sequence[int], max_draft: int, cost: DraftCost | None = None) -> None:
        self.tokens = list(prompt)
        self.max_draft = max_draft
        self._cost = cost
        self._next: dict[tuple[int, ...], int] = {}  # n-gram -> where what followed its latest occurrence starts
        self._indexed = 0  # n-grams ending before this position are in the table
        self._length = 1  # drafts grow while they are taken and shrink when they miss
        self._source: int | None = None  # where the text being copied continues, while the output follows it
        # On a CPU a draft row costs about what a token costs: after drafts that miss entirely, rest for
        # 1, 2, 4 … MAX_REST steps, so text that echoes nothing (counting, prose) pays for few of them.
        self._misses = 0
        self._rest = 0

    def append(self, token: int) -> None:
        source = self._source
        self._source = source + 1 if source is not None and self.tokens[source] == token else None
        self.tokens.append(token)

    def draft(self, room: int) -> list[int]:
        """Up to `room` tokens likely to follow `tokens` (empty: nothing to go on)."""
        terms = self._cost.terms() if self._cost is not None else (1, MIN_NGRAM)
        if terms is None:
            return []
        shortest, min_ngram = terms
        limit = min(room, max(self._length, shortest))
        if limit < shortest:
            return []
        if self._rest:
            self._rest -= 1
            return []
        tokens = self.tokens
        if self._source is None:  # not following a copy: find where the last few tokens occurred before
            self._index()
            for n in range(MAX_NGRAM, min_ngram - 1, -1):
                if (start := self._next.get(tuple(tokens[-n:]))) is not None:
                    self._source = start
                    break
            else:
                return []
        draft = tokens[self._source : self._source + limit]  # type: ignore[misc]
        return draft if len(draft) >= shortest else []

    def taken(self, offered: int, accepted: int) -> None:
        """How the last draft fared: all taken doubles the next one, a miss shrinks it to what was taken, and
        a draft that did not pay for itself (nothing taken, or less than it cost) rests drafting for twice
        as long as the last such rest."""
        if offered:
            self._length = min(self.max_draft, self._length * 2) if accepted == offered else max(1, accepted)
            paid = accepted > 0 and (self._cost is None or accepted >= self._cost.price(offered))
            self._misses = 0 if paid else self._misses + 1
            self._rest = min(MAX_REST, 1 << (self._misses - 1)) if self._misses else 0

    def _index(self) -> None:
        tokens, end = self.tokens, len(self.tokens) - 1
        for stop in range(self._indexed, end):  # the n-grams ending at `stop`, followed by tokens[stop + 1]
            for n in range(MIN_NGRAM, MAX_NGRAM + 1):
                if stop + 1 >= n:
                    self._next[tuple(tokens[stop + 1 - n : stop + 1])] = stop + 1
        self._indexed = max(self._indexed, end)
