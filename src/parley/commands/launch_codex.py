"""`parley launch codex`: OpenAI's Codex CLI against parley's Responses API.

Codex is configured for this one run by `-c key=value` overrides on its command line (Codex layers them over
`$CODEX_HOME/config.toml`, and refuses an unknown key under `--strict-config`): a provider `parley` with the
server's `/v1` as base URL and the Responses wire API, the model, and the model's context, so that Codex
compacts its history before parley would refuse a request. Nothing is written into the user's `~/.codex`
configuration; the token travels in an environment variable that the provider names (`env_key`)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from .local_server import Agent, Target

CODEX_PACKAGE = "@openai/codex"
# Codex 0.171.0's first request (`codex exec`: developer instructions, skills, the environment context and
# 9 tools, one of them a namespace of 6 more; the tools are 4,354 of the tokens), counted by parley with
# Qwen2.5's tokenizer through POST /v1/responses/input_tokens:
# bench/data/codex_first_request.json; tests/test_launch.py re-measures it.
CODEX_PROMPT_TOKENS = 8_590


def compaction_limit(context: int) -> int:
    """Codex's `model_auto_compact_token_limit` for a window of `context` tokens (see codex_overrides)."""
    return context - 2 * (context // 8)


CODEX = Agent("Codex", "codex", CODEX_PACKAGE, CODEX_PROMPT_TOKENS, compaction_limit)
PROVIDER = "parley"
TOKEN_VARIABLE = "PARLEY_CODEX_API_KEY"  # the provider's env_key: Codex sends it as `Authorization: Bearer`
# Codex gives up on a stream after 5 minutes without an SSE event (comments do not count); a first prefill
# of its ~8,600-token prompt on 2 busy CPU cores took 7 to 8 minutes (parley streams `: ping` comments meanwhile).
STREAM_IDLE_TIMEOUT_MS = 3_600_000


def codex_overrides(url: str, model: str, context: int) -> list[str]:
    """The `-c key=value` overrides (values in TOML) that point Codex at parley's `url` and `model`.

    Codex compacts once the tokens of its last turn (parley's own usage count: prompt and answer) reach
    `model_auto_compact_token_limit`, and the next request then adds what the tools returned (at most
    `tool_output_token_limit`) and asks for an answer; the compaction request itself carries the history, the
    tool output and a summary prompt, and its summary is an answer too. So the limit leaves an eighth of the
    window for one tool output and an eighth for the answer: 24,577 of the packaged Qwen's 32,767 tokens."""
    values: dict[str, str | int] = {
        "model": model, "model_provider": PROVIDER,
        f"model_providers.{PROVIDER}.name": "parley",
        f"model_providers.{PROVIDER}.base_url": f"{url.rstrip('/')}/v1",
        f"model_providers.{PROVIDER}.wire_api": "responses",
        f"model_providers.{PROVIDER}.env_key": TOKEN_VARIABLE,
        f"model_providers.{PROVIDER}.stream_idle_timeout_ms": STREAM_IDLE_TIMEOUT_MS,
    }
    if context > 0:  # a server that does not say its context leaves Codex's own defaults
        values |= {"model_context_window": context, "model_auto_compact_token_limit": compaction_limit(context),
                   "tool_output_token_limit": context // 8}
    # json.dumps writes a TOML basic string for a str (the same escapes) and a TOML integer for an int.
    return [f"{key}={json.dumps(value)}" for key, value in values.items()]


def codex_environment(token: str | None) -> dict[str, str]:
    return {TOKEN_VARIABLE: token or "parley"}  # Codex refuses to start when the env_key variable is unset


def codex_command(binary: Path | str, target: Target, passthrough: list[str]) -> list[str]:
    """Codex's command line: the overrides come first, so an `-c` of the user's (after `--`) wins."""
    overrides = codex_overrides(target.url, target.model, target.context)
    return [str(binary), *(arg for value in overrides for arg in ("-c", value)), *passthrough]


def launch(args: argparse.Namespace, target: Target, binary: Path | None) -> int:
    env = codex_environment(target.token)
    if args.config:
        overrides = codex_overrides(target.url, target.model, target.context)
        lines = ["codex", *(f"-c {shlex.quote(value)}" for value in overrides)]
        lines += [shlex.join(args.passthrough)] if args.passthrough else []
        print(f"# Codex against parley at {target.url}, model {target.model} ({target.context:,}-token context)")
        print("\n".join(f"export {name}={shlex.quote(value)}" for name, value in env.items()))
        print(" \\\n  ".join(lines))
        return 0
    print(f"parley: launching {binary} with model {target.model} against {target.url}", file=sys.stderr)
    child = {**os.environ, **env}
    return subprocess.run(codex_command(str(binary), target, args.passthrough), env=child).returncode
