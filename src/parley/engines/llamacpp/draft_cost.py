"""What verifying a speculative draft costs on this machine, learned from the engine's own decode steps.

On a GPU a few more rows in a step are nearly free; on a CPU they are not, and how much they cost differs
from one CPU to the next (on a 2-core EPYC a step of 2 tokens takes 2.4x a step of 1, a step of 9 takes
5x). A draft pays only when more of it is taken than it costs, so the engine times every step in which one
sequence decodes alone and prices drafts from that: which drafts are worth offering at all, and how much
evidence (how long a repeated n-gram) one needs before it is offered.
"""

from __future__ import annotations

SMOOTHING = 0.2  # weight of a new measurement: steps slow down as the context grows, so the recent ones count
PAYOFF = 0.8  # a draft is offered only if it would pay for itself with this share of it taken
MIN_NGRAM, MAX_NGRAM = 2, 8
EVIDENCE = 6  # n-gram length needed grows by this many tokens per unit of price per draft token


class DraftCost:
    """Seconds of a one-sequence decode step by the tokens in it, and what that makes a draft cost.

    Optimistic until measured: a size not yet timed is priced like the largest smaller one that was, so
    drafts get tried, timed, and priced for real."""

    def __init__(self, max_draft: int) -> None:
        self.max_draft = max_draft
        self._seconds: list[float | None] = [None] * (max_draft + 2)  # index: tokens in the step
        self._terms: tuple[int, int] | None = (1, MIN_NGRAM)

    def record(self, n_tokens: int, seconds: float) -> None:
        """A step in which one sequence decoded `n_tokens` tokens (its next token and a draft) took `seconds`."""
        if not 1 <= n_tokens < len(self._seconds) or seconds <= 0:
            return
        old = self._seconds[n_tokens]
        self._seconds[n_tokens] = seconds if old is None else old + SMOOTHING * (seconds - old)
        self._terms = self._compute_terms()

    def price(self, k: int) -> float:
        """Verifying `k` draft tokens along with the next one costs this many plain steps more."""
        one = self._seconds[1]
        if one is None or k <= 0:
            return 0.0
        for n in range(min(k + 1, len(self._seconds) - 1), 1, -1):
            if (seconds := self._seconds[n]) is not None:
                return max(0.0, seconds / one - 1)
        return 0.0

    def terms(self) -> tuple[int, int] | None:
        """(the shortest draft worth offering, the n-gram match it needs), or None: no draft pays here."""
        return self._terms

    def _compute_terms(self) -> tuple[int, int] | None:
        for k in range(1, self.max_draft + 1):
            price = self.price(k)
            if price <= k * PAYOFF:
                return k, min(MAX_NGRAM, MIN_NGRAM + round(EVIDENCE * price / k))
        return None
