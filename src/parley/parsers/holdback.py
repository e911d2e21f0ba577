"""Hold-back for streamed markers: text that may still become a marker (a stop string, a tag, a tool-call
opener) must wait for the next chunk, so that a marker split across tokens is never let out as text."""

from __future__ import annotations

from collections.abc import Callable, Iterable


def partial_marker(buf: str, markers: Iterable[str], fits: Callable[[int], bool] | None = None) -> int:
    """Length of the longest end of `buf` that is a proper beginning of one of `markers` (0: none). `fits(n)`,
    when given, must also accept it: a marker that counts only in some places (at a line's start)."""
    best = 0
    for marker in markers:
        # Longest first, and only longer than the best so far: the first match is this marker's answer.
        for n in range(min(len(marker) - 1, len(buf)), best, -1):
            if buf.endswith(marker[:n]) and (fits is None or fits(n)):
                best = n
                break
    return best
