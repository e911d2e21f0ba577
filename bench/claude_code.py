"""Claude Code as a client: the pinned npm package (cached), a recording proxy in front of a parley server,
and the checks of what parley controls (every request a 2xx, every stream whole and well-ordered).

Used by `tests/test_claude_code.py` (one task) and `bench/agent.py` (many); the proxy also by `bench/codex.py`,
with the Responses API's stream check."""

from __future__ import annotations

import itertools
import json
import os
import platform
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from npm import npm_install
from soak import check_stream

CLAUDE_CODE_VERSION = "2.1.332"
_HOP_BY_HOP = {"host", "content-length", "connection", "transfer-encoding", "keep-alive", "accept-encoding",
               "content-encoding"}


def claude_binary() -> Path:
    """The native Claude Code binary from its platform package (`@anthropic-ai/claude-code-linux-x64`)."""
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine().lower()]
    system = {"Linux": "linux", "Darwin": "darwin"}[platform.system()]
    pkg = f"@anthropic-ai/claude-code-{system}-{arch}"
    modules = npm_install(f"@anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}", f"{pkg}@{CLAUDE_CODE_VERSION}")
    binary = modules / pkg / "claude"
    binary.chmod(0o755)
    return binary


def parse_sse(text: str) -> list[tuple[str, dict]]:
    events, name = [], None
    for line in text.splitlines():
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: ") and name is not None:
            events.append((name, json.loads(line[len("data: "):])))
    return events


def check_messages_stream(text: str) -> str | None:
    """None when `text` is a whole, well-ordered Messages stream."""
    return check_stream(parse_sse(text))


@dataclass
class Exchange:
    method: str
    path: str
    status: int
    request: Any
    response: str
    check: Callable[[str], str | None] = check_messages_stream  # the stream's API's own check

    @property
    def streamed(self) -> bool:
        return self.response.startswith(("event: ", "data: "))

    def problem(self) -> str | None:
        """None when parley answered this request as the API would: a 2xx, and a whole stream if streamed."""
        if not 200 <= self.status < 300:
            return f"{self.method} {self.path} → {self.status}: {self.response[:500]}"
        if self.streamed and (bad := self.check(self.response)):
            return f"{self.method} {self.path}: malformed stream: {bad}"
        return None

    @property
    def stop_reason(self) -> str | None:
        """The answer's stop_reason: from the stream's message_delta, or the JSON message."""
        if self.streamed:
            deltas = [d for n, d in parse_sse(self.response) if n == "message_delta"]
            return deltas[-1]["delta"].get("stop_reason") if deltas else None
        try:
            return json.loads(self.response).get("stop_reason")
        except (ValueError, AttributeError):
            return None

    def tool_calls(self) -> list[str]:
        if self.streamed:
            return [d["content_block"]["name"] for n, d in parse_sse(self.response)
                    if n == "content_block_start" and d["content_block"]["type"] == "tool_use"]
        try:
            return [b["name"] for b in json.loads(self.response).get("content", []) if b.get("type") == "tool_use"]
        except (ValueError, AttributeError):
            return []


class RecordingProxy:
    """Forwards every request to `upstream` as it streams, and keeps a copy of both sides.

    `max_posts` bounds an agent that has no turn limit of its own (Codex): the POSTs after that many are not
    forwarded but refused by the proxy itself with a 400 (which agents do not retry), counted in `refused`."""

    def __init__(self, upstream: str, check: Callable[[str], str | None] = check_messages_stream,
                 max_posts: int | None = None) -> None:
        self.exchanges: list[Exchange] = []
        self.refused = 0
        lock = threading.Lock()
        client = httpx.Client(base_url=upstream, timeout=httpx.Timeout(None))
        proxy = self
        posts = itertools.count(1)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # the body ends when the connection closes: no re-framing needed

            def _refuse(self) -> None:
                proxy.refused += 1
                body = json.dumps({"error": {"type": "invalid_request_error", "code": "test_request_cap",
                                             "message": f"the test's cap of {max_posts} requests is reached "
                                                        "(answered by the recording proxy, not parley)"}})
                self.send_response(400)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.command == "POST" and max_posts is not None:
                    with lock:
                        capped = next(posts) > max_posts
                    if capped:
                        self._refuse()
                        return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                received = bytearray()
                with client.stream(self.command, self.path, headers=headers, content=body) as response:
                    self.send_response(response.status_code)
                    for key, value in response.headers.items():
                        if key.lower() not in _HOP_BY_HOP:
                            self.send_header(key, value)
                    self.end_headers()
                    for chunk in response.iter_raw():
                        received += chunk
                        self.wfile.write(chunk)
                        self.wfile.flush()
                try:
                    request = json.loads(body) if body else None
                except ValueError:
                    request = body.decode(errors="replace")
                with lock:
                    proxy.exchanges.append(Exchange(self.command, self.path, response.status_code, request,
                                                    received.decode(errors="replace"), check))

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class TaskRun:
    returncode: int
    result: dict[str, Any]
    exchanges: list[Exchange]
    stderr: str
    seconds: float
    problems: list[str] = field(default_factory=list)

    @property
    def tools_called(self) -> list[str]:
        return [name for e in self.exchanges for name in e.tool_calls()]

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens parley computed (not read from its cache) over all requests of the task."""
        total = 0
        for e in self.exchanges:
            for name, data in parse_sse(e.response) if e.streamed else []:
                if name == "message_start":  # computed now: input_tokens, and what was written to the cache
                    usage = data["message"]["usage"]
                    total += usage["input_tokens"] + usage.get("cache_creation_input_tokens", 0)
        return total


def run_task(binary: Path, server_url: str, model: str, prompt: str, workdir: Path, home: Path, *,
             timeout: float = 1800, extra_args: tuple[str, ...] = (),
             max_output_tokens: int | None = None, extra_env: dict[str, str] | None = None) -> TaskRun:
    """`claude -p PROMPT --output-format json` in `workdir`, talking to `server_url` through a recorder;
    `extra_env` is added to (and wins over) Claude Code's environment here."""

    proxy = RecordingProxy(server_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE"))}
    env.update(HOME=str(home), ANTHROPIC_BASE_URL=proxy.url, ANTHROPIC_API_KEY="not-needed",
               ANTHROPIC_MODEL=model, ANTHROPIC_SMALL_FAST_MODEL=model, ANTHROPIC_DEFAULT_HAIKU_MODEL=model,
               CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", DISABLE_AUTOUPDATER="1", API_TIMEOUT_MS="1800000")
    if max_output_tokens:  # bounds a rambling small model's turn; Claude Code otherwise asks for 32000
        env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] = str(max_output_tokens)
    env.update(extra_env or {})
    home.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        proc = subprocess.run([str(binary), "-p", prompt, "--output-format", "json", *extra_args], cwd=workdir,
                              env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    finally:
        proxy.close()
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
    except ValueError:
        result = {"unparsed_stdout": proc.stdout[-2000:]}
    run = TaskRun(proc.returncode, result, proxy.exchanges, proc.stderr, time.monotonic() - started)
    run.problems = [p for e in run.exchanges if (p := e.problem())]
    return run


