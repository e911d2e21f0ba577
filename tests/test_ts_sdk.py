"""The official TypeScript SDK (`@anthropic-ai/sdk` from npm) as the client: its MessageStream helper
accumulates a streamed tool call from `input_json_delta`s and a streamed text answer."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import QWEN

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from npm import NpmUnavailable, npm_install  # noqa: E402

TS_SDK = "@anthropic-ai/sdk@1.14.0"
SCRIPT = Path(__file__).resolve().parent / "ts" / "stream.cjs"


@pytest.fixture(scope="module")
def sdk_modules() -> Path:
    if shutil.which("node") is None:
        pytest.skip("node is not installed on this machine")
    try:
        return npm_install(TS_SDK)
    except NpmUnavailable as exc:
        pytest.skip(str(exc))


def _stream(modules: Path, base_url: str, request: dict) -> dict:
    proc = subprocess.run(["node", str(SCRIPT), str(modules), base_url, json.dumps(request)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


WEATHER = {"name": "get_weather", "description": "Current weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                            "required": ["city", "days"]}}


def test_streamed_tool_call_accumulated_by_the_sdk(sdk_modules, server):
    out = _stream(sdk_modules, server.url, {
        "model": QWEN, "max_tokens": 200, "temperature": 0, "tools": [WEATHER],
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "messages": [{"role": "user", "content": "What will the weather be in Paris for the next 3 days?"}]})
    message = out["message"]
    assert message["stop_reason"] == "tool_use"
    calls = [b for b in message["content"] if b["type"] == "tool_use"]
    assert len(calls) == 1 and calls[0]["name"] == "get_weather" and calls[0]["id"].startswith("toolu_")
    tool_input = calls[0]["input"]
    assert isinstance(tool_input["city"], str) and isinstance(tool_input["days"], int)
    # The SDK parsed the input from our fragments: they join into exactly that JSON, in more than one piece.
    fragments = [d["partial"] for d in out["inputJson"]]
    assert len(fragments) > 1 and json.loads("".join(fragments)) == tool_input
    assert out["inputJson"][-1]["snapshot"] == tool_input
    assert out["events"][0] == "message_start" and out["events"][-1] == "message_stop"
    assert "content_block_delta" in out["events"]


def test_streamed_text_answer(sdk_modules, server):
    out = _stream(sdk_modules, server.url + "/anthropic", {
        "model": QWEN, "max_tokens": 40, "temperature": 0,
        "messages": [{"role": "user", "content": "Say hello in three words."}]})
    message = out["message"]
    text = "".join(b["text"] for b in message["content"] if b["type"] == "text")
    assert text and "".join(out["text"]) == text and len(out["text"]) > 1
    assert message["stop_reason"] in ("end_turn", "max_tokens")
    assert message["usage"]["output_tokens"] >= len(out["text"]) - 1
    assert out["events"].count("message_start") == 1 and out["events"][-1] == "message_stop"
