"""OpenAI's Codex CLI as a client: the pinned npm package (cached), `codex exec` through the recording proxy of
claude_code.py in front of a parley server, and the check of what parley controls in a Responses stream
(every event in order under a strictly increasing `sequence_number`, from `response.created` to
`response.completed`/`response.incomplete`, every output item opened, filled and closed in order).

Used by `tests/test_codex.py` (one task), `tests/test_launch.py` and `bench/agent.py --agent codex`."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claude_code import Exchange, RecordingProxy
from npm import npm_install

from parley.commands.launch_codex import codex_environment, codex_overrides

CODEX_VERSION = "0.171.0"
# The npm package `@openai/codex` is a launcher; the native binary comes in its optional dependency for the
# platform (`@openai/codex-linux-x64`, an alias of `@openai/codex@0.171.0-linux-x64`).
_TRIPLES = {("linux", "x64"): "x86_64-unknown-linux-musl", ("linux", "arm64"): "aarch64-unknown-linux-musl",
            ("darwin", "x64"): "x86_64-apple-darwin", ("darwin", "arm64"): "aarch64-apple-darwin"}
FINAL_EVENTS = ("response.completed", "response.incomplete")


def codex_binary() -> Path:
    """The native Codex binary of the pinned version, installed from npm into parley's cache on first use."""
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine().lower()]
    system = {"Linux": "linux", "Darwin": "darwin"}[platform.system()]
    modules = npm_install(f"@openai/codex@{CODEX_VERSION}")
    binary = modules / f"@openai/codex-{system}-{arch}" / "vendor" / _TRIPLES[system, arch] / "bin" / "codex"
    if not binary.is_file():
        raise RuntimeError(f"npm installed @openai/codex@{CODEX_VERSION} without its platform package: {binary}")
    return binary


def parse_responses_sse(text: str) -> list[tuple[str, dict]]:
    """(event name, data) of each SSE event; the name from `event:`, else the data's `type`."""
    events, name, data = [], None, []
    for line in [*text.splitlines(), ""]:
        if line.startswith("event:"):
            name = line[len("event:"):].strip()
        elif line.startswith("data:"):
            data.append(line[len("data:"):].strip())
        elif not line and data:
            payload = json.loads("\n".join(data))
            events.append((name or payload.get("type", ""), payload))
            name, data = None, []
    return events


def check_responses_stream(text: str) -> str | None:
    """None when `text` is a whole, well-ordered Responses stream."""
    try:
        events = parse_responses_sse(text)
    except ValueError as exc:
        return f"an event's data is not JSON: {exc}"
    if not events:
        return "no events"
    names = [n for n, _ in events]
    if names[0] != "response.created" or names[-1] not in FINAL_EVENTS:
        return f"bad frame: {names[:2]}…{names[-2:]}"
    previous = -1
    for name, data in events:
        if data.get("type") != name:
            return f"event {name} carries type {data.get('type')}"
        number = data.get("sequence_number")
        if not isinstance(number, int) or number <= previous:
            return f"{name}: sequence_number {number} after {previous}"
        previous = number
    return _check_items(events)


def _check_items(events: list[tuple[str, dict]]) -> str | None:
    """Output items open and close in index order, one at a time; what streamed into an item adds up to what
    its `.done` events and the final response say."""
    open_item: dict | None = None
    done: list[dict] = []
    text, arguments = "", ""
    for name, data in events[1:-1]:
        index = data.get("output_index")
        if name == "response.output_item.added":
            if open_item is not None or index != len(done):
                return f"item {index} added while {open_item and open_item.get('id')} open, expected {len(done)}"
            open_item, text, arguments = data["item"], "", ""
        elif index is not None and (open_item is None or index != len(done)):
            return f"{name} for item {index} outside its item"
        elif name == "response.output_text.delta":
            text += data["delta"]
        elif name == "response.output_text.done" and data["text"] != text:
            return f"output_text.done {data['text'][:80]!r} is not its deltas {text[:80]!r}"
        elif name == "response.output_text.done":
            text = ""  # a next content part starts afresh
        elif name == "response.function_call_arguments.delta":
            arguments += data["delta"]
        elif name == "response.function_call_arguments.done" and data["arguments"] != arguments:
            return f"function_call_arguments.done {data['arguments'][:80]!r} is not its deltas"
        elif name == "response.output_item.done":
            item = data["item"]
            if item.get("id") != open_item.get("id"):
                return f"item {index} done with id {item.get('id')}, opened as {open_item.get('id')}"
            complete = item.get("status") == "completed"  # an answer cut at max_output_tokens may cut a call
            if item.get("type") == "function_call" and complete and not _is_json_object(item.get("arguments")):
                return f"function_call {item.get('name')} arguments are not a JSON object: {item.get('arguments')!r}"
            done.append(item)
            open_item = None
    if open_item is not None:
        return f"item {open_item.get('id')} never done"
    response = events[-1][1].get("response", {})
    if [i.get("id") for i in response.get("output", [])] != [i.get("id") for i in done]:
        return "the final response's output is not the items streamed"
    usage = response.get("usage") or {}
    if not isinstance(usage.get("input_tokens"), int) or not isinstance(usage.get("output_tokens"), int):
        return f"final response without usage: {usage}"
    return None


def _is_json_object(text: Any) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (TypeError, ValueError):
        return False


def _final_response(exchange: Exchange) -> dict:
    if exchange.streamed:
        events = parse_responses_sse(exchange.response)
        return events[-1][1].get("response", {}) if events and events[-1][0] in FINAL_EVENTS else {}
    try:
        return json.loads(exchange.response)
    except ValueError:
        return {}


@dataclass
class CodexRun:
    returncode: int
    answer: str  # Codex's last message (`-o`)
    events: list[dict]  # `codex exec --json`'s JSONL
    exchanges: list[Exchange]
    refused: int  # requests past the proxy's cap, answered by the proxy
    stderr: str
    seconds: float
    problems: list[str] = field(default_factory=list)

    @property
    def responses(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.method == "POST" and e.path.split("?")[0].endswith("/responses")]

    @property
    def tools_called(self) -> list[str]:
        """The tools the model called, in order (function_call items of parley's answers)."""
        return [item.get("name", "") for e in self.responses for item in _final_response(e).get("output", [])
                if item.get("type") in ("function_call", "custom_tool_call")]

    @property
    def commands(self) -> list[str]:
        """The shell commands Codex ran for the model."""
        return [e["item"]["command"] for e in self.events
                if e.get("type") == "item.completed" and e.get("item", {}).get("type") == "command_execution"]

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens parley computed (not read from its prefix cache) over all requests of the task."""
        total = 0
        for e in self.responses:
            usage = _final_response(e).get("usage") or {}
            total += usage.get("input_tokens", 0) - (usage.get("input_tokens_details") or {}).get("cached_tokens", 0)
        return total

    @property
    def statuses(self) -> list[str | None]:
        return [_final_response(e).get("status") for e in self.responses]


def run_task(binary: Path, server_url: str, model: str, prompt: str, workdir: Path, home: Path, *,
             timeout: float = 1800, max_requests: int | None = 6, context: int = 0,
             extra_args: tuple[str, ...] = ()) -> CodexRun:
    """`codex exec PROMPT` in `workdir` (its shell tool may write there; nothing is ever asked), talking to
    `server_url` through a recording proxy that refuses requests past `max_requests`: Codex has no turn limit
    of its own, and a small model may call tools without end."""
    proxy = RecordingProxy(server_url, check=check_responses_stream, max_posts=max_requests)
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CODEX_"))}
    env.update(CODEX_HOME=str(home), **codex_environment("not-needed"))
    # What `parley launch codex` passes, and no retries: a refusal by parley is the finding, not to be hidden
    # by a retry (nor a minutes-long prefill repeated).
    overrides = [*codex_overrides(proxy.url, model, context or 0),
                 "model_providers.parley.request_max_retries=0", "model_providers.parley.stream_max_retries=0"]
    last = home / "last-message.txt"
    cmd = [str(binary), *(a for value in overrides for a in ("-c", value)), "exec",
           "--skip-git-repo-check", "--sandbox", "workspace-write", "--json", "--output-last-message", str(last),
           *extra_args, prompt]
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    finally:
        proxy.close()
    events = []
    for line in proc.stdout.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            pass
    answer = last.read_text() if last.exists() else ""
    run = CodexRun(proc.returncode, answer, events, proxy.exchanges, proxy.refused, proc.stderr,
                   time.monotonic() - started)
    run.problems = [p for e in run.exchanges if (p := e.problem())]
    return run
