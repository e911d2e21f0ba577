"""Prefill speed: parley against a natively built `llama-server`, same GGUF, same threads, same run.

All servers stay up; for each prompt size they take turns, each prompt opened by a nonce so that no cache
holds any of it (parley's disk cache is off). Prefill tok/s = the prompt's input tokens (as each server counts
them) / time to the first streamed token, with max_tokens 1; the median of --rounds. `--variants haswell`
adds a parley forced onto that CPU backend (PARLEY_CPU_BACKEND; haswell = the AVX2 level the install used to
build alone).

    bash bench/build_llama_server.sh --native    # once: ~14 min on 2 cores, cached per CPU
    .venv/bin/python bench/prefill.py [--sizes 1000 4000 12000] [--variants haswell] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import httpx
from common import filler, free_port, start_parley, stop_process, stream_messages, wait_healthy

from parley.models.registry import ModelRegistry
from parley.settings import Settings

HERE = Path(__file__).parent


def prefill(url: str, model: str, tokens: int) -> tuple[int, float]:
    """(input tokens, seconds to the first token) of one uncached prompt of about `tokens` tokens."""
    body = {"model": model, "max_tokens": 1, "temperature": 0, "stream": True,
            "messages": [{"role": "user", "content": filler(tokens) + "\nSummarise the ledger."}]}
    start, first, n_input = time.perf_counter(), 0.0, 0
    for event in stream_messages(url, body):
        if event["type"] == "message_start":
            n_input = event["message"]["usage"]["input_tokens"]
        elif event["type"] == "content_block_delta" and not first:
            first = time.perf_counter() - start
    return n_input, first or (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 12000])
    parser.add_argument("--rounds", type=int, default=1, help="median of this many prompts per size and server")
    parser.add_argument("--variants", nargs="*", default=[], help="also parley on these CPU backends")
    parser.add_argument("--llama-server-args", default="", help="extra llama-server flags, e.g. '-ub 1024'")
    parser.add_argument("--parley-args", default="", help="extra parley serve flags")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    settings = Settings()
    path = ModelRegistry(settings).resolve(args.model).locate(settings.cache_dir)
    binary = subprocess.run(["bash", str(HERE / "build_llama_server.sh"), "--native"], check=True,
                            capture_output=True, text=True).stdout.strip().splitlines()[-1]
    t, ctx = str(args.threads), str(max(16384, max(args.sizes) + 2048))
    port = free_port()
    native = subprocess.Popen([binary, "-m", str(path), "-t", t, "-tb", t, "-c", ctx, "-np", "1", "--host",
                               "127.0.0.1", "--port", str(port), "--no-webui", "--jinja", "--cache-ram", "0",
                               *args.llama_server_args.split()],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs, urls = [native], {"llama-server": f"http://127.0.0.1:{port}"}
    try:
        wait_healthy(native, urls["llama-server"], 300, "llama-server")
        serve = ("--model", args.model, "--threads", t, "--n-ctx", ctx, "--parallel", "1", "--disk-cache-size", "0",
                 *args.parley_args.split())
        for variant in [None, *args.variants]:
            proc, url = start_parley(*serve, env={"PARLEY_CPU_BACKEND": variant} if variant else None)
            procs.append(proc)
            prefill(url, args.model, 64)  # the model loaded
            backend = httpx.get(url + "/health", timeout=10).json()["models"][args.model]["cpu_backend"]
            urls[f"parley ({backend})"] = url
        print(f"{args.model} ({path.name}), {args.threads} threads, {platform.processor() or platform.machine()}; "
              f"llama-server: {binary}", flush=True)
        names = list(urls)
        print(f"{'prompt tokens':>14}" + "".join(f"{n + ' tok/s':>28}" for n in names)
              + "".join(f"{n + ' ×':>26}" for n in names[1:]), flush=True)
        rows = []
        for size in args.sizes:
            samples: dict[str, list[tuple[int, float]]] = {name: [] for name in names}
            for _ in range(args.rounds):  # taking turns, so that drift of the machine falls on all alike
                for name, url in urls.items():
                    samples[name].append(prefill(url, args.model, size))
            row = {"size": size}
            for name, got in samples.items():
                rates = [n / s for n, s in got]
                row[name] = {"tokens": got[0][0], "tok_s": statistics.median(rates), "samples": rates}
            rows.append(row)
            ref = row["llama-server"]["tok_s"]
            print(f"{row[names[1]]['tokens']:>14}" + "".join(f"{row[n]['tok_s']:>28.1f}" for n in names)
                  + "".join(f"{row[n]['tok_s'] / ref:>26.3f}" for n in names[1:]), flush=True)
        if args.json:
            args.json.write_text(json.dumps({"model": args.model, "threads": args.threads, "llama_server": binary,
                                             "llama_server_args": args.llama_server_args,
                                             "parley_args": args.parley_args, "rows": rows}, indent=1))
    finally:
        for proc in procs:
            stop_process(proc)


if __name__ == "__main__":
    main()
