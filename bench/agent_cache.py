"""Persistent prompt cache benchmark: an agent's first request, cold, warm in RAM, and after a restart.

Replays a captured Claude Code first request (~12k tokens, its 12 tools; `--capture` records a fresh one
from the pinned Claude Code into bench/data/) against `parley serve` over one new data directory:

1. cold: a new server, an empty disk cache;
2. warm: the same request again (the prefix is in RAM);
3. restart: a new server process on the same data directory, the same request (restored from disk);
4. new session: another restart, the same tools and system prompt with another user prompt (the shared
   prefix is restored, the rest computed);
5. new folder: the first request of a project not seen before (Claude Code's system prompt names the
   project's memory folder), captured in two folders, cold in one and then after a restart in the other:
   once as Claude Code sends it by default, once with `--exclude-dynamic-system-prompt-sections` (what
   `parley launch claude` passes), which moves those lines into the first user message.

Prints time to first token and `cache_read_input_tokens` of each, with its ratio to cold.

    .venv/bin/python bench/agent_cache.py [--model qwen2.5-coder-0.5b-instruct] [--capture] [--json OUT]
        [--skip-new-folder]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from common import start_parley, stop_process, stream_messages

REQUEST = Path(__file__).parent / "data" / "claude_code_first_request.json"
FOLDERS = Path(__file__).parent / "data" / "claude_code_first_request_in_two_folders.json"


def capture(out: Path) -> None:
    """Claude Code's first request, recorded into `out`."""
    from claude_code import CLAUDE_CODE_VERSION

    request = first_request()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"claude_code": CLAUDE_CODE_VERSION, "request": request}, indent=1))
    print(f"captured {len(json.dumps(request))} bytes, {len(request.get('tools', []))} tools into {out}")


def capture_folders(out: Path) -> None:
    """Claude Code's first request in two project folders, by default and with the flag parley launch adds."""
    from claude_code import CLAUDE_CODE_VERSION

    from parley.commands.launch import EXCLUDE_DYNAMIC_SECTIONS

    requests = {"default": [first_request(folder=name) for name in ("shop-api", "garden-app")],
                "exclude": [first_request(folder=name, args=(EXCLUDE_DYNAMIC_SECTIONS,))
                            for name in ("shop-api", "garden-app")]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"claude_code": CLAUDE_CODE_VERSION, "requests": requests}, indent=1))
    print(f"captured the first requests in two folders into {out}")


def first_request(folder: str = "", args: tuple[str, ...] = ()) -> dict:
    """Run Claude Code (in `folder` under a new home) against a recorder that keeps its first /v1/messages
    body, then stop it."""
    from claude_code import claude_binary

    got: list[dict] = []
    done = threading.Event()

    class Recorder(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            if self.path.startswith("/v1/messages") and not self.path.startswith("/v1/messages/count"):
                got.append(body)
                done.set()
            self.send_response(529)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE"))}
        env.update(HOME=tmp, ANTHROPIC_BASE_URL=f"http://127.0.0.1:{server.server_address[1]}",
                   ANTHROPIC_API_KEY="not-needed", ANTHROPIC_MODEL="parley", ANTHROPIC_SMALL_FAST_MODEL="parley",
                   CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", DISABLE_AUTOUPDATER="1")
        project = Path(tmp) / folder
        project.mkdir(exist_ok=True)
        proc = subprocess.Popen([str(claude_binary()), *args, "-p", "What does hello.py print? Read the file first.",
                                 "--output-format", "json"], cwd=project, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        done.wait(120)
        proc.kill()
    server.shutdown()
    if not got:
        raise RuntimeError("Claude Code sent no request")
    return got[0]


def _serve(model: str, data_dir: Path) -> tuple[subprocess.Popen, str]:
    return start_parley("--model", model, "--preload", "--data-dir", str(data_dir))


def _first_token(url: str, body: dict) -> dict:
    """Stream `body`; seconds to the first content delta, and the usage parley reported."""
    started = time.monotonic()
    ttft, usage = None, {}
    for event in stream_messages(url, body, "/v1/messages?beta=true"):
        if event["type"] == "message_start":
            usage = event["message"]["usage"]
        elif event["type"] == "content_block_delta" and ttft is None:
            ttft = time.monotonic() - started
    return {"ttft_s": round(ttft if ttft is not None else time.monotonic() - started, 2),
            "input_tokens": sum(usage.get(k, 0) for k in ("input_tokens", "cache_read_input_tokens",
                                                            "cache_creation_input_tokens")),
            "cache_read_input_tokens": usage.get("cache_read_input_tokens", 0)}


def _bodies(request: dict, model: str) -> tuple[dict, dict]:
    body = {**copy.deepcopy(request), "model": model, "max_tokens": 8, "stream": True, "temperature": 0}
    other = copy.deepcopy(body)  # another session: the same system prompt and tools, another task
    first = other["messages"][0]
    task = {"type": "text", "text": "List the Python files here and say which is the longest."}
    if isinstance(first["content"], str):
        first["content"] = task["text"]
    else:
        first["content"][-1] = task
    return body, other


def _new_folder(model: str, kind: str, first: dict, second: dict) -> dict[str, dict]:
    """The first folder's request cold on a new data directory; after a restart, the second folder's."""
    with tempfile.TemporaryDirectory() as data:
        proc, url = _serve(model, Path(data))
        rows = {f"new folder, {kind}: cold": _first_token(url, first)}
        time.sleep(2)
        stop_process(proc, 60)
        proc, url = _serve(model, Path(data))
        rows[f"new folder, {kind}"] = _first_token(url, second)
        stop_process(proc, 60)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--request", type=Path, default=REQUEST)
    parser.add_argument("--capture", action="store_true", help="record a fresh request from Claude Code first")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--skip-new-folder", action="store_true", help="leave out the new-folder rows")
    args = parser.parse_args()
    if args.capture or not args.request.exists():
        capture(args.request)
    if not args.skip_new_folder and (args.capture or not FOLDERS.exists()):
        capture_folders(FOLDERS)
    captured = json.loads(args.request.read_text())
    body, other = _bodies(captured["request"], args.model)
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as data:
        proc, url = _serve(args.model, Path(data))
        rows["cold"] = _first_token(url, body)
        rows["warm (RAM)"] = _first_token(url, body)
        time.sleep(2)  # the store writes off the decode path; give it the moment a real restart would
        stop_process(proc, 60)
        proc, url = _serve(args.model, Path(data))
        rows["restart (disk)"] = _first_token(url, body)
        stop_process(proc, 60)
        proc, url = _serve(args.model, Path(data))
        rows["restart, new session"] = _first_token(url, other)
        files = sorted((Path(data) / "prompt-cache").glob("*.kv"))
        disk_mb = sum(f.stat().st_size for f in files) / 1e6
        stop_process(proc, 60)
    if not args.skip_new_folder:
        for kind, requests in json.loads(FOLDERS.read_text())["requests"].items():
            rows |= _new_folder(args.model, kind, *(_bodies(r, args.model)[0] for r in requests))
    cold = rows["cold"]["ttft_s"]
    print(f"{args.model}; Claude Code {captured.get('claude_code')} first request, "
          f"{len(body.get('tools', []))} tools; disk cache {len(files)} files, {disk_mb:.0f} MB")
    print(f"{'run':32} {'prompt':>7} {'cached':>7} {'TTFT s':>8} {'x cold':>7}")
    for name, row in rows.items():
        row["ratio_to_cold"] = round(row["ttft_s"] / cold, 3)
        print(f"{name:32} {row['input_tokens']:7d} {row['cache_read_input_tokens']:7d} {row['ttft_s']:8.2f} "
              f"{row['ratio_to_cold']:7.3f}")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "runs": rows, "disk_mb": round(disk_mb)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
