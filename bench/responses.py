"""The Responses API against Chat Completions on one parley server: the same prompt through streaming
`POST /v1/responses` and streaming `POST /v1/chat/completions`, taking turns (the order alternates round by
round), each request with a fresh nonce so that neither finds the other's prompt in the prefix cache.

  TTFT     seconds from sending the request to the first text delta (a ~1k-token prompt, prefilled cold)
  decode   output tokens per second after the first (usage's output token count over first-to-last delta)

Prints the medians of --rounds rounds and the Responses / Chat ratios (TTFT: lower is better, decode: higher),
and writes them with every sample to bench/results/responses-vs-chat.json (--json).

    .venv/bin/python bench/responses.py [--model qwen2.5-coder-0.5b-instruct] [--rounds 5] [--tokens 128]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from common import filler, start_parley, stop_process

HERE = Path(__file__).resolve().parent
ASK = "\nNow count from 1 to 500, separated by spaces. Output only the numbers."


@dataclass
class Sample:
    ttft: float
    decode_tok_s: float
    tokens: int
    prompt_tokens: int
    first_text: str


def _events(url: str, body: dict):
    """(seconds since the request was sent, parsed data) for each SSE `data:` line."""
    start = time.perf_counter()
    with httpx.stream("POST", url, json=body, timeout=1800) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                yield time.perf_counter() - start, json.loads(line[6:])


def _sample(times: list[float], tokens: int, prompt_tokens: int, text: str) -> Sample:
    if not times:
        raise RuntimeError("no text came back")
    decode = (tokens - 1) / (times[-1] - times[0]) if tokens > 1 and times[-1] > times[0] else 0.0
    return Sample(ttft=times[0], decode_tok_s=decode, tokens=tokens, prompt_tokens=prompt_tokens,
                  first_text=text[:40])


def chat(url: str, model: str, prompt: str, tokens: int) -> Sample:
    body = {"model": model, "max_tokens": tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}, "messages": [{"role": "user", "content": prompt}]}
    times, text, used, prompt_tokens = [], [], 0, 0
    for at, data in _events(url + "/v1/chat/completions", body):
        for choice in data.get("choices") or []:
            if choice.get("delta", {}).get("content"):
                times.append(at)
                text.append(choice["delta"]["content"])
        if data.get("usage"):
            used, prompt_tokens = data["usage"]["completion_tokens"], data["usage"]["prompt_tokens"]
    return _sample(times, used, prompt_tokens, "".join(text))


def responses(url: str, model: str, prompt: str, tokens: int) -> Sample:
    body = {"model": model, "max_output_tokens": tokens, "temperature": 0, "stream": True, "input": prompt}
    times, text, used, prompt_tokens = [], [], 0, 0
    for at, data in _events(url + "/v1/responses", body):
        if data["type"] == "response.output_text.delta" and data["delta"]:
            times.append(at)
            text.append(data["delta"])
        elif data["type"] in ("response.completed", "response.incomplete"):
            usage = data["response"]["usage"]
            used, prompt_tokens = usage["output_tokens"], usage["input_tokens"]
        elif data["type"] in ("response.failed", "error"):
            raise RuntimeError(f"the Responses stream failed: {data}")
    return _sample(times, used, prompt_tokens, "".join(text))


APIS = {"responses": responses, "chat": chat}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128, help="output tokens per request")
    parser.add_argument("--prompt-tokens", type=int, default=1000, help="about this many tokens of prompt")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--url", help="an already running parley instead of starting one")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "responses-vs-chat.json")
    args = parser.parse_args()

    proc = None
    if args.url:
        url = args.url.rstrip("/")
    else:
        proc, url = start_parley("--threads", str(args.threads), log=Path("/tmp/parley-bench-responses.log"))
    samples: dict[str, list[Sample]] = {name: [] for name in APIS}
    try:
        for run in APIS.values():  # the model loaded and both paths warm
            run(url, args.model, "Say hi.", 4)
        for round_ in range(args.rounds):
            order = list(APIS) if round_ % 2 == 0 else list(reversed(APIS))
            for name in order:
                prompt = filler(args.prompt_tokens) + ASK  # the same text; its own nonce
                samples[name].append(APIS[name](url, args.model, prompt, args.tokens))
            print(f"  round {round_ + 1}/{args.rounds}: " + ", ".join(
                f"{name} TTFT {s[-1].ttft:.3f} s decode {s[-1].decode_tok_s:.2f} tok/s "
                f"({s[-1].prompt_tokens} + {s[-1].tokens} tokens)"
                for name, s in samples.items()), flush=True)
    finally:
        if proc is not None:
            stop_process(proc)

    medians = {name: {"ttft_s": statistics.median(s.ttft for s in values),
                      "decode_tok_s": statistics.median(s.decode_tok_s for s in values)}
               for name, values in samples.items()}
    ratios = {"ttft": medians["responses"]["ttft_s"] / medians["chat"]["ttft_s"],
              "decode": medians["responses"]["decode_tok_s"] / medians["chat"]["decode_tok_s"]}
    print(f"\n{args.model}, {args.rounds} rounds, ~{args.prompt_tokens}-token prompt, {args.tokens} output tokens; "
          "medians")
    print(f"{'':<22}{'responses':>12}{'chat':>12}{'ratio':>9}")
    print(f"{'TTFT s':<22}{medians['responses']['ttft_s']:>12.3f}{medians['chat']['ttft_s']:>12.3f}"
          f"{ratios['ttft']:>9.3f}")
    print(f"{'decode tok/s':<22}{medians['responses']['decode_tok_s']:>12.2f}{medians['chat']['decode_tok_s']:>12.2f}"
          f"{ratios['decode']:>9.3f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "model": args.model, "rounds": args.rounds, "tokens": args.tokens, "prompt_tokens": args.prompt_tokens,
        "threads": args.threads, "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d"), "medians": medians, "ratios_responses_over_chat": ratios,
        "samples": {name: [asdict(s) for s in values] for name, values in samples.items()},
    }, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
