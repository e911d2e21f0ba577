"""Sets of characters as code-point ranges, with the re module's own meaning of `\\d \\w \\s` and IGNORECASE.

regex_gbnf.py turns each set into GBNF; asking the re module itself what a class matches keeps Unicode
categories and case folding exactly as `re.fullmatch` has them.
"""

from __future__ import annotations

import bisect
import functools
import re
from typing import Any

Ranges = tuple[tuple[int, int], ...]  # sorted, disjoint, not adjacent; inclusive code points
MAX_CHAR = 0x10FFFF


def normal(ranges: Any) -> Ranges:
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def complement(ranges: Ranges) -> Ranges:
    out, start = [], 0
    for lo, hi in ranges:
        if lo > start:
            out.append((start, lo - 1))
        start = hi + 1
    if start <= MAX_CHAR:
        out.append((start, MAX_CHAR))
    return tuple(out)


def minus(a: Ranges, b: Ranges) -> Ranges:
    return complement(normal(complement(a) + b))


def contains(ranges: Ranges, cp: int) -> bool:
    i = bisect.bisect_right(ranges, (cp, MAX_CHAR + 1)) - 1
    return i >= 0 and ranges[i][1] >= cp


def _runs(matches: Any) -> Ranges:
    """The ranges of the matched spans of a string whose character i is code point i."""
    return tuple((m.start(), m.end() - 1) for m in matches)


def _every_char() -> str:
    """Code point i at index i (surrogates too: the re module takes them). Not kept: 4 MB, used only to fill
    the caches below."""
    return "".join(map(chr, range(MAX_CHAR + 1)))


@functools.cache
def category(letter: str, ascii_only: bool) -> Ranges:
    """`\\d`, `\\s` or `\\w` exactly as the re module matches it (Unicode unless ASCII)."""
    return _runs(re.finditer(rf"\{letter}+", _every_char(), re.ASCII if ascii_only else 0))


@functools.cache
def _cased_text() -> str:
    """Every character with another case, in order: the only ones IGNORECASE can add to a set or take away."""
    return "".join(c for c in _every_char() if c.lower() != c or c.upper() != c)


@functools.cache
def cased() -> Ranges:
    return normal((ord(c), ord(c)) for c in _cased_text())


def _class_regex(ranges: Ranges, negate: bool) -> str:
    body = "".join(f"\\U{lo:08X}" if lo == hi else f"\\U{lo:08X}-\\U{hi:08X}" for lo, hi in ranges)
    return f"[{'^' if negate else ''}{body}]" if body else "[^\\s\\S]" if not negate else "[\\s\\S]"


def matched(ranges: Ranges, negate: bool, flags: int) -> Ranges:
    """The characters a class matches under `flags`."""
    base = complement(ranges) if negate else ranges
    return _folded(ranges, negate, flags & (re.I | re.A)) if flags & re.IGNORECASE else base


@functools.lru_cache(maxsize=4096)  # a case-insensitive pattern asks again for each of its letters
def _folded(ranges: Ranges, negate: bool, flags: int) -> Ranges:
    """Case-insensitive matching as the re module does it, asked of the re module itself: one scan over every
    cased character decides which of them the class takes, so its folding rules hold here too."""
    base = complement(ranges) if negate else ranges
    taken = tuple((ord(m.group()), ord(m.group())) for m in re.finditer(_class_regex(ranges, negate), _cased_text(),
                                                                          flags))
    return normal(minus(base, cased()) + taken)
