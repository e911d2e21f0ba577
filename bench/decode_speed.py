"""Decode speed and time to first token: parley's streaming /v1/messages vs raw llama-cpp-python on the same
GGUF with the same thread count, in one invocation. Prints a table with ratios; writes JSON with --json.

    .venv/bin/python bench/decode_speed.py [--model qwen2.5-coder-0.5b-instruct] [--tokens 128]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from common import free_port, stop_process
from llama_cpp import Llama

from parley.engines.llamacpp import cpu_backend
from parley.models.registry import ModelRegistry
from parley.settings import Settings

PROMPT = "Count from 1 to 500, separated by spaces. Output only the numbers."
SYSTEM = f"Benchmark run {time.time_ns()}. You are a counting assistant."


def bench_parley(model: str, max_tokens: int, threads: int) -> dict:
    port = free_port()
    env = {**os.environ, "PARLEY_N_THREADS": str(threads), "PARLEY_N_CTX": "4096"}
    proc = subprocess.Popen([sys.executable, "-m", "parley.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1/messages"
    body = {"model": model, "max_tokens": max_tokens, "stream": True, "temperature": 0,
            "messages": [{"role": "user", "content": PROMPT}]}
    try:
        for _ in range(600):
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        httpx.post(url, json={**body, "stream": False, "max_tokens": 1}, timeout=300)  # load the model
        body["system"] = SYSTEM  # a prompt that shares no prefix with the warm-up: the timed run is cold
        start = time.perf_counter()
        first = last = None
        output_tokens = 0
        with httpx.stream("POST", url, json=body, timeout=600) as response:
            for line in response.iter_lines():
                if line.startswith("data: ") and '"content_block_delta"' in line:
                    last = time.perf_counter()
                    first = first or last
                elif line.startswith("data: ") and '"message_delta"' in line:
                    output_tokens = json.loads(line[6:])["usage"]["output_tokens"]
        return {"ttft_s": first - start, "decode_tok_s": (output_tokens - 1) / (last - first),
                "tokens": output_tokens}
    finally:
        stop_process(proc)


def bench_raw(path: Path, prompt_text: str, n_tokens: int, threads: int) -> dict:
    cpu_backend.ensure_loaded()  # the same CPU backend variant parley loads
    llm = Llama(str(path), n_ctx=4096, n_threads=threads, n_threads_batch=threads, verbose=False)
    tokens = llm.tokenize(prompt_text.encode(), add_bos=True, special=True)
    start = time.perf_counter()
    first = None
    count = 0
    for _ in llm.generate(tokens, temp=0.0, reset=True):
        count += 1
        if first is None:
            first = time.perf_counter()
        if count >= n_tokens:
            break
    end = time.perf_counter()
    return {"ttft_s": first - start, "decode_tok_s": (count - 1) / (end - first), "tokens": count}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    settings = Settings()
    registry = ModelRegistry(settings)
    path = registry.resolve(args.model).locate(settings.cache_dir)
    parley = bench_parley(args.model, args.tokens, args.threads)
    # The same rendered prompt parley sends, so both prefill the same tokens.
    from parley.core.messages import ChatMessage, Conversation
    from parley.engines.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine(path, n_ctx=4096, n_threads=args.threads)
    prompt_text = engine.chat_template.render(Conversation([ChatMessage("user", PROMPT)], system=SYSTEM))
    engine.close()
    raw = bench_raw(path, prompt_text, parley["tokens"], args.threads)

    print(f"model {args.model}, {args.threads} threads, {parley['tokens']} output tokens")
    print(f"{'metric':<16}{'raw llama-cpp':>14}{'parley':>10}{'ratio':>8}")
    for key, label in (("decode_tok_s", "decode tok/s"), ("ttft_s", "TTFT s")):
        print(f"{label:<16}{raw[key]:>14.3f}{parley[key]:>10.3f}{parley[key] / raw[key]:>8.3f}")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "threads": args.threads, "raw": raw, "parley": parley},
                                        indent=2))


if __name__ == "__main__":
    main()
