"""`parley chat`: a terminal chat with a running parley server, through the official Anthropic SDK."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import anthropic
import httpx

from ..settings import Settings
from .chat_render import Renderer
from .local_server import ServerError, default_url, probe

try:
    import readline  # noqa: F401  (importing it gives input() line editing and history)
except ImportError:  # not on every platform; input() still works without it
    pass

PROMPT = "you> "
HELP = """\
/system TEXT   set the system prompt (/system alone shows it)
/clear         forget the conversation
/model ID      switch model (/model alone lists the server's models)
/help          this list
/exit          leave (or Ctrl-D); Ctrl-C stops an answer"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="the parley server (default: $PARLEY_URL, else the serve host and port)")
    parser.add_argument("--model", help="model id (default: the server's default model)")
    parser.add_argument("--api-key", help="the server's API key (default: $ANTHROPIC_API_KEY)")
    parser.add_argument("--system", default="", help="system prompt")
    parser.add_argument("--max-tokens", type=int, default=1024, help="most tokens per answer (default: 1024)")
    parser.add_argument("--temperature", type=float, help="sampling temperature (default: the server's)")
    parser.add_argument("--thinking", type=int, metavar="BUDGET",
                        help="enable extended thinking with this token budget (at least 1024)")
    parser.add_argument("--tools", type=Path, metavar="FILE", help="a JSON array of tool definitions to offer")


def run(args: argparse.Namespace) -> int:
    # Ctrl-C is how an answer is stopped. A process started in the background by a shell without job control
    # inherits SIGINT ignored, and Python then leaves it ignored: take it back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    url = (args.url or default_url(Settings())).rstrip("/")
    try:
        health = probe(url, timeout=10)  # a busy server (a model loading) may be slow to answer
        if health is None:
            raise ServerError(f"cannot reach a parley server at {url} (nothing listens there; start one with "
                              f"`parley serve`)")
        tools = _load_tools(args.tools) if args.tools else None
    except (ServerError, ValueError) as exc:
        print(f"parley chat: {exc}", file=sys.stderr)
        return 1
    model = args.model or health.get("default_model")
    if not model:
        print(f"parley chat: {url} names no default model; pass --model", file=sys.stderr)
        return 1
    sys.stdout.reconfigure(errors="replace")  # a terminal that can't show ⚙ (or a model's emoji) gets '?'
    client = anthropic.Anthropic(base_url=url, api_key=args.api_key or os.environ.get("ANTHROPIC_API_KEY")
                                 or "not-needed", max_retries=0)
    chat = Chat(client, model, system=args.system, max_tokens=args.max_tokens, temperature=args.temperature,
                thinking=args.thinking, tools=tools)
    Renderer(sys.stdout).dim(f"parley chat · {url} · {model} · /help for commands")
    return chat.loop()


def _load_tools(path: Path) -> list[dict[str, Any]]:
    try:
        tools = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read tools from {path}: {exc}") from None
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise ValueError(f"{path}: expected a JSON array of tool definitions")
    return tools


def _param(block: Any) -> dict[str, Any] | None:
    """A response content block as it goes back in the history; None for what must not (an empty text)."""
    if block.type == "text":
        return {"type": "text", "text": block.text} if block.text else None
    if block.type == "thinking":
        return {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
    if block.type == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.data}
    if block.type == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    return block.model_dump(exclude_none=True)


def _error_line(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):  # the API's {"error": {"message": ...}}
        return f"{type(exc).__name__}: {body['error'].get('message')}"
    return f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"


class Chat:
    """The conversation (user and assistant turns, alternating) and the prompt loop around it."""

    def __init__(self, client: anthropic.Anthropic, model: str, *, system: str = "", max_tokens: int = 1024,
                 temperature: float | None = None, thinking: int | None = None,
                 tools: list[dict[str, Any]] | None = None) -> None:
        self.client = client
        self.model = model
        self.system = system
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.thinking = thinking
        self.tools = tools
        self.history: list[dict[str, Any]] = []
        self.ui = Renderer(sys.stdout)  # for notices between answers

    def loop(self) -> int:
        while True:
            try:
                line = input(PROMPT).strip()
                if line.startswith("/"):
                    if not self.command(line):
                        return 0
                elif line:
                    self.turn(line)
            except EOFError:  # Ctrl-D
                print()
                return 0
            except KeyboardInterrupt:  # at the prompt (an answer catches its own)
                print()
                self.ui.dim("(/exit or Ctrl-D to leave)")

    def command(self, line: str) -> bool:
        """Run a slash command; False means leave."""
        name, _, rest = line.partition(" ")
        rest = rest.strip()
        if name in ("/exit", "/quit"):
            return False
        if name == "/help":
            print(HELP)
        elif name == "/clear":
            self.history.clear()
            self.ui.dim("(conversation cleared)")
        elif name == "/system":
            if rest:
                self.system = rest
                self.ui.dim("(system prompt set)")
            else:
                self.ui.dim(f"system: {self.system}" if self.system else "(no system prompt)")
        elif name == "/model":
            if rest:
                self.model = rest
                self.ui.dim(f"(model: {rest})")
            else:
                self.list_models()
        else:
            self.ui.dim(f"unknown command {name}; /help lists them")
        return True

    def list_models(self) -> None:
        try:
            ids = [m.id for m in self.client.models.list()]
        except (anthropic.APIError, httpx.HTTPError) as exc:
            self.ui.dim(_error_line(exc))
            return
        for model_id in ids:
            print(f"{'*' if model_id == self.model else ' '} {model_id}")

    def pending_tool_ids(self) -> list[str]:
        """The tool calls the last answer made: the next user line answers them."""
        if self.history and self.history[-1]["role"] == "assistant":
            return [b["id"] for b in self.history[-1]["content"] if b["type"] == "tool_use"]
        return []

    def request(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens, "messages": self.history}
        if self.system:
            kw["system"] = self.system
        if self.tools:
            kw["tools"] = self.tools
        if self.thinking:
            kw["thinking"] = {"type": "enabled", "budget_tokens": self.thinking}
        if self.temperature is not None:
            kw["extra_body"] = {"temperature": self.temperature}  # the 2.x SDK has no temperature argument
        return kw

    def turn(self, text: str) -> None:
        """Send one user line (as tool results if the last answer called tools) and stream the answer."""
        pending = self.pending_tool_ids()
        content: Any = [{"type": "tool_result", "tool_use_id": i, "content": text} for i in pending] or text
        self.history.append({"role": "user", "content": content})
        view = Renderer(sys.stdout)
        try:
            # Leaving the block (normally, or on Ctrl-C) closes the response: parley stops on the disconnect.
            with self.client.messages.stream(**self.request()) as stream:
                for event in stream:
                    view.event(event)
                message = stream.get_final_message()
        except KeyboardInterrupt:
            view.interrupted()
            partial = "".join(view.text).rstrip()
            if partial:  # keep the text received as the answer; thinking and half a tool call go
                self.history.append({"role": "assistant", "content": [{"type": "text", "text": partial}]})
            else:
                self.history.pop()
            return
        except (anthropic.APIError, httpx.HTTPError) as exc:
            view.dim(_error_line(exc))
            self.history.pop()
            return
        blocks = [p for p in map(_param, message.content) if p is not None]
        if blocks:
            self.history.append({"role": "assistant", "content": blocks})
        else:  # an empty answer can't stand in the history; drop the question with it
            self.history.pop()
        view.status(message)
        if self.pending_tool_ids():
            view.dim("(a tool call: your next line is sent as its result)")
