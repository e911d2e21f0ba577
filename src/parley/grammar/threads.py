"""The threads that run llama.cpp's grammar code — compiling a grammar, sampling under one — with a big stack.

llama.cpp parses GBNF by recursion, about 460 bytes of native stack per nested group, and looks for left
recursion by recursion, about 130 bytes per rule in a chain of leftmost references (measured on the vendored
llama.cpp). limits.py caps what parley emits at MAX_NESTING groups and MAX_RULES rules, so the worst grammar
needs 24 × 460 B + 50,000 × 130 B ≈ 6.5 MB: most of a default 8 MB thread stack (less under musl or a lowered
`ulimit -s`), which Python's own frames share. These threads get 32 MiB, five times that. It is address space:
pages are committed only as they are touched. Sampling recurses far less: per byte of a token, and in the lazy
triggers' regex search, which tool_grammar keeps shallow.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

STACK_BYTES = 32 * 2**20

T = TypeVar("T")
_stack_size_lock = threading.Lock()  # threading.stack_size is process-wide: set, start, restore
_local = threading.local()


def _mark_grammar_thread() -> None:
    _local.grammar_thread = True


_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="parley-grammar", initializer=_mark_grammar_thread)


def start_thread(target: Callable[[], None], name: str) -> threading.Thread:
    """A started daemon thread with the big stack."""
    with _stack_size_lock:
        previous = threading.stack_size(STACK_BYTES)
        try:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
        finally:
            threading.stack_size(previous)
    return thread


def on_grammar_thread(fn: Callable[..., T], *args: object) -> T:
    """`fn(*args)` on a thread with the big stack; the caller waits for the result."""
    if getattr(_local, "grammar_thread", False):
        return fn(*args)
    with _stack_size_lock:  # the pool starts its threads inside submit
        previous = threading.stack_size(STACK_BYTES)
        try:
            future = _pool.submit(fn, *args)
        finally:
            threading.stack_size(previous)
    return future.result()
