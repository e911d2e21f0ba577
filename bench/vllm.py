"""parley on its vLLM engine against vLLM's own OpenAI server, on the same model directory, same machine, one
run: both through streaming /v1/chat/completions with the same vLLM settings (max model length, 8 sequences,
prefix caching; on CPU bf16, eager, 32-token blocks). Both servers are up at once and measured in turn, round
after round (--rounds), so that a shared machine's drift falls on both alike; medians are reported. Prints a
table of ratios, each oriented so that higher is better for parley (goal >= 0.95), and writes JSON (--json).

  decode   single-stream decode tok/s (median of 2 per round)
  ttft     time to first token for a ~1k-token prompt that shares no prefix with anything before (median of 2)
  agg8     aggregate output tok/s of 8 concurrent streams

Run it with the vLLM venv's python (tests/vllm_env.py makes it):

    python=$(python tests/vllm_env.py); $python bench/vllm.py [--model DIR] [--only vllm|parley] [--json out.json]

Without --model it uses the test model (the packaged Qwen2.5-Coder-0.5B converted to a Hugging Face directory).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from common import Stream, count_prompt, filler, free_port, sse_events, timed, wait_healthy

HERE = Path(__file__).resolve().parent
GOAL = 0.95


def _text(chunk: dict) -> str | None:
    pieces = [c["delta"]["content"] for c in chunk.get("choices") or [] if (c.get("delta") or {}).get("content")]
    return "".join(pieces) if pieces else None


def _completion_tokens(chunk: dict) -> int | None:
    return chunk["usage"].get("completion_tokens", 0) if chunk.get("usage") else None


class Server:
    def __init__(self, name: str, cmd: list[str], port: int, log: Path, model: str) -> None:
        self.name, self.url = name, f"http://127.0.0.1:{port}"
        self._log = open(log, "w")  # noqa: SIM115 - open for the server's lifetime
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self._ready(name, cmd, log, model)
        except BaseException:
            self.stop()
            raise

    def _ready(self, name: str, cmd: list[str], log: Path, model: str) -> None:
        wait_healthy(self.proc, self.url, 600, f"{name} (see {log}; {' '.join(cmd)})")
        # parley also lists its embedded models: take the one named after the directory.
        ids = [m["id"] for m in httpx.get(self.url + "/v1/models", timeout=30).json()["data"]]
        self.model = next((i for i in ids if i == model or i.endswith("/" + model)), ids[0])
        self.chat(count_prompt(), 4)  # loaded and warm

    def chat(self, messages: list[dict], max_tokens: int) -> Stream:
        body = {"model": self.model, "max_tokens": max_tokens, "stream": True, "temperature": 0,
                "messages": messages, "stream_options": {"include_usage": True}}
        return timed(sse_events(self.url, "/v1/chat/completions", body, timeout=1800), _text, _completion_tokens)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


def aggregate(server: Server, streams: int, tokens: int) -> float:
    results: list[Stream] = []
    threads = [threading.Thread(target=lambda: results.append(server.chat(count_prompt(), tokens)))
               for _ in range(streams)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(r.tokens for r in results) / (time.perf_counter() - start)


def ttft_prompt() -> list[dict]:
    return [{"role": "user", "content": filler(1000) + "\nIn one sentence: what does the ledger record?"}]


def measure(server: Server, tokens: int) -> dict[str, float]:
    out = {"decode": statistics.median(server.chat(count_prompt(), tokens).decode_tok_s for _ in range(2)),
           "ttft": statistics.median(server.chat(ttft_prompt(), 4).ttft for _ in range(2)),
           "agg8": aggregate(server, 8, tokens)}
    print(f"  {server.name}: " + ", ".join(f"{k} {v:.3f}" for k, v in out.items()), flush=True)
    return out


def on_cpu() -> bool:
    return shutil.which("nvidia-smi") is None and not os.environ.get("CUDA_VISIBLE_DEVICES")


def vllm_server_cmd(model: Path, port: int, n_ctx: int, seqs: int) -> list[str]:
    """vLLM's own server with the settings parley's engine gives AsyncLLM (engines/vllm/engine.py)."""
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--port", str(port),
           "--host", "127.0.0.1", "--max-model-len", str(n_ctx), "--max-num-seqs", str(seqs),
           "--enable-prefix-caching", "--disable-log-stats"]
    if on_cpu():
        from parley.engines.vllm.engine import _kv_bytes

        cmd += ["--dtype", "bfloat16", "--enforce-eager", "--block-size", "32",
                "--kv-cache-memory-bytes", str(_kv_bytes(model, n_ctx, seqs))]
    return cmd


def parley_cmd(model: Path, port: int, n_ctx: int, seqs: int) -> list[str]:
    return [sys.executable, "-m", "parley.cli", "serve", "--port", str(port), "--model", str(model),
            "--engine", "vllm", "--n-ctx", str(n_ctx), "--parallel", str(seqs)]


def default_model() -> Path:
    sys.path.insert(0, str(HERE.parent / "tests"))
    from support.hf_model import packaged_qwen_hf

    return packaged_qwen_hf()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a Hugging Face model directory")
    parser.add_argument("--tokens", type=int, default=64, help="output tokens per stream")
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--only", choices=("vllm", "parley"), help="measure one server only")
    parser.add_argument("--rounds", type=int, default=3, help="measurement rounds (medians are reported)")
    parser.add_argument("--logs", type=Path, default=Path("/tmp"), help="where the servers' logs go")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    model = args.model or default_model()
    print(f"{model.name}, {'CPU' if on_cpu() else 'GPU'}, {os.cpu_count()} cores", flush=True)

    # Both servers stay up and are measured in turn, round after round: drift of a shared machine falls on both.
    servers: list[Server] = []
    try:
        for name, build in (("vllm", vllm_server_cmd), ("parley", parley_cmd)):
            if args.only and args.only != name:
                continue
            port = free_port()
            servers.append(Server(name, build(model, port, args.n_ctx, args.parallel), port,
                                  args.logs / f"bench-{name}.log", model.name))
        rounds: dict[str, list[dict[str, float]]] = {s.name: [] for s in servers}
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds}", flush=True)
            for server in servers:
                rounds[server.name].append(measure(server, args.tokens))
    finally:
        for server in servers:
            server.stop()
    results = {name: {k: statistics.median(m[k] for m in ms) for k in ms[0]} for name, ms in rounds.items()}

    if len(results) == 2:
        ref, ours = results["vllm"], results["parley"]
        # Each ratio reads "higher is better for parley": throughput parley/vLLM, TTFT vLLM/parley.
        ratios = {"decode": ours["decode"] / ref["decode"], "ttft": ref["ttft"] / ours["ttft"],
                  "agg8": ours["agg8"] / ref["agg8"]}
        print(f"\n{'metric':<26}{'vLLM':>10}{'parley':>10}{'ratio':>8}  goal")
        for label, key in (("decode tok/s", "decode"), ("TTFT ~1k prompt s", "ttft"), ("8 streams tok/s", "agg8")):
            met = "met" if ratios[key] >= GOAL else "MISSED"
            print(f"{label:<26}{ref[key]:>10.3f}{ours[key]:>10.3f}{ratios[key]:>8.3f}  >= {GOAL}  {met}")
        results["ratios"] = ratios
    if args.json:
        args.json.write_text(json.dumps({"model": str(model), "cpu": on_cpu(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
