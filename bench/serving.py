"""parley against llama.cpp's own `llama-server` and raw llama-cpp-python, on the same GGUF with the same
thread count, in one invocation. Prints a table of ratios and writes JSON for tracking (--json).

  P1  single-stream decode tok/s through streaming /v1/messages
  P2  time to first token for a ~1k-token prompt (cold: it shares no prefix with anything before)
  P3  time to first token of turn 2 vs turn 1 of a ~4k-token conversation (the prefix cache at work)
  P4  aggregate output tok/s with 1, 4 and 8 concurrent streams, 3 requests each (both servers with 8 slots)
  P6  server overhead per streamed token: parley's ms/token less raw llama-cpp-python's

--compare-in-process measures, instead, parley as it runs (each model in its own child process) against
parley --in-process (the model inside the server's process), llama-server and raw llama-cpp-python, all up at
once and measured in turn, round after round (--rounds), so that drift of a shared machine falls on all of them
alike: medians of P1, P2, P4 and P6, and the child/in-process ratio of each.

    bash bench/build_llama_server.sh            # once: builds llama-server (~10 min on 2 cores), cached
    .venv/bin/python bench/serving.py [--model qwen2.5-coder-0.5b-instruct] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import Stream, count_prompt, filler, free_port, sse_events, timed, wait_healthy

from parley.core.messages import ChatMessage, Conversation
from parley.core.template import ChatTemplate
from parley.models.registry import ModelRegistry
from parley.settings import Settings

HERE = Path(__file__).resolve().parent
GOALS = {"P1": (">=", 0.97), "P2": ("<=", 1.05), "P3": ("<=", 0.10), "P4@8": (">=", 1.0), "P6_ms": ("<=", 0.5)}


def _text(event: dict) -> str | None:
    return event["delta"].get("text", "") if event.get("type") == "content_block_delta" else None


def _output_tokens(event: dict) -> int | None:
    return event.get("usage", {}).get("output_tokens", 0) if event.get("type") == "message_delta" else None


class Server:
    def __init__(self, name: str, cmd: list[str], port: int, model: str) -> None:
        self.name, self.model, self.url = name, model, f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_healthy(self.proc, self.url, 300, f"{name} ({' '.join(cmd)})")
        self.message([{"role": "user", "content": "hi"}], 1)  # loaded and warm

    def message(self, messages: list[dict], max_tokens: int) -> Stream:
        body = {"model": self.model, "max_tokens": max_tokens, "stream": True, "temperature": 0,
                "messages": messages}
        return timed(sse_events(self.url, "/v1/messages", body, timeout=1800), _text, _output_tokens)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def p1_decode(server: Server, tokens: int) -> float:
    return statistics.median(server.message(count_prompt(), tokens).decode_tok_s for _ in range(2))


def p2_ttft(server: Server) -> float:
    prompt = [{"role": "user", "content": filler(1000) + "\nIn one sentence: what does the ledger record?"}]
    return server.message(prompt, 4).ttft


def p3_turns(server: Server) -> tuple[float, float]:
    first_user = {"role": "user", "content": filler(4000) + "\nWhat is this text about? One sentence."}
    turn1 = server.message([first_user], 16)
    history = [first_user, {"role": "assistant", "content": "".join(turn1.text).strip() or "A ledger."},
               {"role": "user", "content": "Name one thing the ships carried."}]
    return turn1.ttft, server.message(history, 4).ttft


def p4_aggregate(server: Server, streams: int, tokens: int, requests: int = 3) -> float:
    """Output tok/s of `streams` clients at once, each sending `requests` requests one after another (one
    short request per stream alone is too noisy to tell 5 % apart)."""
    results: list[Stream] = []

    def one() -> None:
        for _ in range(requests):
            results.append(server.message(count_prompt(), tokens))

    threads = [threading.Thread(target=one) for _ in range(streams)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(r.tokens for r in results) / (time.perf_counter() - start)


class RawLlama:
    """llama-cpp-python alone: no server, no HTTP, no parsing."""

    def __init__(self, path: Path, threads: int) -> None:
        from llama_cpp import Llama

        from parley.engines.llamacpp import cpu_backend

        cpu_backend.ensure_loaded()  # the same CPU backend variant parley loads
        self.llm = Llama(str(path), n_ctx=4096, n_threads=threads, n_threads_batch=threads, verbose=False)
        self.template = ChatTemplate(self.llm.metadata.get("tokenizer.chat_template"))

    def run(self, text: str, limit: int) -> Stream:
        llm = self.llm
        prompt = self.template.render(Conversation([ChatMessage("user", text)]))
        ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        out = Stream()
        for _ in llm.generate(ids, temp=0.0, reset=True):
            out.token("")
            out.tokens += 1
            if out.tokens >= limit:
                break
        return out

    def decode(self, tokens: int) -> float:
        return statistics.median(self.run(count_prompt()[0]["content"], tokens).decode_tok_s for _ in range(2))


def raw_llama(path: Path, threads: int, tokens: int) -> dict[str, float]:
    """Decode tok/s and ~1k-prompt TTFT with llama-cpp-python alone."""
    raw = RawLlama(path, threads)
    decode = raw.decode(tokens)
    ttft = raw.run(filler(1000) + "\nIn one sentence: what does the ledger record?", 1).ttft
    raw.llm.close()
    return {"P1": decode, "P2": ttft}


def measure(server: Server, tokens: int, quick: bool) -> dict[str, float]:
    out = {"P1": p1_decode(server, tokens), "P2": p2_ttft(server)}
    if not quick:
        out["P3_turn1"], out["P3_turn2"] = p3_turns(server)
        out["P3"] = out["P3_turn2"] / out["P3_turn1"]
    for n in (1, 4, 8):
        out[f"P4@{n}"] = p4_aggregate(server, n, 64)
    print(f"  {server.name}: " + ", ".join(f"{k} {v:.3f}" for k, v in out.items()), flush=True)
    return out


def compare_in_process(args: argparse.Namespace, path: Path, binary: str) -> None:
    """All four up at once, measured in turn (a rotating order), `args.rounds` times; medians."""
    t, ctx = str(args.threads), str(args.n_ctx)
    port = free_port()
    servers = [Server("llama-server", [binary, "-m", str(path), "-t", t, "-tb", t, "-c", ctx, "-np", "8", "-kvu",
                                       "--host", "127.0.0.1", "--port", str(port), "--no-webui", "--jinja"],
                      port, args.model)]
    for name, extra in (("parley", []), ("parley --in-process", ["--in-process"])):
        port = free_port()
        servers.append(Server(name, [sys.executable, "-m", "parley.cli", "serve", "--port", str(port), "--threads",
                                     t, "--n-ctx", ctx, "--parallel", "8", *extra], port, args.model))
    raw = RawLlama(path, args.threads)
    samples: dict[str, dict[str, list[float]]] = {s.name: {} for s in servers} | {"raw": {}}
    try:
        for round_ in range(args.rounds):
            order = servers[round_ % 3:] + servers[: round_ % 3]
            samples["raw"].setdefault("P1", []).append(raw.decode(args.tokens))
            for server in order:
                got = {"P1": p1_decode(server, args.tokens), "P2": p2_ttft(server),
                       **{f"P4@{n}": p4_aggregate(server, n, 64) for n in (1, 4, 8)}}
                for key, value in got.items():
                    samples[server.name].setdefault(key, []).append(value)
            print(f"  round {round_ + 1}/{args.rounds}: " + ", ".join(
                f"{name} P1 {values['P1'][-1]:.2f}" for name, values in samples.items()), flush=True)
    finally:
        for server in servers:
            server.stop()
        raw.llm.close()
    medians = {name: {k: statistics.median(v) for k, v in values.items()} for name, values in samples.items()}
    raw_ms = 1000 / medians["raw"]["P1"]
    for name in ("llama-server", "parley", "parley --in-process"):
        medians[name]["P6_ms"] = 1000 / medians[name]["P1"] - raw_ms
    ref, child, inproc = medians["llama-server"], medians["parley"], medians["parley --in-process"]
    print(f"\n{args.rounds} rounds, medians; raw llama-cpp-python P1 {medians['raw']['P1']:.3f} tok/s")
    print(f"{'metric':<22}{'llama-server':>13}{'in-process':>12}{'child':>10}{'child/in':>10}"
          f"{'in/llama-server':>17}{'child/llama-server':>20}")
    for key in ("P1", "P2", "P4@1", "P4@4", "P4@8", "P6_ms"):
        ratios = "" if key == "P6_ms" else (f"{child[key] / inproc[key]:>10.3f}{inproc[key] / ref[key]:>17.3f}"
                                            f"{child[key] / ref[key]:>20.3f}")
        print(f"{key:<22}{ref[key]:>13.3f}{inproc[key]:>12.3f}{child[key]:>10.3f}{ratios}")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "threads": args.threads, "rounds": args.rounds,
                                         "samples": samples, "medians": medians}, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--tokens", type=int, default=128, help="output tokens for P1")
    parser.add_argument("--n-ctx", type=int, default=16384)
    parser.add_argument("--quick", action="store_true", help="skip P3 (the ~4k-token conversation)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--compare-in-process", action="store_true",
                        help="interleaved rounds: parley (model in a child process) vs parley --in-process")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--native", action="store_true",
                        help="against a llama-server built with -DGGML_NATIVE=ON (build_llama_server.sh --native)")
    args = parser.parse_args()

    settings = Settings()
    path = ModelRegistry(settings).resolve(args.model).locate(settings.cache_dir)
    binary = subprocess.run(["bash", str(HERE / "build_llama_server.sh"), *(["--native"] if args.native else [])],
                            check=True, capture_output=True,
                            text=True).stdout.strip().splitlines()[-1]
    t, ctx = str(args.threads), str(args.n_ctx)
    print(f"{args.model} ({path.name}), {args.threads} threads, {platform.processor() or platform.machine()}",
          flush=True)
    if args.compare_in_process:
        compare_in_process(args, path, binary)
        return

    results: dict[str, dict[str, float]] = {"raw": raw_llama(path, args.threads, args.tokens)}
    print(f"  raw llama-cpp-python: {results['raw']}", flush=True)
    port = free_port()
    cmd = [binary, "-m", str(path), "-t", t, "-tb", t, "-c", ctx, "-np", "8", "-kvu", "--host", "127.0.0.1",
           "--port", str(port), "--no-webui", "--jinja"]
    server = Server("llama-server", cmd, port, args.model)
    try:
        results["llama-server"] = measure(server, args.tokens, args.quick)
    finally:
        server.stop()
    port = free_port()
    cmd = [sys.executable, "-m", "parley.cli", "serve", "--port", str(port), "--threads", t, "--n-ctx", ctx,
           "--parallel", "8"]
    server = Server("parley", cmd, port, args.model)
    try:
        results["parley"] = measure(server, args.tokens, args.quick)
    finally:
        server.stop()

    raw, ref, ours = results["raw"], results["llama-server"], results["parley"]
    ours["P6_ms"] = 1000 / ours["P1"] - 1000 / raw["P1"]
    ref["P6_ms"] = 1000 / ref["P1"] - 1000 / raw["P1"]
    ratios = {k: ours[k] / ref[k] for k in ("P1", "P2", "P4@1", "P4@4", "P4@8") if ref.get(k)}
    print(f"\n{'metric':<28}{'raw':>10}{'llama-server':>14}{'parley':>10}{'ratio':>8}  goal")
    rows = [("P1 decode tok/s", "P1"), ("P2 TTFT ~1k prompt s", "P2"), ("P3 TTFT turn 1 s", "P3_turn1"),
            ("P3 TTFT turn 2 s", "P3_turn2"), ("P3 turn2/turn1", "P3"), ("P4 1 stream tok/s", "P4@1"),
            ("P4 4 streams tok/s", "P4@4"), ("P4 8 streams tok/s", "P4@8"), ("P6 overhead ms/token", "P6_ms")]
    for label, key in rows:
        if key not in ours:
            continue
        r = raw.get(key)
        ratio = ratios.get(key)
        goal = ""
        if key in GOALS:
            op, bound = GOALS[key]
            value = ours[key] if key in ("P3", "P6_ms") else ratio
            met = value is not None and (value >= bound if op == ">=" else value <= bound)
            goal = f"{op} {bound}  {'met' if met else 'MISSED'}"
        print(f"{label:<28}{'' if r is None else f'{r:.3f}':>10}{ref.get(key, 0):>14.3f}{ours[key]:>10.3f}"
              f"{'' if ratio is None else f'{ratio:.3f}':>8}  {goal}")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "threads": args.threads, "results": results,
                                         "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
