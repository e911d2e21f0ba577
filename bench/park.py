"""Parking cost: what copying a conversation's KV state out of llama.cpp's context (and back) costs the decode
thread, which every other stream waits for meanwhile.

Fills one sequence with N prompt tokens, then times parley's park (`SequenceStates.whole`: the size query, a
new buffer, llama.cpp's copy) and its load back (`SequenceStates.restore`), against two floors: a memmove of the
state into new memory of its size (what any copy to a new buffer pays: the kernel's page faults and zeroing),
and into a buffer already touched (the copy alone). park/fresh near 1 means the park is one pass over new memory
(no second serialization pass); park/reused is what reusing buffers could still save.

    .venv/bin/python bench/park.py [--model qwen2.5-coder-0.5b-instruct] [--tokens 2048 8192] [--json OUT]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import time
from pathlib import Path

import llama_cpp
from llama_cpp._internals import LlamaBatch

from parley.engines.llamacpp.engine import LlamaCppEngine
from parley.engines.llamacpp.states import SequenceStates
from parley.models.registry import ModelRegistry
from parley.settings import Settings

ROUNDS = 5


def fill(engine: LlamaCppEngine, n_tokens: int, n_batch: int = 512) -> None:
    """Decode `n_tokens` prompt tokens into sequence 0."""
    ctx = engine._ctx  # noqa: SLF001 - a benchmark of the engine's own context
    llama_cpp.llama_memory_clear(ctx.memory, True)
    tokens = [(i * 7919) % 20000 + 100 for i in range(n_tokens)]
    batch = LlamaBatch(n_tokens=n_batch, embd=0, n_seq_max=1, verbose=False)
    for start in range(0, n_tokens, n_batch):
        batch.set_batch(tokens[start : start + n_batch], start, logits_all=False)
        assert llama_cpp.llama_decode(ctx.ctx, batch.batch) == 0
    batch.close()


def time_park(engine: LlamaCppEngine) -> dict:
    """Medians over ROUNDS of: parley's park (`whole`), a memmove of as many bytes into fresh memory and into a
    buffer already touched (the floors), and the load back."""
    ctx = engine._ctx  # noqa: SLF001
    states = SequenceStates(ctx, None)
    rows = []
    reused = None
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        buf = states.whole(0)
        t1 = time.perf_counter()
        size = ctypes.sizeof(buf)
        fresh = (ctypes.c_uint8 * size)()
        ctypes.memmove(fresh, buf, size)
        t2 = time.perf_counter()
        reused = fresh if reused is None else reused
        t3 = time.perf_counter()
        ctypes.memmove(reused, buf, size)
        t4 = time.perf_counter()
        del fresh
        llama_cpp.llama_memory_seq_rm(ctx.memory, 0, 0, -1)
        t5 = time.perf_counter()
        assert states.restore(0, buf)
        t6 = time.perf_counter()
        rows.append({"park_ms": (t1 - t0) * 1e3, "fresh_ms": (t2 - t1) * 1e3, "reused_ms": (t4 - t3) * 1e3,
                     "load_ms": (t6 - t5) * 1e3, "mb": size / 1e6})
    return {key: round(statistics.median(row[key] for row in rows), 2) for key in rows[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--tokens", type=int, nargs="+", default=[2048, 8192])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    settings = Settings()
    path = ModelRegistry(settings).resolve(args.model).locate(settings.cache_dir)
    engine = LlamaCppEngine(path, n_ctx=max(args.tokens) + 64, n_slots=1)
    print(f"{args.model}, {engine.cpu_backend}; medians of {ROUNDS}")
    print(f"{'tokens':>7} {'MB':>7} {'park ms':>8} {'memmove fresh':>14} {'park/fresh':>11} {'memmove reused':>15} "
          f"{'park/reused':>12} {'load ms':>8}")
    results = []
    try:
        for n in args.tokens:
            fill(engine, n)
            row = {"tokens": n, **time_park(engine)}
            row["ratio_fresh"] = round(row["park_ms"] / row["fresh_ms"], 2)
            row["ratio_reused"] = round(row["park_ms"] / row["reused_ms"], 2)
            results.append(row)
            print(f"{n:7d} {row['mb']:7.1f} {row['park_ms']:8.2f} {row['fresh_ms']:14.2f} {row['ratio_fresh']:11.2f} "
                  f"{row['reused_ms']:15.2f} {row['ratio_reused']:12.2f} {row['load_ms']:8.2f}", flush=True)
    finally:
        engine.close()
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "cpu_backend": engine.cpu_backend, "rows": results},
                                        indent=1))


if __name__ == "__main__":
    main()
