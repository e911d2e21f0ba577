"""`parley launch claude|codex`: the environment it gives Claude Code and the overrides it gives Codex, what it
refuses, and the real Claude Code and Codex (from npm, cached) run through it against a parley the command
started itself."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pexpect
import pytest

from conftest import QWEN, SMOL
from parley.commands.launch import CLAUDE_CODE_PROMPT_TOKENS, MODEL_VARIABLES, claude_compacts_at
from parley.commands.launch_codex import CODEX_PROMPT_TOKENS, TOKEN_VARIABLE
from parley.commands.local_server import WORKING_ROOM

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from claude_code import claude_binary  # noqa: E402
from codex import codex_binary  # noqa: E402
from npm import NpmUnavailable  # noqa: E402


def _launch(*args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None,
            agent: str = "claude") -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("ANTHROPIC_", "CLAUDE", "PARLEY_", "CODEX_", "OPENAI_"))}
    return subprocess.run([sys.executable, "-m", "parley.cli", "launch", agent, *args], capture_output=True,
                          text=True, timeout=timeout, env={**environ, **(env or {})}, cwd=cwd,
                          stdin=subprocess.DEVNULL)


def _exported(script: str) -> dict[str, str]:
    """The variables a shell gets from `eval "$(parley launch claude --config)"`."""
    shown = subprocess.run(["bash", "-c", 'eval "$(cat)" && env -0'], input=script, capture_output=True,
                           text=True, check=True, env={}).stdout
    return dict(item.split("=", 1) for item in shown.split("\0") if "=" in item)


def _served(server_url: str, model: str) -> dict:
    return next(m for m in httpx.get(server_url + "/v1/models", timeout=10).json()["data"] if m["id"] == model)


def test_config_prints_what_claude_code_needs_in_shell_syntax(server):
    shown = _launch("--config", "--url", server.url, "--model", QWEN)
    assert shown.returncode == 0, shown.stderr
    env = _exported(shown.stdout)
    assert env["ANTHROPIC_BASE_URL"] == server.url and env["ANTHROPIC_AUTH_TOKEN"] == "parley"
    assert env["ANTHROPIC_API_KEY"] == ""  # a real key in the user's environment must not win
    assert {env[name] for name in MODEL_VARIABLES} == {QWEN}  # every role: no request names a model parley lacks
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1" and int(env["API_TIMEOUT_MS"]) >= 600_000
    assert "warning" not in shown.stderr  # Qwen serves 32k
    # The window Claude Code plans with is the one parley enforces, and the output cap leaves it room to work
    # before it compacts: 32,767 - 4,095 - 13,000 = 15,672 tokens, its first request being ~11,550.
    window = _served(server.url, QWEN)["max_input_tokens"]
    assert env["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] == str(window) and env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] == "4095"
    assert "CLAUDE_CODE_AUTO_COMPACT_WINDOW" not in env  # below 100k Claude Code reads it as 100k
    assert "# then: claude --exclude-dynamic-system-prompt-sections" in shown.stdout
    assert claude_compacts_at(window) - CLAUDE_CODE_PROMPT_TOKENS >= WORKING_ROOM


def test_a_context_shorter_than_claude_codes_prompt_is_warned_about(server):
    shown = _launch("--config", "--url", server.url, "--model", SMOL)
    assert shown.returncode == 0
    context = _served(server.url, SMOL)["max_input_tokens"]  # the longest prompt it takes: 8,191
    assert context < CLAUDE_CODE_PROMPT_TOKENS
    assert f"warning: {SMOL} serves a context of {context:,} tokens" in shown.stderr, shown.stderr
    assert f"about {CLAUDE_CODE_PROMPT_TOKENS:,} tokens" in shown.stderr
    assert "needs a context of at least 32,738 tokens" in shown.stderr and "--n-ctx 32768" in shown.stderr


def _prompt_of(url: str, model: str, tokens: int) -> list[dict]:
    """Messages whose prompt is exactly `tokens` long, as count_tokens counts it (one token a word here)."""
    words = tokens
    for _ in range(5):
        messages = [{"role": "user", "content": "a " * words}]
        counted = httpx.post(url + "/v1/messages/count_tokens", json={"model": model, "messages": messages},
                             timeout=60).json()["input_tokens"]
        if counted == tokens:
            return messages
        words += tokens - counted
    raise AssertionError(f"no prompt of exactly {tokens} tokens found (last: {counted})")


@pytest.mark.timeout(600)
def test_the_window_agrees_everywhere(start_server):
    """For each packaged model: the models list, the refusal threshold, the loaded engine and what `launch`
    tells Claude Code and Codex are one number, and both agents compact before parley would refuse. (A 4k
    context keeps Qwen's full-window prompt to a minute of prefill; both agents are warned it is too small.)"""
    small = start_server("--n-ctx", "4096")
    for model in (QWEN, SMOL):
        window = _served(small.url, model)["max_input_tokens"]
        assert window == 4095, window
        ask = {"model": model, "max_tokens": 1}
        fits = httpx.post(small.url + "/v1/messages", json=ask | {"messages": _prompt_of(small.url, model, window)},
                          timeout=300)
        assert fits.status_code == 200, fits.text
        usage = fits.json()["usage"]
        assert usage["input_tokens"] + usage["cache_read_input_tokens"] == window
        assert small.health()["models"][model]["cache_capacity"] == window + 1
        over = httpx.post(small.url + "/v1/messages",
                          json=ask | {"messages": _prompt_of(small.url, model, window + 1)}, timeout=60)
        assert over.status_code == 400 and over.json()["error"] == {
            "type": "invalid_request_error", "message": f"prompt is too long: {window + 1} tokens > {window} maximum"}
        claude = _launch("--config", "--url", small.url, "--model", model)
        env = _exported(claude.stdout)
        assert env["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] == str(window)
        assert claude_compacts_at(window) + int(env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"]) < window
        assert "needs a context of at least 32,738 tokens" in claude.stderr, claude.stderr
        overrides, _, _ = _codex_config(_launch("--config", "--url", small.url, "--model", model,
                                                agent="codex").stdout)
        assert overrides["model_context_window"] == window
        assert overrides["model_auto_compact_token_limit"] + overrides["tool_output_token_limit"] < window


def test_the_warning_threshold_is_what_claude_code_sends(server):
    """The constant, re-measured: Claude Code's captured first request, counted by the server."""
    request = json.loads((ROOT / "bench" / "data" / "claude_code_first_request.json").read_text())["request"]
    body = {k: request[k] for k in ("model", "system", "messages", "tools") if k in request} | {"model": QWEN}
    counted = httpx.post(server.url + "/v1/messages/count_tokens", json=body, timeout=120)
    assert counted.status_code == 200, counted.text
    tokens = counted.json()["input_tokens"]
    assert abs(tokens - CLAUDE_CODE_PROMPT_TOKENS) <= 0.05 * tokens, tokens


def test_the_default_model_is_taken_with_yes(server):
    shown = _launch("--config", "--yes", "--url", server.url)
    assert _exported(shown.stdout)["ANTHROPIC_MODEL"] == server.health()["default_model"] == QWEN


def test_an_unknown_model_is_refused_naming_the_ones_there_are(server):
    shown = _launch("--config", "--url", server.url, "--model", "gpt-5")
    assert shown.returncode == 1 and shown.stdout == ""
    assert "no model 'gpt-5'" in shown.stderr and QWEN in shown.stderr and SMOL in shown.stderr


def test_a_servers_api_key_is_asked_for_and_passed_on(start_server):
    keyed = start_server(api_keys='["sesame"]')
    refused = _launch("--config", "--url", keyed.url)
    assert refused.returncode == 1 and "requires an API key" in refused.stderr, refused.stderr
    shown = _launch("--config", "--url", keyed.url, "--api-key", "sesame")
    assert shown.returncode == 0, shown.stderr
    assert _exported(shown.stdout)["ANTHROPIC_AUTH_TOKEN"] == "sesame"


def test_something_else_on_the_port_is_not_taken_for_parley(tmp_path):
    other = subprocess.Popen([sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1"], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        port = re.search(r"port (\d+)", other.stdout.readline()).group(1)
        shown = _launch("--config", "--url", f"http://127.0.0.1:{port}")
    finally:
        other.terminate()
    assert shown.returncode == 1 and "something other than parley" in shown.stderr, shown.stderr


def test_without_claude_code_it_says_how_to_install_it(server, tmp_path):
    bare_path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "claude").exists())
    shown = _launch("--yes", "--url", server.url, env={"PATH": bare_path, "HOME": str(tmp_path),
                                                       "npm_config_prefix": str(tmp_path / "npm")})
    assert shown.returncode == 1
    assert "Claude Code is not installed" in shown.stderr and "npm install -g @anthropic-ai/claude-code" in shown.stderr


@pytest.fixture(scope="module")
def claude_on_path(tmp_path_factory) -> Path:
    try:
        binary = claude_binary()
    except NpmUnavailable as exc:
        pytest.skip(str(exc))
    bin_dir = tmp_path_factory.mktemp("bin")
    (bin_dir / "claude").symlink_to(binary)
    return bin_dir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(2400)
def test_launch_runs_claude_code_against_a_parley_it_started(claude_on_path, tmp_path):
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    home.mkdir()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"PATH": f"{claude_on_path}{os.pathsep}{os.environ['PATH']}", "HOME": str(home),
           "PARLEY_PORT": str(port), "PARLEY_DATA_DIR": str(tmp_path / "data"),
           "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "512", "DISABLE_AUTOUPDATER": "1"}
    # Only the Read tool: the full tool set's ~12k-token prompt is tests/test_claude_code.py's to run.
    run = _launch("--yes", "--", "-p", "Reply with one word: ready", "--output-format", "json", "--max-turns", "1",
                  "--tools", "Read", env=env, timeout=2100, cwd=project)
    started = re.search(r"started `parley serve` at (\S+) \(pid (\d+)", run.stderr)
    assert started and started.group(1) == url, run.stderr
    pid = int(started.group(2))
    try:
        assert f"still running at {url} (pid {pid})" in run.stderr  # reported again once Claude Code is done
        result = json.loads(run.stdout.strip().splitlines()[-1])
        # Claude Code ran to an end of its own: an answer, or the turn limit (the model's doing, not parley's).
        outcome = (run.returncode, result.get("is_error"), result.get("subtype"))
        assert outcome in ((0, False, "success"), (1, True, "error_max_turns")), (result, run.stderr[-2000:])
        # Claude Code took the window parley serves (32,767: the default --n-ctx less the answer's cell), not
        # the 200k/1M it assumes for a model it does not know.
        usage = next(iter(result["modelUsage"].values()))
        assert usage["contextWindow"] == 32_767, result["modelUsage"]
        assert httpx.get(url + "/health", timeout=5).json()["server"] == "parley"  # left running
        metrics = httpx.get(url + "/metrics", timeout=5).text
        served = re.findall(r'parley_requests_total\{route="/v1/messages",status="2\d\d"\} (\d+)', metrics)
        assert served and sum(float(n) for n in served) >= 1, metrics[-2000:]
    finally:
        os.kill(pid, signal.SIGTERM)


def test_on_a_terminal_the_model_is_chosen_from_the_servers_list(server, claude_on_path, tmp_path):
    """A real pseudo-terminal; Claude Code is asked only its version, so no request is made."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE", "PARLEY_"))}
    env.update(PATH=f"{claude_on_path}{os.pathsep}{os.environ['PATH']}", HOME=str(tmp_path))
    child = pexpect.spawn(sys.executable, ["-m", "parley.cli", "launch", "claude", "--url", server.url, "--",
                                           "--version"], env=env, encoding="utf-8", timeout=60)
    child.expect(rf"1\. {re.escape(QWEN)}  \(default\)")
    child.expect(rf"2\. {re.escape(SMOL)}")
    child.expect(r"Model for Claude Code \[1-\d+, Enter for ")
    child.sendline("2")
    child.expect(rf"launching \S+ with model {re.escape(SMOL)} against {re.escape(server.url)}")
    child.expect(r"\d+\.\d+\.\d+ \(Claude Code\)")  # what `claude --version` prints
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


# --- Codex ---------------------------------------------------------------------------------------------------


def _codex_config(script: str) -> tuple[dict[str, object], list[str], str]:
    """What `parley launch codex --config` would run, run by a shell with a `codex` that only shows its
    arguments: the `-c` overrides (values parsed as the TOML Codex parses), the other arguments, the token."""
    shown = subprocess.run(["bash", "-c", f'codex() {{ printf "%s\\0" "$@"; printf "%s" "${TOKEN_VARIABLE}" >&2; }}; '
                                          'eval "$(cat)"'], input=script, capture_output=True, text=True, check=True,
                           env={})
    args = shown.stdout.split("\0")[:-1]
    overrides, rest = {}, []
    while args:
        arg = args.pop(0)
        if arg == "-c":
            key, value = args.pop(0).split("=", 1)
            overrides[key] = tomllib.loads(f"v = {value}")["v"]
        else:
            rest.append(arg)
    return overrides, rest, shown.stderr


def test_codex_config_prints_the_overrides_codex_needs(server):
    shown = _launch("--config", "--url", server.url, "--model", QWEN, "--", "exec", "hi there", agent="codex")
    assert shown.returncode == 0, shown.stderr
    overrides, rest, token = _codex_config(shown.stdout)
    window = _served(server.url, QWEN)["max_input_tokens"]
    assert overrides["model"] == QWEN and overrides["model_provider"] == "parley"
    provider = {k.rsplit(".", 1)[1]: v for k, v in overrides.items() if k.startswith("model_providers.parley.")}
    assert provider["base_url"] == server.url + "/v1" and provider["wire_api"] == "responses"
    assert provider["env_key"] == TOKEN_VARIABLE and token == "parley"
    assert provider["stream_idle_timeout_ms"] >= 600_000  # a first prefill on a CPU takes minutes
    # The window is the longest prompt parley takes; Codex compacts with room left for a tool output and an answer.
    assert overrides["model_context_window"] == window >= 32767
    assert overrides["model_auto_compact_token_limit"] == window - 2 * (window // 8)
    assert overrides["tool_output_token_limit"] == window // 8
    assert rest == ["exec", "hi there"]  # the user's arguments come after the overrides, untouched
    assert "warning" not in shown.stderr  # Qwen serves 32k


def test_codex_is_warned_about_a_context_shorter_than_its_prompt(server):
    shown = _launch("--config", "--url", server.url, "--model", SMOL, agent="codex")
    assert shown.returncode == 0
    context = _served(server.url, SMOL)["max_input_tokens"]
    assert context < CODEX_PROMPT_TOKENS
    assert f"warning: {SMOL} serves a context of {context:,} tokens" in shown.stderr, shown.stderr
    assert f"Codex's first request alone is about {CODEX_PROMPT_TOKENS:,} tokens" in shown.stderr


def test_the_codex_warning_threshold_is_what_codex_sends(server):
    """The constant, re-measured: Codex's captured first request, counted by the server as it would render it."""
    request = json.loads((ROOT / "bench" / "data" / "codex_first_request.json").read_text())["request"]
    counted = httpx.post(server.url + "/v1/responses/input_tokens", json=request | {"model": QWEN}, timeout=120)
    assert counted.status_code == 200, counted.text
    tokens = counted.json()["input_tokens"]
    assert abs(tokens - CODEX_PROMPT_TOKENS) <= 0.05 * tokens, tokens


def test_codex_gets_the_servers_api_key(start_server):
    keyed = start_server(api_keys='["sesame"]')
    shown = _launch("--config", "--url", keyed.url, "--api-key", "sesame", agent="codex")
    assert shown.returncode == 0, shown.stderr
    assert _codex_config(shown.stdout)[2] == "sesame"


def test_without_codex_it_says_how_to_install_it(server, tmp_path):
    bare_path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "codex").exists())
    shown = _launch("--yes", "--url", server.url, agent="codex",
                    env={"PATH": bare_path, "HOME": str(tmp_path), "npm_config_prefix": str(tmp_path / "npm")})
    assert shown.returncode == 1
    assert "Codex is not installed" in shown.stderr and "npm install -g @openai/codex" in shown.stderr


@pytest.fixture(scope="module")
def codex_on_path(tmp_path_factory) -> Path:
    try:
        binary = codex_binary()
    except NpmUnavailable as exc:
        pytest.skip(str(exc))
    bin_dir = tmp_path_factory.mktemp("bin")
    (bin_dir / "codex").symlink_to(binary)
    return bin_dir


@pytest.mark.timeout(2400)
def test_launch_runs_codex_against_a_parley_it_started(codex_on_path, tmp_path):
    """`parley launch codex --yes -- exec …` with `--strict-config`, so Codex 0.171 itself vouches for every
    override; the user's own ~/.codex (here HOME's) gets no configuration file from parley."""
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    (home / ".codex").mkdir(parents=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"PATH": f"{codex_on_path}{os.pathsep}{os.environ['PATH']}", "HOME": str(home),
           "PARLEY_PORT": str(port), "PARLEY_DATA_DIR": str(tmp_path / "data")}
    last = tmp_path / "last-message.txt"
    run = _launch("--yes", "--", "exec", "--strict-config", "--skip-git-repo-check", "--sandbox", "read-only",
                  "--json", "--output-last-message", str(last), "Reply with one word: ready", agent="codex",
                  env=env, timeout=2100, cwd=project)
    started = re.search(r"started `parley serve` at (\S+) \(pid (\d+)", run.stderr)
    assert started and started.group(1) == url, run.stderr
    pid = int(started.group(2))
    try:
        assert f"still running at {url} (pid {pid})" in run.stderr  # reported again once Codex is done
        assert not (home / ".codex" / "config.toml").exists()
        events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
        assert run.returncode == 0 and events[-1]["type"] == "turn.completed", (run.stdout[-2000:], run.stderr[-2000:])
        assert httpx.get(url + "/health", timeout=5).json()["server"] == "parley"  # left running
        metrics = httpx.get(url + "/metrics", timeout=5).text
        served = re.findall(r'parley_requests_total\{route="/v1/responses",status="2\d\d"\} (\d+)', metrics)
        assert served and sum(float(n) for n in served) >= 1, metrics[-2000:]
    finally:
        os.kill(pid, signal.SIGTERM)
