"""Speculative decoding (prompt lookup) benchmark: decode speed with drafts on and off, same prompts, same run.

Two workloads, greedy, through `parley serve` (one server per setting, one after the other):

- edit: the model rewrites a 300-line file with one small change (agents echo what they have read);
- chat: ordinary questions whose answers copy little from the prompt (drafts mostly miss).

Prints decode tokens/s (first token to last) of each, the ratio drafts-on / drafts-off, and whether the
outputs are identical (they must be).

    .venv/bin/python bench/speculative.py [--model qwen2.5-coder-0.5b-instruct] [--draft-max 16] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import start_parley, stream_messages


def _source_file(lines: int = 300) -> str:
    """A real file of about 300 lines: parley's own prompt-cache store."""
    path = Path(__file__).parents[1] / "src" / "parley" / "engines" / "llamacpp" / "prefix_store.py"
    return "\n".join(path.read_text().splitlines()[:lines]) + "\n"


EDIT = "Copy this file exactly, changing only the name `PrefixStore` to `DiskPrefixCache`:\n\n{src}"
CHAT = ["Explain in a few paragraphs why the sky is blue.", "Write a short story about a lighthouse keeper.",
        "Give advice for someone learning to cook, as a list."]


def _generate(url: str, model: str, prompt: str, max_tokens: int, opening: str = "") -> dict:
    messages = [{"role": "user", "content": prompt}]
    if opening:  # the answer's first words, so that a small model does write out the whole file
        messages.append({"role": "assistant", "content": opening})
    body = {"model": model, "max_tokens": max_tokens, "temperature": 0, "stream": True, "messages": messages}
    first = last = None
    text, tokens = [], 0
    for event in stream_messages(url, body):
        if event["type"] == "content_block_delta":
            last = time.monotonic()
            first = first or last
            text.append(event["delta"].get("text", ""))
        elif event["type"] == "message_delta":
            tokens = event["usage"]["output_tokens"]
    seconds = (last - first) if first and last and last > first else float("nan")
    return {"text": "".join(text), "tokens": tokens, "seconds": seconds}


def _serve(model: str, draft_max: int) -> tuple[subprocess.Popen, str]:
    proc, url = start_parley("--model", model, "--preload", "--draft-max", str(draft_max), "--disk-cache-size", "0")
    _generate(url, model, "Say hi.", 4)  # warm up
    return proc, url


def _fastest(runs: list[dict]) -> dict:
    best = min(runs, key=lambda r: r["seconds"])
    return {**best, "repeatable": all(r["text"] == best["text"] for r in runs)}


def _speed(runs: list[dict]) -> float:
    return sum(r["tokens"] - 1 for r in runs) / sum(r["seconds"] for r in runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--draft-max", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each prompt per setting (the fastest counts)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    prompts = {"edit": [(EDIT.format(src=_source_file()), 600, '"""')],
               "chat": [(p, 200, "") for p in CHAT]}
    servers = {"off": _serve(args.model, 0), "on": _serve(args.model, args.draft_max)}
    runs: dict[str, dict[str, list[dict]]] = {"off": {}, "on": {}}
    try:  # one server at a time, taking turns: the machine's drift hits both alike
        for name, items in prompts.items():
            for item in items:
                tries: dict[str, list[dict]] = {"off": [], "on": []}
                for _ in range(args.repeat):
                    for setting, (_, url) in servers.items():
                        tries[setting].append(_generate(url, args.model, *item))
                for setting in servers:
                    runs[setting].setdefault(name, []).append(_fastest(tries[setting]))
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(60)
    off, on = runs["off"], runs["on"]
    print(f"{args.model}; prompt-lookup drafts of up to {args.draft_max} tokens vs none; greedy")
    print(f"{'workload':10} {'tokens':>7} {'off tok/s':>10} {'on tok/s':>9} {'on/off':>7}  same output  repeatable")
    result = {}
    for name in prompts:
        same = all(a["text"] == b["text"] for a, b in zip(off[name], on[name], strict=True))
        s_off, s_on = _speed(off[name]), _speed(on[name])
        tokens = sum(r["tokens"] for r in on[name])
        result[name] = {"tokens": tokens, "off_tok_s": round(s_off, 2), "on_tok_s": round(s_on, 2),
                        "ratio": round(s_on / s_off, 3), "same_output": same,
                        "repeatable_off": all(r["repeatable"] for r in off[name]),
                        "repeatable_on": all(r["repeatable"] for r in on[name])}
        print(f"{name:10} {tokens:7d} {s_off:10.2f} {s_on:9.2f} {s_on / s_off:7.3f}  {same!s:11}  "
              f"off {result[name]['repeatable_off']}, on {result[name]['repeatable_on']}")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "draft_max": args.draft_max, **result}, indent=1))
    return 0 if all(r["same_output"] for r in result.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
