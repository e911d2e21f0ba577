"""Claude Code itself (pinned, from npm) runs a one-file Read task against a real parley on the packaged Qwen.

What parley controls is asserted: every request Claude Code made got a 2xx, every stream was whole and
well-ordered, Claude Code came to its own end (an answer, or its turn limit), the server is alive afterwards.
Whether the 0.5B model actually called Read, and what it answered, is logged (bench/agent.py reports the rate
over many runs).

Claude Code's first request is ~12k prompt tokens (system prompt, 12 tools, a mid-conversation system
message): minutes of prefill on 2 cores, during which SSE pings keep the stream alive."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import httpx
import pytest

from conftest import QWEN

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from claude_code import claude_binary, run_task  # noqa: E402
from claude_session import seed_session  # noqa: E402
from npm import NpmUnavailable  # noqa: E402

from parley.commands.launch import claude_context  # noqa: E402

log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def claude() -> Path:
    try:
        return claude_binary()
    except NpmUnavailable as exc:
        pytest.skip(str(exc))


@pytest.mark.timeout(2400)
def test_claude_code_reads_a_file(claude, server, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "hello.py").write_text('SECRET = "tangerine-47"\nprint(f"the secret is {SECRET}")\n')
    # A 0.5B model may keep calling tools, or ramble at Claude Code's temperature 1: the turn limit and the
    # output limit bound the run (one CI run looped for 35 minutes; one spent 20 on four 2048-token answers).
    # It may also call the tools that start work in the background, and Claude Code then waits for that work
    # before it exits, even past the turn limit (one CI run: ScheduleWakeup, 1,400 s; another: an async Agent
    # whose own turns went on without end): those tools are not offered.
    background = ("ScheduleWakeup", "CronCreate", "Monitor", "Agent", "Workflow")
    run = run_task(claude, server.url, QWEN, "What does hello.py print? Read the file first.", project,
                   tmp_path / "home", timeout=2100, max_output_tokens=1024,
                   extra_args=("--max-turns", "3", "--disallowedTools", *background))
    summary = {"exit": run.returncode, "requests": [(e.method, e.path, e.status) for e in run.exchanges],
               "tools_called": run.tools_called, "stop_reasons": [e.stop_reason for e in run.exchanges],
               "answer": str(run.result.get("result"))[:500],
               "computed_prompt_tokens": run.prompt_tokens, "seconds": round(run.seconds)}
    log.warning("Claude Code run: %s", json.dumps(summary))

    messages = [e for e in run.exchanges if e.path.startswith("/v1/messages")]
    assert messages, f"Claude Code made no Messages request: {run.stderr[-2000:]}"
    first = messages[0].request
    # The real first request, answered as sent: a system message inside `messages`, all of its tools but those.
    names = {tool["name"] for tool in first["tools"]}
    assert any(m["role"] == "system" for m in first["messages"]) and len(names) >= 8 and "Read" in names, names
    assert not names & set(background), names
    assert run.problems == [], run.problems
    assert httpx.get(server.url + "/health", timeout=5).status_code == 200 and server.proc.poll() is None
    # Claude Code ran to an end of its own (the model's doing, not parley's): an answer, the turn limit, or
    # the output limit — that one only where parley did end an answer with stop_reason max_tokens.
    outcome = (run.returncode, run.result.get("is_error"), run.result.get("subtype"))
    if str(run.result.get("result")).startswith("API Error: Claude's response exceeded"):
        assert "max_tokens" in [e.stop_reason for e in messages], [e.stop_reason for e in messages]
    else:
        assert outcome in ((0, False, "success"), (1, True, "error_max_turns")), (run.result, run.stderr[-2000:])


SUMMARY_PROMPT = "Your task is to create a detailed summary of"  # Claude Code 2.1's compaction request


def _compacting(exchange) -> bool:
    """Whether a request is Claude Code's compaction: it asks the model to summarise the conversation."""
    return SUMMARY_PROMPT in json.dumps(exchange.request) if isinstance(exchange.request, dict) else False


@pytest.mark.timeout(2400)
def test_a_session_past_the_window_compacts_and_answers(claude, start_server, tmp_path):
    """A resumed session whose transcript (four Read turns of ~2k-token files, ~11k tokens in all) is past the
    point where Claude Code, configured as `parley launch claude` configures it for a 20k context, compacts:
    its summary request reaches the server, and then the answer comes; no request is refused ("prompt is too
    long") or fails. The output cap is one a user may set (launch keeps it): 512 tokens bound a 0.5B model's
    summary, which at Claude Code's temperature 1 tends to run on to the cap (Claude Code then asks it to go on,
    then to start again shorter, then carries on without a summary: one run took 12 minutes at a 2,559-token
    cap). Claude Code's own prompt is kept small (one tool, a one-line system prompt): minutes of prefill, not ten."""
    server = start_server("--n-ctx", "20480")
    window = next(m for m in httpx.get(server.url + "/v1/models", timeout=10).json()["data"]
                  if m["id"] == QWEN)["max_input_tokens"]
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    session = seed_session(home, project, turns=4, model=QWEN)
    env = claude_context(window) | {"CLAUDE_CODE_MAX_OUTPUT_TOKENS": "512"}
    run = run_task(claude, server.url, QWEN, "Which module defines item_2_5? Answer in one sentence.", project,
                   home, timeout=2100, extra_env=env,
                   extra_args=("--resume", session, "--tools", "Read", "--disable-slash-commands", "--max-turns", "3",
                               "--system-prompt", "You are a coding assistant working in this project."))
    messages = [e for e in run.exchanges if e.path.startswith("/v1/messages")]
    summary = {"exit": run.returncode, "seconds": round(run.seconds), "answer": str(run.result.get("result"))[:300],
               "requests": [(e.status, len(e.request.get("messages", [])), _compacting(e), e.stop_reason)
                            for e in messages]}
    log.warning("Claude Code session past its window: %s", json.dumps(summary))
    assert run.problems == [], run.problems  # every request a 2xx, every stream whole
    first = messages[0]  # Claude Code compacted before sending the conversation on
    assert _compacting(first), (summary, run.stderr[-2000:])
    assert not _compacting(messages[-1]), summary  # then the conversation went on
    outcome = (run.returncode, run.result.get("is_error"), run.result.get("subtype"))
    assert outcome in ((0, False, "success"), (1, True, "error_max_turns")), (run.result, run.stderr[-2000:])
    assert httpx.get(server.url + "/health", timeout=5).status_code == 200 and server.proc.poll() is None
