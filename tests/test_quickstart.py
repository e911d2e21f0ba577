"""The README's quick start, exactly as a user runs it (only base_url and model names differ upstream)."""

from __future__ import annotations

import re
import subprocess
import sys

import anthropic
import openai
import pytest

from conftest import QWEN


@pytest.mark.parametrize("prefix", ["/anthropic", ""])
def test_models_list_on_both_base_urls(server, prefix):
    response = server.client(prefix).models.list(limit=20)
    ids = [m.id for m in response.data]
    assert ids[0] == QWEN  # the embedded default comes first
    assert "smollm2-135m-instruct" in ids
    first = response.data[0]
    assert first.type == "model" and first.display_name and first.created_at.tzinfo is not None


def test_poet_with_system_prompt(server):
    # The upstream notebook passes api_key and auth_token; SDK 2.x accepts only one, so send the bearer one.
    client = server.client("/anthropic", auth_token="not-needed")
    message = client.messages.create(
        model=QWEN,
        max_tokens=1000,
        extra_body={"temperature": 1},  # SDK 2.x has no temperature argument; 0.6x sent the same JSON
        system="You are a world-class poet. Respond only with short poems.",
        messages=[{"role": "user", "content": [{"type": "text", "text": "Why is the ocean salty?"}]}],
    )
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert message.model == QWEN
    # Sampled at temperature 1, as upstream: the small model now and then rambles to max_tokens.
    assert message.stop_reason in ("end_turn", "max_tokens") and message.stop_sequence is None
    assert [b.type for b in message.content] == ["text"] and message.content[0].text.strip()
    assert message.usage.input_tokens > 20
    assert (message.usage.output_tokens == 1000) == (message.stop_reason == "max_tokens")


def test_streaming_fun_fact(server):
    client = server.client("")
    with client.messages.stream(
        model=QWEN, max_tokens=1024,
        messages=[{"role": "user", "content": "Hello! Tell me a fun fact about space."}],
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 3
    assert final.content[0].text == "".join(pieces)
    assert final.stop_reason in ("end_turn", "max_tokens")  # sampled: it may ramble to the limit
    assert final.usage.output_tokens > 3


def test_serve_prints_lines_that_work_when_pasted(server):
    """The banner `parley serve` prints once it listens: each copy-paste line, run as printed."""
    log = server.log_text()
    assert f"is ready at {server.url}" in log, log[-3000:]
    lines = dict(re.findall(r"^  (Anthropic|OpenAI|Claude Code|playground) +(.+)$", log, re.M))
    client = eval(lines["Anthropic"], {"anthropic": anthropic})  # noqa: S307 - our own output
    assert client.models.list(limit=20).data[0].id == QWEN
    assert eval(lines["OpenAI"], {"openai": openai}).models.list().data[0].id == QWEN  # noqa: S307
    assert lines["playground"] == server.url + "/"
    assert lines["Claude Code"] == f"parley launch claude --url {server.url}"
    argv = lines["Claude Code"].split()[1:] + ["--config"]
    shown = subprocess.run([sys.executable, "-m", "parley.cli", *argv], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and f"export ANTHROPIC_BASE_URL={server.url}\n" in shown.stdout, shown.stderr
