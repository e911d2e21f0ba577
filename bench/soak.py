"""Soak: many concurrent clients against one real server, a share of them leaving mid-stream.

Checks, in one run: every completed response is well-formed (event order, indices, usage); a full queue
answers 529 `overloaded_error` with `retry-after`; no generation keeps running after its client left (the
engine-side counters in /health go back to zero and stay there); resident memory grows < 5 % from the first
fifth of the requests to the end. Prints the figures (and p50/p99 time to first token) as JSON.

With --kill-every N the model's child process is killed (SIGKILL, its pid from /health) about every N
requests: then every client must still get a well-formed answer, or a well-formed crash error — an in-stream
`error` event that ends its stream, or a 500 `api_error` envelope — and the API process's memory stays flat.

    .venv/bin/python bench/soak.py [--clients 100] [--requests 1000] [--model smollm2-135m-instruct] [--kill-every 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


@dataclass
class Tally:
    completed: int = 0
    disconnected: int = 0
    overloaded: int = 0
    malformed: list[str] = field(default_factory=list)
    server_errors: int = 0
    crashed: int = 0  # ended by a well-formed "model process crashed" error
    kills: int = 0
    ttft: list[float] = field(default_factory=list)
    rss: dict[int, int] = field(default_factory=dict)  # requests sent so far → server RSS in kB


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def is_crash_error(body: dict) -> bool:
    error = body.get("error") or {}
    return body.get("type") == "error" and error.get("type") == "api_error" and "crashed" in error.get("message", "")


def check_stream(events: list[tuple[str, dict]]) -> str | None:
    """None when the events form a whole, well-ordered Messages stream (or one a crash error ended)."""
    names = [n for n, _ in events if n != "ping"]
    if names and names[-1] == "error":
        if names[0] != "message_start" or not is_crash_error(events[-1][1]):
            return f"bad error frame: {names[:3]}…{events[-1][1]}"
        return check_blocks(events)
    if not names or names[0] != "message_start" or names[-1] != "message_stop" or names[-2] != "message_delta":
        return f"bad frame: {names[:3]}…{names[-3:]}"
    usage = events[-2][1]["usage"]
    return check_blocks(events) or (None if usage["output_tokens"] >= 1 else "no output tokens")


def check_blocks(events: list[tuple[str, dict]]) -> str | None:
    """Content blocks open, carry deltas and close in index order."""
    open_index, expected = None, 0
    for name, data in events:
        if name == "content_block_start":
            if open_index is not None or data["index"] != expected:
                return f"block start {data['index']} while {open_index} open, expected {expected}"
            open_index = data["index"]
        elif name == "content_block_delta" and data["index"] != open_index:
            return "delta outside its block"
        elif name == "content_block_stop":
            if data["index"] != open_index:
                return "stop of a block that is not open"
            open_index, expected = None, expected + 1
    return None


async def one_request(client: httpx.AsyncClient, url: str, model: str, max_tokens: int, leave: bool,
                      stream: bool, tally: Tally) -> None:
    body = {"model": model, "max_tokens": max_tokens, "stream": stream, "temperature": 0.7,
            "messages": [{"role": "user", "content": f"Tell me fact number {random.randint(1, 10**6)} about the sea."}]}
    started = time.perf_counter()
    if not stream:
        response = await client.post(url + "/v1/messages", json=body)
        await record_status(response, tally)
        if response.status_code == 200:
            data = response.json()
            ok = data["type"] == "message" and data["content"] and data["usage"]["output_tokens"] >= 1
            tally.completed += ok
            if not ok:
                tally.malformed.append(f"message: {data}")
        return
    async with client.stream("POST", url + "/v1/messages", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            await record_status(response, tally)
            return
        events, name, leave_after = [], None, random.randint(1, 6)
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
                if name == "content_block_delta" and sum(n == name for n, _ in events) == 1:
                    tally.ttft.append(time.perf_counter() - started)
                if leave and sum(n == "content_block_delta" for n, _ in events) >= leave_after:
                    tally.disconnected += 1
                    return  # leaving the block closes the connection mid-stream
        problem = check_stream(events)
        if problem:
            tally.malformed.append(problem)
        elif events and events[-1][0] == "error":
            tally.crashed += 1
        else:
            tally.completed += 1


async def record_status(response: httpx.Response, tally: Tally) -> None:
    if response.status_code == 529:
        body = response.json()
        if body["error"]["type"] != "overloaded_error" or "retry-after" not in response.headers:
            tally.malformed.append(f"529 without its envelope or retry-after: {body}")
        tally.overloaded += 1
    elif response.status_code == 500 and is_crash_error(response.json()):
        tally.crashed += 1
    elif response.status_code >= 500:
        tally.server_errors += 1
    elif response.status_code != 200:
        tally.malformed.append(f"unexpected {response.status_code}: {response.text[:200]}")


def kill_model_process(url: str, model: str) -> bool:
    pid = httpx.get(url + "/health").json()["models"].get(model, {}).get("pid")
    if not pid:
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:  # already being replaced
        return False
    return True


async def drive(url: str, pid: int, model: str, clients: int, requests: int, max_tokens: int,
                leave_share: float, kill_every: int = 0) -> Tally:
    tally, sent = Tally(), 0
    next_kill = random.randint(kill_every // 2, kill_every * 3 // 2) if kill_every else 0
    limits = httpx.Limits(max_connections=clients * 2, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        async def worker() -> None:
            nonlocal sent
            nonlocal next_kill
            while sent < requests:
                sent += 1
                if next_kill and sent >= next_kill:
                    next_kill = sent + random.randint(kill_every // 2, kill_every * 3 // 2)
                    tally.kills += await asyncio.to_thread(kill_model_process, url, model)
                if sent % max(1, requests // 5) == 0:
                    tally.rss[sent] = rss_kb(pid)
                stream = random.random() < 0.75
                leave = stream and random.random() < leave_share * 4 / 3  # a third of all requests
                overloaded = tally.overloaded
                await one_request(client, url, model, max_tokens, leave, stream, tally)
                if tally.overloaded > overloaded:
                    await asyncio.sleep(random.uniform(0.5, 1.0))  # as an SDK honours retry-after: 1

        await asyncio.gather(*(worker() for _ in range(clients)))
    tally.rss[requests] = rss_kb(pid)
    return tally


def engine_settles(url: str, model: str, timeout: float = 60) -> dict:
    """Wait for the engine-side counters to reach zero, then check that nothing generates any more."""
    deadline = time.monotonic() + timeout
    state: dict = {}
    while time.monotonic() < deadline:
        state = httpx.get(url + "/health").json()["models"].get(model, {})
        if state.get("active_generations") == 0 and state.get("admitted") == 0 and not state.get("busy_slots"):
            break
        time.sleep(0.1)
    time.sleep(1.0)
    later = httpx.get(url + "/health").json()["models"].get(model, {})
    return {"settled": state.get("active_generations") == 0 and state.get("admitted") == 0,
            "tokens_after_settle": later.get("tokens_generated", 0) - state.get("tokens_generated", 0),
            "restarts": later.get("restarts")}


def soak(clients: int, requests: int, model: str, max_tokens: int, leave_share: float,
         server_args: list[str], kill_every: int = 0) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "parley.cli", "serve", "--port", str(port), "--log-level",
                             "warning", *server_args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        httpx.post(url + "/v1/messages", timeout=300, json={"model": model, "max_tokens": 1,
                                                            "messages": [{"role": "user", "content": "hi"}]})
        started = time.monotonic()
        tally = asyncio.run(drive(url, proc.pid, model, clients, requests, max_tokens, leave_share, kill_every))
        elapsed = time.monotonic() - started
        settle = engine_settles(url, model)
    finally:
        proc.terminate()
        proc.wait(30)
    marks = sorted(tally.rss)
    base = tally.rss[marks[0]] or 1
    return {
        "clients": clients, "requests": requests, "seconds": round(elapsed, 1),
        "completed": tally.completed, "disconnected": tally.disconnected, "overloaded_529": tally.overloaded,
        "server_errors_5xx": tally.server_errors, "crashed": tally.crashed, "kills": tally.kills,
        "restarts": settle.pop("restarts"), "malformed": tally.malformed[:10],
        "malformed_count": len(tally.malformed),
        "ttft_p50_s": round(statistics.median(tally.ttft), 3) if tally.ttft else None,
        "ttft_p99_s": round(statistics.quantiles(tally.ttft, n=100)[98], 3) if len(tally.ttft) > 2 else None,
        "rss_kb": tally.rss, "rss_growth": round(tally.rss[marks[-1]] / base - 1, 4), **settle,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--max-queue", type=int, default=88, help="with 8 slots: 96 admitted, the rest 529")
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--kill-every", type=int, default=0, help="SIGKILL the model's process about every N requests")
    args = parser.parse_args()
    result = soak(args.clients, args.requests, args.model, args.max_tokens, 1 / 3,
                  ["--max-queue", str(args.max_queue), "--parallel", str(args.parallel)], args.kill_every)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
