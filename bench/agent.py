"""Agent benchmark: real Claude Code and Codex (pinned, from npm) doing small tasks against a parley server.

Each task runs in a fresh directory; a task succeeds when its own check passes (the answer names a secret
read from a file, the file was edited, the count is right). Prints, per agent, task and overall: success
rate, requests per task, prompt tokens parley computed (the rest came from its prefix cache), seconds per
task, the tools the agent called, and whether parley answered every request well (2xx, well-formed streams).
Claude Code talks to the Messages API, Codex (`codex exec`, workspace-write sandbox) to the Responses API;
Codex has no turn limit of its own, so its requests past `--max-requests` are refused by the recording proxy.

    .venv/bin/python bench/agent.py [--agent claude|codex|both] [--runs 3] [--model qwen2.5-coder-0.5b-instruct]
                                    [--url URL] [--tasks read,edit,count] [--max-requests 8] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import codex
import httpx
from claude_code import claude_binary, run_task
from common import free_port, stop_process


@dataclass(frozen=True)
class Task:
    name: str
    prompt: str
    setup: Callable[[Path], None]
    check: Callable[[Path, str], bool]
    args: tuple[str, ...] = ()  # Claude Code's
    codex_prompt: str | None = None  # where the prompt names a Claude Code tool


def _read_setup(d: Path) -> None:
    (d / "hello.py").write_text('SECRET = "tangerine-47"\nprint(f"the secret is {SECRET}")\n')


def _edit_setup(d: Path) -> None:
    (d / "config.py").write_text("NAME = 'demo'\nDEBUG = True\nPORT = 8080\n")


def _count_setup(d: Path) -> None:
    (d / "data").mkdir()
    for i in range(7):
        (d / "data" / f"note{i}.txt").write_text(f"note {i}\n")
    (d / "data" / "readme.md").write_text("not a txt file\n")


TASKS = [
    Task("read", "What does hello.py print? Read the file first.", _read_setup,
         lambda d, answer: "tangerine-47" in answer),
    Task("edit", "In config.py, change DEBUG = True to DEBUG = False. Use the Edit tool.", _edit_setup,
         lambda d, answer: "DEBUG = False" in (d / "config.py").read_text(),
         ("--permission-mode", "acceptEdits"), "In config.py, change DEBUG = True to DEBUG = False."),
    Task("count", "How many .txt files are in the data directory? List the files, then answer with the number.",
         _count_setup, lambda d, answer: "7" in answer or "seven" in answer.lower()),
]


def _start_server(model: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "parley.cli", "serve", "--port", str(port), "--model", model,
                             "--preload"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("parley did not start")


def _one(agent: str, binary: Path, url: str, model: str, task: Task, root: Path, i: int, context: int,
         max_requests: int) -> dict:
    workdir = root / f"{agent}-{task.name}-{i}"
    workdir.mkdir()
    task.setup(workdir)
    if agent == "codex":
        run = codex.run_task(binary, url, model, task.codex_prompt or task.prompt, workdir, root / "codex-home",
                             max_requests=max_requests, context=context)
        answer, requests, capped = run.answer, len(run.responses), run.refused > 0
    else:
        run = run_task(binary, url, model, task.prompt, workdir, root / "home", extra_args=task.args)
        answer, requests, capped = str(run.result.get("result", "")), len(run.exchanges), False
    return {"agent": agent, "task": task.name, "ok": run.returncode == 0 and task.check(workdir, answer),
            "exit": run.returncode, "requests": requests, "prompt_tokens": run.prompt_tokens,
            "seconds": round(run.seconds, 1), "tools": run.tools_called, "server_problems": run.problems,
            "capped": capped, "answer": answer[:300]}


def _table(rows: list[dict]) -> str:
    lines = ["| agent | task | runs | success | requests/task | computed prompt tokens/task | s/task "
             "| server problems |", "|---|---|---|---|---|---|---|---|"]
    for agent in dict.fromkeys(r["agent"] for r in rows):
        for name in [t.name for t in TASKS] + ["all"]:
            sel = [r for r in rows if r["agent"] == agent and name in ("all", r["task"])]
            if not sel:
                continue
            lines.append(
                f"| {agent} | {name} | {len(sel)} | {sum(r['ok'] for r in sel)}/{len(sel)} "
                f"| {statistics.mean(r['requests'] for r in sel):.1f} "
                f"| {statistics.mean(r['prompt_tokens'] for r in sel):,.0f} "
                f"| {statistics.mean(r['seconds'] for r in sel):.0f} "
                f"| {sum(len(r['server_problems']) for r in sel)} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="runs of each task")
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--url", help="an already running parley (default: start one)")
    ap.add_argument("--tasks", default=",".join(t.name for t in TASKS))
    ap.add_argument("--agent", choices=["claude", "codex", "both"], default="claude")
    ap.add_argument("--max-requests", type=int, default=8, help="Codex's requests per task (it has no turn limit)")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    agents = ["claude", "codex"] if args.agent == "both" else [args.agent]
    binaries = {agent: claude_binary() if agent == "claude" else codex.codex_binary() for agent in agents}
    proc, url = (None, args.url) if args.url else _start_server(args.model)
    rows: list[dict] = []
    try:
        context = next(m for m in httpx.get(url + "/v1/models", timeout=10).json()["data"]
                       if m["id"] == args.model)["max_input_tokens"]
        with tempfile.TemporaryDirectory(prefix="parley-agent-") as tmp:
            for i in range(args.runs):
                for task in [t for t in TASKS if t.name in args.tasks.split(",")]:
                    for agent in agents:  # in turn, so that both meet the same server state
                        rows.append(_one(agent, binaries[agent], url, args.model, task, Path(tmp), i, context,
                                         args.max_requests))
                        print(json.dumps(rows[-1]), flush=True)
        alive = httpx.get(url + "/health", timeout=5).status_code == 200
    finally:
        if proc is not None:
            stop_process(proc)
    print(f"\n{time.strftime('%Y-%m-%d')} · {platform.processor() or platform.machine()} · model {args.model} "
          f"· server alive after all runs: {alive}\n")
    print(_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
