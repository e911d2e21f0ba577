"""Agent benchmark: real Claude Code (pinned, from npm) doing small tasks against a parley server.

Each task runs in a fresh directory; a task succeeds when its own check passes (the answer names a secret
read from a file, the file was edited, the count is right). Prints, per task and overall: success rate,
requests per task, prompt tokens parley computed (the rest came from its prefix cache), seconds per task,
the tools Claude Code called, and whether parley answered every request well (2xx, well-formed streams).

    .venv/bin/python bench/agent.py [--runs 3] [--model qwen2.5-coder-0.5b-instruct] [--url URL] [--json OUT]
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

import httpx
from claude_code import TaskRun, claude_binary, run_task
from common import free_port, stop_process


@dataclass(frozen=True)
class Task:
    name: str
    prompt: str
    setup: Callable[[Path], None]
    check: Callable[[Path, str], bool]
    args: tuple[str, ...] = ()


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
         ("--permission-mode", "acceptEdits")),
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


def _one(binary: Path, url: str, model: str, task: Task, root: Path, i: int) -> dict:
    workdir = root / f"{task.name}-{i}"
    workdir.mkdir()
    task.setup(workdir)
    run: TaskRun = run_task(binary, url, model, task.prompt, workdir, root / "home", extra_args=task.args)
    answer = str(run.result.get("result", ""))
    return {"task": task.name, "ok": run.returncode == 0 and task.check(workdir, answer),
            "exit": run.returncode, "requests": len(run.exchanges), "prompt_tokens": run.prompt_tokens,
            "seconds": round(run.seconds, 1), "tools": run.tools_called, "server_problems": run.problems,
            "answer": answer[:300]}


def _table(rows: list[dict]) -> str:
    lines = ["| task | runs | success | requests/task | computed prompt tokens/task | s/task | server problems |",
             "|---|---|---|---|---|---|---|"]
    for name in [t.name for t in TASKS] + ["all"]:
        sel = [r for r in rows if name in ("all", r["task"])]
        if not sel:
            continue
        lines.append(
            f"| {name} | {len(sel)} | {sum(r['ok'] for r in sel)}/{len(sel)} "
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
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    binary = claude_binary()
    proc, url = (None, args.url) if args.url else _start_server(args.model)
    rows: list[dict] = []
    try:
        with tempfile.TemporaryDirectory(prefix="parley-agent-") as tmp:
            for i in range(args.runs):
                for task in [t for t in TASKS if t.name in args.tasks.split(",")]:
                    rows.append(_one(binary, url, args.model, task, Path(tmp), i))
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
