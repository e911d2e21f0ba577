"""The guard between conversion and use: a grammar parley hands to an engine is small, shallow, and compiles.

llama.cpp parses GBNF by recursion (a level per nested group), looks for left recursion by recursion (a level
per rule in a chain), expands `x{m,n}` into n rules, and compiles each grammar once per request and once per
generation. A grammar over these caps, or one llama.cpp refuses, is not used: the request goes on without it,
and a warning says why. Claude Code's 21 tools make 28 kB, groups 15 deep, 1,700 rules.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict

import llama_cpp

from .threads import on_grammar_thread

MAX_BYTES = 1 << 20
MAX_NESTING = 24  # groups within groups: llguidance (MLX) refuses 30; the converter's number rule nests 15
MAX_RULES = 50_000  # once repetitions are expanded: about 25 ms and 8 MB per compiled copy

# What counts: literals and character classes (skipped whole), repetitions, rule definitions, groups.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]|\{\s*(\d+)\s*(,\s*(\d*)\s*)?\}|::=|[()?*+]')
_verdicts: OrderedDict[bytes, str | None] = OrderedDict()  # by SHA-256: agents send the same tools every time
_verdicts_lock = threading.Lock()  # grammars are built on worker threads, concurrently


def grammar_problem(gbnf: str) -> str | None:
    """Why `gbnf` must not be used, or None when it is safe to."""
    try:
        data = gbnf.encode()
    except UnicodeEncodeError:
        return "not valid UTF-8"
    key = hashlib.sha256(data).digest()
    with _verdicts_lock:
        if key in _verdicts:
            _verdicts.move_to_end(key)
            return _verdicts[key]
    verdict = _problem(gbnf, len(data))  # outside the lock: compiling may take milliseconds
    with _verdicts_lock:
        _verdicts[key] = verdict
        if len(_verdicts) > 1024:
            _verdicts.popitem(last=False)
    return verdict


def _problem(gbnf: str, size: int) -> str | None:
    if size > MAX_BYTES:
        return f"{size} bytes, more than {MAX_BYTES}"
    nesting, rules = shape(gbnf)
    if nesting > MAX_NESTING:
        return f"groups nested {nesting} deep, more than {MAX_NESTING}"
    if rules > MAX_RULES:
        return f"{rules} rules once expanded, more than {MAX_RULES}"
    if not on_grammar_thread(_compiles, gbnf):
        return "llama.cpp does not accept it"
    return None


def shape(gbnf: str) -> tuple[int, int]:
    """How deep groups nest, and about how many rules llama.cpp makes of `gbnf`."""
    depth = nesting = rules = 0
    for match in _TOKENS.finditer(gbnf):
        token = match.group()
        if token == "(":
            depth += 1
            nesting = max(nesting, depth)
            rules += 1
        elif token == ")":
            depth -= 1
        elif token in ("::=", "?", "*", "+"):
            rules += 1
        elif token.startswith("{"):
            low, comma, high = match.groups()
            rules += max(int(high) - int(low), 1) if comma and high else 1
    return nesting, rules


def _compiles(gbnf: str) -> bool:
    """llama.cpp's own parse and checks; no vocabulary needed, as parley's grammars name no tokens."""
    sampler = llama_cpp.llama_sampler_init_grammar(None, gbnf.encode(), b"root")
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True
