"""--tool-parser / --reasoning-parser and the per-model `tool_parser` / `reasoning_parser` config keys: names
checked at start-up, and each one changing what a real server does."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import QWEN

WEATHER = {"name": "get_weather", "description": "Get the current weather in a given location",
           "input_schema": {"type": "object", "properties": {"location": {"type": "string"}},
                            "required": ["location"]}}
ASK = [{"role": "user", "content": "What's the weather like in Paris?"}]
GREEDY = {"temperature": 0}


@pytest.mark.parametrize("flag,names", [("--tool-parser", "'hermes', 'llama3_json', 'json', 'mistral', 'qwen3_coder'"),
                                        ("--reasoning-parser", "'think', 'none'")])
def test_an_unknown_parser_on_the_command_line_stops_the_server(flag, names):
    bad = subprocess.run([sys.executable, "-m", "parley.cli", "serve", flag, "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and f"invalid choice: 'nope' (choose from {names})" in bad.stderr, bad.stderr


def test_an_unknown_parser_in_the_config_stops_the_server(tmp_path):
    config = tmp_path / "models.toml"
    config.write_text(f'[models."{QWEN}"]\ntool_parser = "nope"\n')
    bad = subprocess.run([sys.executable, "-m", "parley.cli", "serve", "--config", str(config)], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2, bad.stderr[-2000:]
    assert (f'models."{QWEN}".tool_parser must be one of '
            "('hermes', 'llama3_json', 'json', 'mistral', 'qwen3_coder')") in bad.stderr


def test_capabilities_follow_the_reasoning_parser(start_server, think_models, tmp_path):
    """--reasoning-parser none turns reasoning off for every model; a model's own key beats it."""
    config = tmp_path / "models.toml"
    config.write_text(f'[models."{QWEN}"]\nreasoning_parser = "think"\n')
    server = start_server("--models-dir", str(think_models), "--reasoning-parser", "none", "--config", str(config))
    client = server.client()
    assert not client.models.retrieve("smollm2-think").capabilities.thinking.supported  # a reasoning template
    assert client.models.retrieve(QWEN).capabilities.thinking.supported  # a template without <think>
    listed = {m.id: m for m in client.models.list(limit=100)}
    assert not listed["qwen2.5-0.5b-think"].capabilities.thinking.supported
    # Loaded, the model reports the parsers it was loaded with.
    reply = client.messages.create(model=QWEN, max_tokens=2, messages=ASK)
    assert reply.stop_reason == "max_tokens" and client.models.retrieve(QWEN).capabilities.thinking.supported


def test_the_tool_parser_decides_what_a_call_looks_like(start_server):
    """Qwen writes hermes `<tool_call>` markup. Parsed as Mistral's, a forced call is forced in Mistral's syntax
    (and so parsed), while a call the model writes its own way is only text."""
    client = start_server("--tool-parser", "mistral").client()
    one_call = {"type": "any", "disable_parallel_tool_use": True}  # `[TOOL_CALLS]` has no closer: say when to end
    forced = client.messages.create(model=QWEN, max_tokens=100, tools=[WEATHER], tool_choice=one_call,
                                    messages=ASK, extra_body=GREEDY)
    assert forced.stop_reason == "tool_use", forced.content
    assert [(b.type, b.name, b.input) for b in forced.content] == [("tool_use", "get_weather", {"location": "Paris"})]
    free = client.messages.create(model=QWEN, max_tokens=100, tools=[WEATHER], messages=ASK, extra_body=GREEDY)
    # The same call, in Qwen's own syntax (`<tool_call>` is a special token, not shown), is left as text.
    assert free.stop_reason == "end_turn" and [b.type for b in free.content] == ["text"], free.content
    assert json.loads(free.content[0].text) == {"name": "get_weather", "arguments": {"location": "Paris"}}
