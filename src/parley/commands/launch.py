"""`parley launch claude`: Claude Code against parley, configured by its environment.

Like `ollama launch claude`: finds (or starts) the server, picks a model, and runs the `claude` on PATH with
the base URL, a token and every model variable pointing at that one model, so that no request names a
model parley lacks. Nothing is installed."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from ..settings import Settings, api_keys
from .local_server import ServerError, default_url, find_or_start, list_models

CLAUDE_CODE_PACKAGE = "@anthropic-ai/claude-code"
# Claude Code 2.1.332's first request (system prompt, 12 tools, a system message), counted by parley with
# Qwen2.5's tokenizer: bench/data/claude_code_first_request.json; tests/test_launch.py re-measures it.
CLAUDE_CODE_PROMPT_TOKENS = 11_550
# On 2 cores the first prefill takes minutes; Claude Code's own default gives up after 10.
API_TIMEOUT_MS = "3600000"
MODEL_VARIABLES = ("ANTHROPIC_MODEL", "ANTHROPIC_SMALL_FAST_MODEL", "ANTHROPIC_DEFAULT_HAIKU_MODEL",
                   "ANTHROPIC_DEFAULT_SONNET_MODEL", "ANTHROPIC_DEFAULT_OPUS_MODEL", "CLAUDE_CODE_SUBAGENT_MODEL")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("agent", choices=["claude"], help="the agent to launch")
    parser.add_argument("--model", help="model id (default: the server's default; asked on a terminal)")
    parser.add_argument("--yes", "-y", action="store_true", help="ask nothing: take the default model")
    parser.add_argument("--config", action="store_true",
                        help="print the environment (shell syntax) instead of launching")
    parser.add_argument("--url", help="the parley server (default: $PARLEY_URL, else the serve host and port)")
    parser.add_argument("--api-key", help="the server's API key (default: the first of PARLEY_API_KEYS)")
    parser.epilog = "Arguments after -- go to Claude Code, e.g. parley launch claude -- -p 'hi'."


def run(args: argparse.Namespace) -> int:
    settings = Settings()
    url = (args.url or default_url(settings)).rstrip("/")
    try:
        return _launch(args, settings, url)
    except ServerError as exc:
        print(f"parley launch: {exc}", file=sys.stderr)
        return 1


def _launch(args: argparse.Namespace, settings: Settings, url: str) -> int:
    claude = None if args.config else claude_binary()
    if not args.config and claude is None:
        print(f"parley launch: Claude Code is not installed. Install it with\n"
              f"  npm install -g {CLAUDE_CODE_PACKAGE}\nthen run this again.", file=sys.stderr)
        return 1
    server = find_or_start(url, settings)
    if server.started_pid is not None:
        print(f"parley: started `parley serve` at {url} (pid {server.started_pid}, log {server.log}); it keeps "
              f"running until you stop it: `kill {server.started_pid}`", file=sys.stderr)
    token = args.api_key or next(iter(api_keys(settings)), None)
    if server.health.get("api_key_required") and token is None:
        raise ServerError(f"the server at {url} requires an API key: pass --api-key (or set PARLEY_API_KEYS)")
    models = list_models(url, token)
    model = _pick_model(args, models, server.health.get("default_model"))
    context = next(m for m in models if m["id"] == model).get("max_input_tokens") or 0
    if context < CLAUDE_CODE_PROMPT_TOKENS:
        print(f"parley: warning: {model} serves a context of {context:,} tokens, but Claude Code's first "
              f"request alone is about {CLAUDE_CODE_PROMPT_TOKENS:,} tokens (its system prompt and tools): "
              f"requests will be refused. Pick a model with a longer context.", file=sys.stderr)
    env = claude_environment(url, token, model)
    if args.config:
        print("\n".join(f"export {name}={shlex.quote(value)}" for name, value in env.items()))
        return 0
    print(f"parley: launching {claude} with model {model} against {url}", file=sys.stderr)
    child = {**{k: v for k, v in os.environ.items() if k not in env}, **env}
    result = subprocess.run([str(claude), *args.passthrough], env=child)
    if server.started_pid is not None:
        print(f"parley: the server started for this session is still running at {url} (pid "
              f"{server.started_pid})", file=sys.stderr)
    return result.returncode


def claude_environment(url: str, token: str | None, model: str) -> dict[str, str]:
    """What Claude Code reads: where to go, what to send, and one model for every role."""
    env = {"ANTHROPIC_BASE_URL": url, "ANTHROPIC_AUTH_TOKEN": token or "parley",
           "ANTHROPIC_API_KEY": "",  # else a real key in the user's environment would be preferred and sent
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",  # no telemetry or update checks: all stays local
           "API_TIMEOUT_MS": os.environ.get("API_TIMEOUT_MS", API_TIMEOUT_MS)}
    env.update(dict.fromkeys(MODEL_VARIABLES, model))
    return env


def claude_binary() -> Path | None:
    """`claude` on PATH, else in npm's global prefix, else where Claude Code's own installer puts it."""
    if found := shutil.which("claude"):
        return Path(found)
    places = [Path.home() / ".claude" / "local" / "claude", Path.home() / ".local" / "bin" / "claude"]
    if npm := shutil.which("npm"):
        try:
            prefix = subprocess.run([npm, "prefix", "-g"], capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            prefix = ""
        if prefix:
            places.insert(0, Path(prefix) / "bin" / "claude")
    return next((p for p in places if p.is_file() and os.access(p, os.X_OK)), None)


def _pick_model(args: argparse.Namespace, models: list[dict], default: str | None) -> str:
    ids = [m["id"] for m in models]
    if args.model is not None:
        if args.model not in ids:
            raise ServerError(f"the server has no model '{args.model}'; it has: {', '.join(ids)}")
        return args.model
    default = default if default in ids else ids[0] if ids else None
    if default is None:
        raise ServerError("the server lists no models")
    if args.yes or args.config or not (sys.stdin.isatty() and sys.stderr.isatty()) or len(ids) == 1:
        return default
    for i, model_id in enumerate(ids, 1):
        print(f"  {i}. {model_id}{'  (default)' if model_id == default else ''}", file=sys.stderr)
    while True:
        answer = input(f"Model for Claude Code [1-{len(ids)}, Enter for {default}]: ").strip()
        if not answer:
            return default
        if answer.isdigit() and 1 <= int(answer) <= len(ids):
            return ids[int(answer) - 1]
        if answer in ids:
            return answer
