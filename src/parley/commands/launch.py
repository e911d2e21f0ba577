"""`parley launch claude|codex`: an agent against parley, configured for this one run.

Like `ollama launch`: finds (or starts) the server, picks a model, and runs the agent on PATH pointed at that
server and that one model, so that no request names a model parley lacks. Nothing is installed and no file of
the agent's own is written. Claude Code is configured here, by its environment; Codex, by `-c` overrides, in
launch_codex.py."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

from ..settings import Settings, api_keys
from . import launch_codex
from .local_server import Agent, ServerError, Target, default_url, find_or_start, list_models

CLAUDE_CODE_PACKAGE = "@anthropic-ai/claude-code"
# Claude Code 2.1.332's first request (system prompt, 12 tools, a system message), counted by parley with
# Qwen2.5's tokenizer: bench/data/claude_code_first_request.json; tests/test_launch.py re-measures it.
CLAUDE_CODE_PROMPT_TOKENS = 11_550
# Claude Code 2.1 compacts once a conversation passes its window less min(output cap, 20,000) less a buffer of
# 13,000 tokens (CLAUDE_AUTOCOMPACT_PCT_OVERRIDE can only lower that); read from 2.1.332's own code.
CLAUDE_SUMMARY_RESERVE_CAP = 20_000
CLAUDE_COMPACT_BUFFER = 13_000
# Claude Code reads a CLAUDE_CODE_AUTO_COMPACT_WINDOW below 100k as 100k (and warns about it).
CLAUDE_AUTO_COMPACT_WINDOW_MINIMUM = 100_000


def claude_output_cap(window: int) -> int:
    """The output cap parley gives Claude Code: an eighth of the window (as for Codex), at most Claude Code's
    own reserve for a summary. Its default, 32,000 for a model it does not know, would leave a 32k window no
    room at all before compaction."""
    return min(window // 8, CLAUDE_SUMMARY_RESERVE_CAP)


def claude_compacts_at(window: int) -> int:
    """Where Claude Code compacts with parley's cap (which is within its summary reserve cap)."""
    return window - claude_output_cap(window) - CLAUDE_COMPACT_BUFFER


CLAUDE_CODE = Agent("Claude Code", "claude", CLAUDE_CODE_PACKAGE, CLAUDE_CODE_PROMPT_TOKENS, claude_compacts_at,
                    places=(".claude/local/claude", ".local/bin/claude"))
AGENTS = {"claude": CLAUDE_CODE, "codex": launch_codex.CODEX}
# On 2 cores the first prefill takes minutes; Claude Code's own default gives up after 10.
API_TIMEOUT_MS = "3600000"
EXCLUDE_DYNAMIC_SECTIONS = "--exclude-dynamic-system-prompt-sections"
MODEL_VARIABLES = ("ANTHROPIC_MODEL", "ANTHROPIC_SMALL_FAST_MODEL", "ANTHROPIC_DEFAULT_HAIKU_MODEL",
                   "ANTHROPIC_DEFAULT_SONNET_MODEL", "ANTHROPIC_DEFAULT_OPUS_MODEL", "CLAUDE_CODE_SUBAGENT_MODEL")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("agent", choices=list(AGENTS), help="the agent to launch")
    parser.add_argument("--model", help="model id (default: the server's default; asked on a terminal)")
    parser.add_argument("--yes", "-y", action="store_true", help="ask nothing: take the default model")
    parser.add_argument("--config", action="store_true",
                        help="print the configuration (shell syntax) instead of launching")
    parser.add_argument("--url", help="the parley server (default: $PARLEY_URL, else the serve host and port)")
    parser.add_argument("--api-key", help="the server's API key (default: the first of PARLEY_API_KEYS)")
    parser.epilog = ("Arguments after -- go to the agent, e.g. parley launch claude -- -p 'hi', "
                     "parley launch codex -- exec 'hi'.")


def run(args: argparse.Namespace) -> int:
    settings = Settings()
    url = (args.url or default_url(settings)).rstrip("/")
    agent = AGENTS[args.agent]
    binary = None if args.config else agent.binary()
    if not args.config and binary is None:
        print(f"parley launch: {agent.name} is not installed. Install it with\n"
              f"  npm install -g {agent.package}\nthen run this again.", file=sys.stderr)
        return 1
    try:
        target = connect(args, settings, url, agent)
    except ServerError as exc:
        print(f"parley launch: {exc}", file=sys.stderr)
        return 1
    launcher = launch_codex.launch if args.agent == "codex" else _launch_claude
    returncode = launcher(args, target, binary)
    if not args.config and target.server.started_pid is not None:
        print(f"parley: the server started for this session is still running at {target.url} (pid "
              f"{target.server.started_pid})", file=sys.stderr)
    return returncode


def connect(args: argparse.Namespace, settings: Settings, url: str, agent: Agent) -> Target:
    """The server (found or started), its token and the model picked for `agent`; warns when that model's
    context cannot hold the agent's first request."""
    server = find_or_start(url, settings)
    if server.started_pid is not None:
        print(f"parley: started `parley serve` at {url} (pid {server.started_pid}, log {server.log}); it keeps "
              f"running until you stop it: `kill {server.started_pid}`", file=sys.stderr)
    token = args.api_key or next(iter(api_keys(settings)), None)
    if server.health.get("api_key_required") and token is None:
        raise ServerError(f"the server at {url} requires an API key: pass --api-key (or set PARLEY_API_KEYS)")
    models = list_models(url, token)
    model = _pick_model(args, models, server.health.get("default_model"), agent.name)
    target = Target(server, token, model, next(m for m in models if m["id"] == model))
    if target.context and target.context < agent.window_needed():
        refused = ("requests will be refused" if target.context < agent.prompt_tokens else
                   f"it would compact its history on every turn (at {agent.compacts_at(target.context):,} tokens)")
        print(f"parley: warning: {model} serves a context of {target.context:,} tokens, but {agent.name}'s first "
              f"request alone is about {agent.prompt_tokens:,} tokens (its system prompt and tools): {refused}. "
              f"{agent.name} needs a context of at least {agent.window_needed():,} tokens: serve the model with "
              f"`--n-ctx {_n_ctx_for(agent.window_needed())}` (if it was trained that long) or pick one with a "
              f"longer context.", file=sys.stderr)
    return target


def _n_ctx_for(window: int) -> int:
    """The --n-ctx (a multiple of 1024) that serves a window of `window` tokens (one cell is the answer's)."""
    return -(-(window + 1) // 1024) * 1024


def claude_context(window: int) -> dict[str, str]:
    """The window parley enforces, as the one Claude Code plans with (its `contextWindow`; for a model it does
    not know it assumes 200k or 1M, and a session then grows until parley refuses it), and the output cap that
    makes it compact at claude_compacts_at(window), before parley would refuse a request."""
    if window <= 0:  # a server that does not say its context leaves Claude Code's own defaults
        return {}
    env = {"CLAUDE_CODE_MAX_CONTEXT_TOKENS": str(window),
           "CLAUDE_CODE_MAX_OUTPUT_TOKENS": str(claude_output_cap(window))}
    if window >= CLAUDE_AUTO_COMPACT_WINDOW_MINIMUM:  # below, the context above is the window it compacts in
        env["CLAUDE_CODE_AUTO_COMPACT_WINDOW"] = str(window)
    return env


def _launch_claude(args: argparse.Namespace, target: Target, claude: Path | None) -> int:
    env = claude_environment(target.url, target.token, target.model) | claude_context(target.context)
    if not args.config and os.environ.get("CLAUDE_CODE_MAX_OUTPUT_TOKENS"):
        env.pop("CLAUDE_CODE_MAX_OUTPUT_TOKENS", None)  # the user's own cap: any cap compacts before a refusal
    if args.config:
        print("\n".join(f"export {name}={shlex.quote(value)}" for name, value in env.items()))
        print(f"# then: claude {EXCLUDE_DYNAMIC_SECTIONS} (one system prompt in every folder, read from the cache)")
        return 0
    print(f"parley: launching {claude} with model {target.model} against {target.url}", file=sys.stderr)
    child = {**{k: v for k, v in os.environ.items() if k not in env}, **env}
    return subprocess.run([str(claude), *claude_arguments(args.passthrough)], env=child).returncode


def claude_arguments(passthrough: list[str]) -> list[str]:
    """The user's arguments, after `--exclude-dynamic-system-prompt-sections`: Claude Code then moves the
    per-project sections (working directory, memory folder, git status) out of its system prompt into the first
    user message, so that the system prompt and tools (~11k tokens) are one prefix in every folder, restored
    from the prompt cache on a project's first request (it ignores the flag beside --system-prompt)."""
    return passthrough if EXCLUDE_DYNAMIC_SECTIONS in passthrough else [EXCLUDE_DYNAMIC_SECTIONS, *passthrough]


def claude_environment(url: str, token: str | None, model: str) -> dict[str, str]:
    """What Claude Code reads: where to go, what to send, and one model for every role."""
    env = {"ANTHROPIC_BASE_URL": url, "ANTHROPIC_AUTH_TOKEN": token or "parley",
           "ANTHROPIC_API_KEY": "",  # else a real key in the user's environment would be preferred and sent
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",  # no telemetry or update checks: all stays local
           "API_TIMEOUT_MS": os.environ.get("API_TIMEOUT_MS", API_TIMEOUT_MS)}
    env.update(dict.fromkeys(MODEL_VARIABLES, model))
    return env


def _pick_model(args: argparse.Namespace, models: list[dict], default: str | None, agent: str) -> str:
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
        answer = input(f"Model for {agent} [1-{len(ids)}, Enter for {default}]: ").strip()
        if not answer:
            return default
        if answer.isdigit() and 1 <= int(answer) <= len(ids):
            return ids[int(answer) - 1]
        if answer in ids:
            return answer
