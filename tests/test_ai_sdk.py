"""The Vercel AI SDK (`ai` 6 with `@ai-sdk/openai`, pinned, from npm) as a client of parley's Responses API:
`openai.responses(model)` with generateText, streamText, a forced tool call (generated and streamed) and
generateObject with a schema, at temperature 0 on the packaged Qwen.

Asserted is what parley controls: no error, the stream finished, the tool call's input is valid against its
schema, the object matches its schema. What the model says is not."""

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

AI_SDK = ("ai@6.0.333", "@ai-sdk/openai@3.0.141", "zod@4.6.7")
SCRIPT = Path(__file__).resolve().parent / "ts" / "ai_sdk.cjs"


@pytest.fixture(scope="module")
def sdk_modules() -> Path:
    if shutil.which("node") is None:
        pytest.skip("node is not installed on this machine")
    try:
        return npm_install(*AI_SDK)
    except NpmUnavailable as exc:
        pytest.skip(str(exc))


def _call(modules: Path, base_url: str, case: str) -> dict:
    proc = subprocess.run(["node", str(SCRIPT), str(modules), base_url, QWEN, case], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _tokens_counted(usage: dict) -> None:
    assert usage["inputTokens"] > 0 and usage["outputTokens"] > 0, usage


def test_generate_text(sdk_modules, server):
    out = _call(sdk_modules, server.url + "/v1", "text")
    assert out["text"].strip() and out["finishReason"] in ("stop", "length"), out
    assert out["responseId"].startswith("resp_")
    _tokens_counted(out["usage"])


def test_stream_text(sdk_modules, server):
    out = _call(sdk_modules, server.url + "/openai/v1", "stream")
    assert len(out["deltas"]) > 1 and "".join(out["deltas"]) == out["text"] and out["text"].strip(), out
    assert out["parts"][0] == "start" and out["parts"][-1] == "finish", out["parts"]  # the stream finished
    assert out["finishReason"] in ("stop", "length") and "error" not in out["parts"]
    _tokens_counted(out["usage"])


def _valid_weather_call(calls: list[dict]) -> dict:
    assert len(calls) == 1 and calls[0]["toolName"] == "get_weather" and calls[0]["toolCallId"], calls
    tool_input = calls[0]["input"]
    # The schema (zod): {city: string, days: integer}, both required. The SDK parsed the input against it.
    assert set(tool_input) == {"city", "days"}, tool_input
    assert isinstance(tool_input["city"], str) and isinstance(tool_input["days"], int), tool_input
    return tool_input


def test_forced_tool_call(sdk_modules, server):
    out = _call(sdk_modules, server.url + "/v1", "tool")
    _valid_weather_call(out["toolCalls"])
    assert out["finishReason"] == "tool-calls", out
    _tokens_counted(out["usage"])


def test_streamed_tool_call(sdk_modules, server):
    out = _call(sdk_modules, server.url + "/v1", "stream-tool")
    tool_input = _valid_weather_call(out["toolCalls"])
    # The input arrived in fragments that join into exactly that JSON.
    assert out["inputDeltas"] and json.loads("".join(out["inputDeltas"])) == tool_input, out["inputDeltas"]
    assert out["parts"][-1] == "finish" and out["finishReason"] == "tool-calls", out


def test_generate_object_with_a_schema(sdk_modules, server):
    out = _call(sdk_modules, server.url + "/v1", "object")
    obj = out["object"]
    assert set(obj) == {"name", "country"} and all(isinstance(v, str) for v in obj.values()), obj
    assert out["finishReason"] == "stop", out
    _tokens_counted(out["usage"])
