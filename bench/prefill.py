"""Prefill speed: parley against a natively built `llama-server`, same GGUF, same threads, same run.

Both servers stay up; for each prompt size they take turns (llama-server, then parley), each prompt opened by
a nonce so no cache holds any of it (parley's disk cache is off). Prefill tok/s = the prompt's input tokens
(as each server counts them) / time to the first streamed token, with max_tokens 1.

    bash bench/build_llama_server.sh --native    # once, ~10 min on 2 cores, cached per CPU
    .venv/bin/python bench/prefill.py [--sizes 1000 4000 12000] [--rounds 1] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import httpx
from common import filler, free_port, start_parley, stream_messages, wait_healthy

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
        elif event["type"] == "message_delta":
            n_input = event.get("usage", {}).get("input_tokens") or n_input
    return n_input, first or (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 12000])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--llama-server-args", default="", help="extra llama-server flags, e.g. '-ub 1024 -fa on'")
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
    native_url = f"http://127.0.0.1:{port}"
    parley, parley_url = start_parley("--model", args.model, "--threads", t, "--n-ctx", ctx, "--parallel", "1",
                                      "--disk-cache-size", "0", *args.parley_args.split())
    try:
        wait_healthy(native, native_url, 300, "llama-server")
        for url in (native_url, parley_url):
            prefill(url, args.model, 64)  # loaded and warm
        health = httpx.get(parley_url + "/health", timeout=10).json()
        print(f"{args.model} ({path.name}), {args.threads} threads, {platform.processor() or platform.machine()}; "
              f"parley CPU backend: {health.get('cpu_backend', '?')}", flush=True)
        print(f"{'prompt tokens':>14}{'llama-server tok/s':>20}{'parley tok/s':>14}{'ratio':>8}", flush=True)
        rows = []
        for size in args.sizes:
            for _ in range(args.rounds):
                n_ref, s_ref = prefill(native_url, args.model, size)
                n_ours, s_ours = prefill(parley_url, args.model, size)
                row = {"size": size, "llama_server": {"tokens": n_ref, "s": s_ref, "tok_s": n_ref / s_ref},
                       "parley": {"tokens": n_ours, "s": s_ours, "tok_s": n_ours / s_ours}}
                row["ratio"] = row["parley"]["tok_s"] / row["llama_server"]["tok_s"]
                rows.append(row)
                print(f"{n_ours:>14}{row['llama_server']['tok_s']:>20.1f}{row['parley']['tok_s']:>14.1f}"
                      f"{row['ratio']:>8.3f}", flush=True)
        if args.json:
            args.json.write_text(json.dumps({"model": args.model, "threads": args.threads, "cpu": platform.processor(),
                                             "cpu_backend": health.get("cpu_backend"), "llama_server": binary,
                                             "llama_server_args": args.llama_server_args,
                                             "parley_args": args.parley_args, "rows": rows}, indent=1))
    finally:
        for proc in (native, parley):
            proc.terminate()
            proc.wait(30)



if __name__ == "__main__":
    main()
