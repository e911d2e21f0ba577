"""The Message Batches API against the same requests sent one by one, on one parley it starts.

  B1  throughput: N requests as one batch (run on the free slots, continuous batching) vs the same requests
      sent sequentially through /v1/messages; the ratio of wall times, and output tok/s of each
  B2  time to first token of an interactive streamed request while a batch fills every slot vs idle
      (batch requests yield their slot: the interactive one preempts the newest)

Prompts carry a nonce per phase, so that neither phase is served from the other's prefix cache.

    .venv/bin/python bench/batch.py [--model smollm2-135m-instruct] [--requests 200] [--max-tokens 16] [--json out]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import anthropic
import httpx
from common import free_port, stop_process, stream_messages, wait_healthy

QUESTIONS = ["Name a colour.", "Name a fruit.", "Name a city in Europe.", "Name an animal.", "Name a river.",
             "Name a planet.", "Name a musical instrument.", "Name a tree."]


def params(model: str, text: str, max_tokens: int) -> dict:
    return {"model": model, "max_tokens": max_tokens, "temperature": 0,
            "messages": [{"role": "user", "content": text}]}


def prompts(n: int) -> list[str]:
    nonce = uuid.uuid4().hex[:8]
    return [f"[{nonce}-{i}] {QUESTIONS[i % len(QUESTIONS)]}" for i in range(n)]


def sequential(url: str, model: str, texts: list[str], max_tokens: int) -> tuple[float, int]:
    start, tokens = time.perf_counter(), 0
    with httpx.Client(timeout=600) as http:
        for text in texts:
            response = http.post(url + "/v1/messages", json=params(model, text, max_tokens))
            response.raise_for_status()
            tokens += response.json()["usage"]["output_tokens"]
    return time.perf_counter() - start, tokens


def as_batch(client: anthropic.Anthropic, model: str, texts: list[str], max_tokens: int) -> tuple[float, int]:
    start = time.perf_counter()
    batch = client.messages.batches.create(
        requests=[{"custom_id": f"r{i}", "params": params(model, t, max_tokens)} for i, t in enumerate(texts)])
    while client.messages.batches.retrieve(batch.id).processing_status != "ended":
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    results = list(client.messages.batches.results(batch.id))
    assert len(results) == len(texts) and all(r.result.type == "succeeded" for r in results), results[:3]
    return elapsed, sum(r.result.message.usage.output_tokens for r in results)


def ttft(url: str, model: str, text: str) -> float:
    start = time.perf_counter()
    body = {**params(model, text, 4), "stream": True}
    first = 0.0
    for event in stream_messages(url, body):  # read to the end: the request is over when the next one starts
        if not first and event.get("type") == "content_block_delta":
            first = time.perf_counter() - start
    if not first:
        raise RuntimeError("no text came")
    return first


def batch_holds_every_slot(url: str, model: str, parallel: int) -> bool:
    health = runner_health(url, model)
    return health.get("admitted") == health.get("batch_admitted") and health.get("active_generations", 0) >= parallel


def runner_health(url: str, model: str) -> dict:
    return httpx.get(url + "/health", timeout=10).json()["models"].get(model, {})


def latency(url: str, client: anthropic.Anthropic, model: str, parallel: int, samples: int) -> dict:
    # The same question each time: the interactive prompt is cached in both cases, so what differs is the wait.
    question = f"[{uuid.uuid4().hex[:8]}] What is the capital of France?"
    ttft(url, model, question)
    idle = [ttft(url, model, question) for _ in range(samples)]
    long = [{"custom_id": f"l{i}", "params": params(model, f"[{uuid.uuid4().hex[:8]}] Count from 1 to 1000.", 400)}
            for i in range(parallel * 4)]
    batch = client.messages.batches.create(requests=long)
    deadline = time.monotonic() + 300
    while not batch_holds_every_slot(url, model, parallel):
        if time.monotonic() > deadline:
            raise RuntimeError("the batch never filled the slots")
        time.sleep(0.01)
    before = runner_health(url, model)["preemptions"]
    busy = []
    for _ in range(samples):
        if client.messages.batches.retrieve(batch.id).processing_status != "in_progress":
            break  # the batch is done: what follows would be idle again
        busy.append(ttft(url, model, question))
        refill = time.monotonic() + 60
        while not batch_holds_every_slot(url, model, parallel) and time.monotonic() < refill:
            time.sleep(0.01)  # the preempted request takes its slot back
    preempted = runner_health(url, model)["preemptions"] - before
    client.messages.batches.cancel(batch.id)
    return {"idle_ttft_ms": statistics.median(idle) * 1000, "busy_ttft_ms": statistics.median(busy) * 1000,
            "samples": len(busy), "preemptions": preempted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--samples", type=int, default=5, help="interactive requests timed in each case")
    parser.add_argument("--latency-only", action="store_true", help="measure B2 only")
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="parley-bench-batch-") as data_dir:
        cmd = [sys.executable, "-m", "parley.cli", "serve", "--port", str(port), "--parallel", str(args.parallel),
               "--data-dir", data_dir, *(["--threads", str(args.threads)] if args.threads else [])]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_healthy(proc, url, 300, "parley")
            client = anthropic.Anthropic(base_url=url, api_key="none", max_retries=0, timeout=600)
            httpx.post(url + "/v1/messages", json=params(args.model, "hi", 1), timeout=600).raise_for_status()
            seq_s = batch_s = seq_tokens = batch_tokens = 0.0
            if not args.latency_only:
                seq_s, seq_tokens = sequential(url, args.model, prompts(args.requests), args.max_tokens)
                batch_s, batch_tokens = as_batch(client, args.model, prompts(args.requests), args.max_tokens)
            lat = latency(url, client, args.model, args.parallel, args.samples)
        finally:
            stop_process(proc)
    out = {"model": args.model, "parallel": args.parallel, "cpus": os.cpu_count(), "machine": platform.machine(),
           **lat}
    if not args.latency_only:
        out.update({
            "requests": args.requests, "max_tokens": args.max_tokens,
            "sequential_s": seq_s, "sequential_output_tok_s": seq_tokens / seq_s,
            "batch_s": batch_s, "batch_output_tok_s": batch_tokens / batch_s, "throughput_ratio": seq_s / batch_s,
        })
        print(f"B1  {args.requests} requests, max_tokens {args.max_tokens}, {args.parallel} slots, {args.model}")
        print(f"    sequential {seq_s:7.1f} s  ({out['sequential_output_tok_s']:.1f} output tok/s)")
        print(f"    batch      {batch_s:7.1f} s  ({out['batch_output_tok_s']:.1f} output tok/s)")
        print(f"    ratio      {out['throughput_ratio']:.2f}x")
    print(f"B2  interactive TTFT (median of {lat['samples']}): idle {lat['idle_ttft_ms']:.0f} ms, "
          f"batch in every slot {lat['busy_ttft_ms']:.0f} ms ({lat['preemptions']} preemptions)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
