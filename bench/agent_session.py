"""Agent session benchmark: a multi-turn Claude Code session replayed turn by turn, and what each turn computes.

Replays a session in the exact shape Claude Code sends it against `parley serve` (a new one on a new data
directory, or `--url`):

1. turn 1 is the captured first request (bench/data/claude_code_first_request.json: Claude Code's system
   blocks, its 12 tools, ~11.5k tokens with qwen2.5-coder-0.5b-instruct; `--first-request` names another);
2. every later turn is the previous request plus a scripted assistant message that calls Read on
   /project/inventory_K.py and the user's tool_result for it (a numbered file of ~`--tool-tokens` tokens) with a
   short text block; the message `cache_control` breakpoint moves onto the new last block, as Claude Code moves
   it (the system blocks keep theirs as captured). The replay does not depend on what the model answers;
3. between two turns, a side request like Claude Code's own small ones (another system prompt, no tools, one
   user message of a few hundred tokens; `--no-side-requests` leaves them out), timed apart from the turns.

Every request streams with max_tokens 8 and temperature 0: prompt processing is what is measured. Usage comes from
`message_start`, updated by `message_delta`'s (parley's message_start waits at most a ping interval for the request
to be placed, so a queued one's tells only in message_delta what the cache held): computed = input_tokens +
cache_creation_input_tokens, cached = cache_read_input_tokens.

Prints per turn the prompt's tokens, the tokens new since the previous turn (the whole prompt on turn 1), the
tokens computed and read from the cache, computed/new and the time to first token; then the session's seconds and
how many turns after the first computed more than 1.1 x their new tokens (the goal: none). With `--sessions N`,
N sessions over distinct projects (the same system prompt and tools, then different conversations) run at once;
the peak RSS of the server's process tree (sampled every 0.5 s; needs the process: a server this script starts,
or `--server-pid`) and each session's TTFT median and max are printed too.

With `--llama-server` the same sessions then run against llama.cpp's own `llama-server` (the native build of
bench/build_llama_server.sh, ~14 min once) on the same GGUF with parley's defaults (context 32768 capped at the
trained length, 4 slots in one unified KV cache, all cores, the GGUF's chat template; its own defaults otherwise,
its host-memory prompt cache included), and the ratio of the sessions' time parley / llama-server is printed
(the goal: <= 0.8).

    .venv/bin/python bench/agent_session.py [--model qwen2.5-coder-0.5b-instruct] [--turns 20] [--tool-tokens 600]
        [--no-side-requests] [--sessions 1] [--url URL [--server-pid PID]] [--first-request PATH]
        [--llama-server] [--json OUT]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from claude_session import module_lines
from common import free_port, start_parley, stop_process, stream_messages, wait_healthy

REQUEST = Path(__file__).parent / "data" / "claude_code_first_request.json"
MESSAGES_PATH = "/v1/messages?beta=true"  # where Claude Code posts
CHARS_PER_TOKEN = 2.4  # numbered Python source, measured with the Qwen2.5 tokenizer
SIDE_TOKENS = 300
SIDE_SYSTEM = "Summarize this coding session in a 5-word title."
GOAL_FACTOR = 1.1
BREAKPOINT = {"type": "ephemeral"}


def load_first_request(path: Path) -> tuple[dict, str]:
    """The captured request in `path` ({"claude_code": version, "request": {...}}, or the bare request) and the
    Claude Code version that sent it."""
    data = json.loads(path.read_text())
    if "request" in data:
        return data["request"], str(data.get("claude_code", "?"))
    return data, "?"


def tool_file(k: int, session: int, tokens: int) -> str:
    """File `k` of project `session` numbered as Claude Code's Read returns it, cut to ~`tokens` tokens."""
    budget = tokens * CHARS_PER_TOKEN
    lines: list[str] = []
    size = 0
    for i, line in enumerate(module_lines(session * 1000 + k), 1):
        numbered = f"{i:>6}\t{line}"
        if lines and size + len(numbered) + 1 > budget:
            break
        lines.append(numbered)
        size += len(numbered) + 1
    return "\n".join(lines)


def file_path(k: int, session: int) -> str:
    return f"/project/inventory_{k}.py" if session == 0 else f"/project{session}/inventory_{k}.py"


def _blocks(message: dict) -> list[dict]:
    """The message's content as a list of blocks (a string becomes one text block)."""
    if isinstance(message["content"], str):
        message["content"] = [{"type": "text", "text": message["content"]}]
    return message["content"]


def _move_breakpoint(messages: list[dict]) -> None:
    """Only the last block of the last message keeps a message breakpoint, as Claude Code sends it."""
    for message in messages:
        if isinstance(message["content"], list):
            for block in message["content"]:
                block.pop("cache_control", None)
    _blocks(messages[-1])[-1]["cache_control"] = dict(BREAKPOINT)


def _first_body(request: dict, model: str, session: int) -> dict:
    """Turn 1: the captured request for `model`, streamed, 8 tokens at temperature 0; another project's user
    prompt for sessions after the first (the system prompt and tools stay shared)."""
    body = {**copy.deepcopy(request), "model": model, "max_tokens": 8, "stream": True, "temperature": 0}
    if session:
        first = body["messages"][0]
        if isinstance(first["content"], str):
            first["content"] += f"\nThis is project {session}."
        else:
            first["content"][-1]["text"] += f"\nThis is project {session}."
    return body


def _next_body(previous: dict, k: int, session: int, tool_tokens: int) -> dict:
    """The previous turn's request plus the assistant's Read of file `k` and the user's tool_result for it."""
    body = copy.deepcopy(previous)
    call = f"toolu_bench{session:03d}{k:05d}"
    body["messages"] += [
        {"role": "assistant", "content": [{"type": "tool_use", "id": call, "name": "Read",
                                           "input": {"file_path": file_path(k, session)}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call,
                                      "content": tool_file(k, session, tool_tokens)},
                                     {"type": "text", "text": f"Now read inventory_{k + 1}.py as well."}]}]
    _move_breakpoint(body["messages"])
    return body


def session_requests(request: dict, model: str, turns: int, tool_tokens: int, session: int = 0) -> list[dict]:
    """The `turns` request bodies of one session, each a prefix of the next."""
    bodies = [_first_body(request, model, session)]
    for k in range(1, turns):
        bodies.append(_next_body(bodies[-1], k, session, tool_tokens))
    return bodies


def side_request(model: str, after_turn: int, session: int) -> dict:
    """A small request of Claude Code's own kind (a title for the session), sent after turn `after_turn`: another
    system prompt, no tools, one user message of a few hundred tokens."""
    read = after_turn - 1  # turn t holds the Reads of files 1 .. t-1
    text = (f"The user asked what the inventory modules of project {session} define; the assistant has read "
            f"{read} of them with the Read tool. The latest one begins:\n\n")
    return {"model": model, "max_tokens": 8, "stream": True, "temperature": 0,
            "system": [{"type": "text", "text": SIDE_SYSTEM}],
            "messages": [{"role": "user", "content": text + tool_file(max(read, 1), session, SIDE_TOKENS)}]}


def measure(url: str, body: dict) -> dict:
    """Stream `body`: seconds to the first content delta and in all, and the usage of `message_start`."""
    started = time.monotonic()
    ttft, usage = None, {}
    for event in stream_messages(url, body, MESSAGES_PATH):
        if event["type"] == "message_start":
            usage = dict(event["message"]["usage"])
        elif event["type"] == "message_delta":  # the final count (parley's message_start goes out before a
            usage.update(event.get("usage") or {})  # queued request is placed; llama-server's has output only)
        elif event["type"] == "content_block_delta" and ttft is None:
            ttft = time.monotonic() - started
    seconds = time.monotonic() - started
    computed = usage.get("input_tokens", 0) + (usage.get("cache_creation_input_tokens") or 0)
    cached = usage.get("cache_read_input_tokens") or 0
    return {"prompt": computed + cached, "computed": computed, "cached": cached,
            "ttft_s": round(ttft if ttft is not None else seconds, 3), "seconds": round(seconds, 3)}


def run_session(url: str, bodies: list[dict], side: bool, session: int = 0) -> dict:
    """Send the turns in order (with a side request between two); a row per turn, and the side requests."""
    started = time.monotonic()
    rows: list[dict] = []
    sides: list[dict] = []
    for turn, body in enumerate(bodies, 1):
        if side and turn > 1:
            sides.append({"after_turn": turn - 1, **measure(url, side_request(body["model"], turn - 1, session))})
        row = {"turn": turn, **measure(url, body)}
        row["new"] = row["prompt"] - (rows[-1]["prompt"] if rows else 0)
        row["ratio"] = round(row["computed"] / row["new"], 3) if row["new"] > 0 else None
        rows.append(row)
    return {"session": session, "seconds": round(time.monotonic() - started, 2), "turns": rows, "side": sides}


def misses(result: dict) -> int:
    """Turns after the first that computed more than GOAL_FACTOR x their new tokens."""
    return sum(row["computed"] > GOAL_FACTOR * row["new"] for row in result["turns"][1:])


def tree_rss(pid: int) -> int:
    """Resident bytes of process `pid` and all its descendants (0 once it is gone)."""
    try:
        import psutil
    except ImportError:
        return _proc_tree_rss(pid)
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def _proc_tree_rss(pid: int) -> int:
    """tree_rss from /proc, without psutil."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total


class PeakRss:
    """Samples tree_rss(pid) every `interval` seconds in a thread until stopped; `peak` is the largest."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def print_session(result: dict) -> None:
    """The turn table of one session, its seconds and its goal."""
    print(f"session {result['session']}: {len(result['turns'])} turns in {result['seconds']:.1f} s")
    print(f"{'turn':>4} {'prompt':>7} {'new':>6} {'computed':>8} {'cached':>7} {'comp/new':>8} {'TTFT s':>7}")
    for row in result["turns"]:
        ratio = f"{row['ratio']:8.2f}" if row["ratio"] is not None else f"{'-':>8}"
        print(f"{row['turn']:4d} {row['prompt']:7d} {row['new']:6d} {row['computed']:8d} {row['cached']:7d} "
              f"{ratio} {row['ttft_s']:7.2f}")
    if result["side"]:
        ttfts = [side["ttft_s"] for side in result["side"]]
        print(f"side requests: {len(ttfts)}, TTFT median {statistics.median(ttfts):.2f} s, max {max(ttfts):.2f} s")


def print_summary(results: list[dict], peak_rss: int | None) -> int:
    """Per-session TTFT and the goal over all sessions; returns the number of misses."""
    if len(results) > 1:
        print(f"{'session':>7} {'TTFT median':>11} {'TTFT max':>9} {'seconds':>8}")
        for result in results:
            ttfts = [row["ttft_s"] for row in result["turns"]]
            print(f"{result['session']:7d} {statistics.median(ttfts):11.2f} {max(ttfts):9.2f} "
                  f"{result['seconds']:8.1f}")
        print(f"peak RSS of the server: {peak_rss / 1e6:.0f} MB" if peak_rss else "peak RSS of the server: n/a")
    total = sum(misses(result) for result in results)
    turns = sum(len(result["turns"]) - 1 for result in results)
    print(f"turns after the first computing > {GOAL_FACTOR} x new: {total} of {turns} "
          f"-> goal (0) {'met' if total == 0 else 'NOT met'}")
    return total


def _run_all(url: str, bodies: list[list[dict]], side: bool, pid: int | None) -> tuple[list[dict], int | None]:
    """The sessions, at once when there are several (sampling the server's memory if `pid` is known)."""
    if len(bodies) == 1:
        return [run_session(url, bodies[0], side)], None
    sampler = PeakRss(pid) if pid else None
    with sampler or contextlib.nullcontext(), ThreadPoolExecutor(len(bodies)) as pool:
        results = list(pool.map(lambda s: run_session(url, bodies[s], side, s), range(len(bodies))))
    return results, sampler.peak if sampler else None


def _serve(model: str, data_dir: Path) -> tuple[subprocess.Popen, str]:
    return start_parley("--model", model, "--preload", "--data-dir", str(data_dir), log=data_dir / "parley.log")


def _serve_llama_server(model: str, log: Path) -> tuple[subprocess.Popen, str]:
    """llama-server (native build) on `model`'s GGUF, with parley serve's defaults for context, slots and threads."""
    from parley.models.registry import ModelRegistry
    from parley.settings import Settings

    settings = Settings()
    path = ModelRegistry(settings).resolve(model).locate(settings.cache_dir)
    binary = subprocess.run(["bash", str(Path(__file__).parent / "build_llama_server.sh"), "--native"], check=True,
                            capture_output=True, text=True).stdout.strip().splitlines()[-1]
    threads, port = str(os.cpu_count() or 1), free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([binary, "-m", str(path), "-c", str(settings.n_ctx), "-np", str(settings.parallel),
                                 "-kvu", "-t", threads, "-tb", threads, "--jinja", "--no-webui", "--host", "127.0.0.1",
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, url, 300, "llama-server")
    except RuntimeError:
        stop_process(proc)
        raise
    return proc, url


def print_comparison(ours: list[dict], theirs: list[dict], wall: float, their_wall: float) -> float:
    """Per-turn TTFT of both servers (medians over sessions) and the ratio of the sessions' time."""
    print(f"{'turn':>4} {'parley TTFT':>11} {'llama-server TTFT':>17} {'ratio':>6}")
    for i in range(len(ours[0]["turns"])):
        mine = statistics.median(result["turns"][i]["ttft_s"] for result in ours)
        other = statistics.median(result["turns"][i]["ttft_s"] for result in theirs)
        print(f"{i + 1:4d} {mine:11.2f} {other:17.2f} {mine / other:6.2f}")
    ratio = wall / their_wall
    print(f"sessions' time: parley {wall:.1f} s, llama-server {their_wall:.1f} s -> ratio {ratio:.2f} "
          f"(goal <= 0.8: {'met' if ratio <= 0.8 else 'NOT met'})")
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--first-request", type=Path, default=REQUEST, help="the captured first request (JSON)")
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--tool-tokens", type=int, default=600, help="~tokens of each Read tool result")
    parser.add_argument("--side-requests", action=argparse.BooleanOptionalAction, default=True,
                        help="a small side request between two turns (default: on)")
    parser.add_argument("--sessions", type=int, default=1, help="sessions over distinct projects, run at once")
    parser.add_argument("--url", help="a running parley server instead of a new one")
    parser.add_argument("--server-pid", type=int, help="with --url: the server process, to sample its memory")
    parser.add_argument("--llama-server", action="store_true",
                        help="then the same sessions against llama-server on the same GGUF, and the time ratio")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    request, version = load_first_request(args.first_request)
    bodies = [session_requests(request, args.model, args.turns, args.tool_tokens, s) for s in range(args.sessions)]
    started = time.monotonic()
    if args.url:
        results, peak = _run_all(args.url.rstrip("/"), bodies, args.side_requests, args.server_pid)
    else:
        with tempfile.TemporaryDirectory() as data:
            proc, url = _serve(args.model, Path(data))
            try:
                started = time.monotonic()
                results, peak = _run_all(url, bodies, args.side_requests, proc.pid)
            finally:
                stop_process(proc, 60)
    wall = time.monotonic() - started
    print(f"{args.model}; Claude Code {version} first request ({args.first_request.name}), "
          f"{len(request.get('tools', []))} tools; {args.turns} turns of ~{args.tool_tokens}-token Read results; "
          f"side requests {'on' if args.side_requests else 'off'}; {args.sessions} session(s)")
    for result in results:
        print_session(result)
    total = print_summary(results, peak)
    print(f"total: {wall:.1f} s")
    baseline: dict = {}
    if args.llama_server:
        with tempfile.TemporaryDirectory() as scratch:
            proc, url = _serve_llama_server(args.model, Path(scratch) / "llama-server.log")
            try:
                their_started = time.monotonic()
                theirs, their_peak = _run_all(url, bodies, args.side_requests, proc.pid)
                their_wall = time.monotonic() - their_started
            finally:
                stop_process(proc, 60)
        print("\nllama-server, the same sessions:")
        for result in theirs:
            print_session(result)
        print_summary(theirs, their_peak)
        ratio = print_comparison(results, theirs, wall, their_wall)
        baseline = {"llama_server": {"sessions": theirs, "seconds": round(their_wall, 2),
                                     "peak_rss_mb": round(their_peak / 1e6) if their_peak else None},
                    "time_ratio": round(ratio, 3)}
    if args.json:
        args.json.write_text(json.dumps({
            "model": args.model, "claude_code": version, "first_request": str(args.first_request),
            "turns": args.turns, "tool_tokens": args.tool_tokens, "side_requests": args.side_requests,
            "sessions": results, "peak_rss_mb": round(peak / 1e6) if peak else None, "seconds": round(wall, 2),
            "goal_misses": total, "goal_met": total == 0, **baseline}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
