"""OpenAI's Codex CLI itself (pinned, from npm) runs a one-file task against a real parley's Responses API on
the packaged Qwen: `codex exec` in a temporary folder, its shell tool allowed there (workspace-write sandbox;
Codex exec never asks for approval), through a recording proxy.

What parley controls is asserted: every request Codex made got a 2xx, every stream was whole and in order
(strictly increasing sequence_number, from response.created to response.completed/incomplete, items opened
and closed in order), Codex came to its own end, the server is alive afterwards. Whether the 0.5B model ran
a command, and what it answered, is logged (bench/agent.py --agent codex reports the rate over many runs).

Codex's first request is ~8,600 prompt tokens (developer instructions, 9 tools): minutes of prefill on 2
cores. Codex has no turn limit of its own; the proxy refuses requests past a cap (a 400 of its own, which
Codex does not retry), so a model that keeps calling tools cannot run on."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import httpx
import pytest

from conftest import QWEN

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from codex import CodexRun, codex_binary, run_task  # noqa: E402
from npm import NpmUnavailable  # noqa: E402

log = logging.getLogger(__name__)
MAX_REQUESTS = 4  # the first turn, up to two tool calls, and an answer


@pytest.fixture(scope="module")
def codex() -> Path:
    try:
        return codex_binary()
    except NpmUnavailable as exc:
        pytest.skip(str(exc))


def summary(run: CodexRun) -> dict:
    return {"exit": run.returncode, "requests": [(e.method, e.path, e.status) for e in run.exchanges],
            "refused_by_the_test_cap": run.refused, "tools_called": run.tools_called, "commands": run.commands,
            "statuses": run.statuses, "answer": run.answer[:500], "computed_prompt_tokens": run.prompt_tokens,
            "seconds": round(run.seconds)}


def assert_parley_served_codex(run: CodexRun, server_url: str) -> None:
    """The checks of what parley controls, shared with tests/test_launch.py."""
    assert run.responses, f"Codex made no Responses request: {run.stderr[-2000:]}"
    first = run.responses[0].request
    # The real first request, answered as sent: developer instructions, the shell tool among its tools.
    assert first["stream"] is True and first["store"] is False, {k: first.get(k) for k in ("stream", "store")}
    assert any(t.get("name") == "exec_command" for t in first["tools"]), [t.get("name") for t in first["tools"]]
    assert any(i.get("role") == "developer" for i in first["input"])
    assert run.problems == [], run.problems
    assert httpx.get(server_url + "/health", timeout=5).status_code == 200
    # Codex ran to an end of its own: an answer (exit 0), or the test's request cap (the model kept calling
    # tools: the model's doing, not parley's) — then Codex exits 1 on the proxy's own 400.
    if run.refused:
        assert run.returncode == 1 and len(run.responses) == MAX_REQUESTS, summary(run)
    else:
        assert run.returncode == 0 and run.statuses[-1] in ("completed", "incomplete"), (summary(run),
                                                                                       run.stderr[-2000:])


@pytest.mark.timeout(2400)
def test_codex_reads_a_file(codex, server, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "hello.py").write_text('SECRET = "tangerine-47"\nprint(f"the secret is {SECRET}")\n')
    context = next(m for m in httpx.get(server.url + "/v1/models", timeout=10).json()["data"]
                   if m["id"] == QWEN)["max_input_tokens"]
    run = run_task(codex, server.url, QWEN, "What does hello.py print? Read the file first.", project,
                   tmp_path / "codex-home", timeout=2100, max_requests=MAX_REQUESTS, context=context)
    log.warning("Codex run: %s", json.dumps(summary(run)))
    assert_parley_served_codex(run, server.url)
    assert server.proc.poll() is None
