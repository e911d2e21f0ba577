"""An agent-sized tool set (Claude Code sends 12 tools, 32 kB of schemas): accepted, counted, and compiled
into a grammar by the real llama.cpp engine."""

from __future__ import annotations

import json

import pytest

from conftest import QWEN, SMOL

LOREM = "Use this tool carefully; it runs in the user's workspace and its output is shown to the model. " * 23


def _tool(name: str, properties: dict, required: list[str]) -> dict:
    return {"name": name, "description": f"{name}: {LOREM}",
            "input_schema": {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                             "properties": properties, "required": required, "additionalProperties": False}}


S = {"type": "string", "description": "a string argument, described at length as agents do"}
AGENT_TOOLS = [
    _tool("Bash", {"command": S, "timeout": {"type": "number", "maximum": 600000}, "description": S,
                   "run_in_background": {"type": "boolean"}}, ["command"]),
    _tool("Read", {"file_path": S, "offset": {"type": "integer"}, "limit": {"type": "integer"}}, ["file_path"]),
    _tool("Edit", {"file_path": S, "old_string": S, "new_string": S, "replace_all": {"type": "boolean"}},
          ["file_path", "old_string", "new_string"]),
    _tool("Write", {"file_path": S, "content": S}, ["file_path", "content"]),
    _tool("Glob", {"pattern": S, "path": S}, ["pattern"]),
    _tool("Grep", {"pattern": S, "path": S, "output_mode": {"type": "string", "enum": ["content", "files_with_matches",
                                                                                         "count"]},
                   "-i": {"type": "boolean"}, "head_limit": {"type": "number"}}, ["pattern"]),
    _tool("Task", {"description": S, "prompt": S, "subagent_type": S}, ["description", "prompt", "subagent_type"]),
    _tool("TodoWrite", {"todos": {"type": "array", "items": {
        "type": "object", "properties": {"content": {"type": "string", "minLength": 1},
                                         "status": {"type": "string", "enum": ["pending", "in_progress", "completed"]},
                                         "activeForm": {"type": "string"}},
        "required": ["content", "status", "activeForm"], "additionalProperties": False}}}, ["todos"]),
    _tool("WebFetch", {"url": {"type": "string", "format": "uri"}, "prompt": S}, ["url", "prompt"]),
    _tool("WebSearch", {"query": {"type": "string", "minLength": 2}, "allowed_domains": {
        "type": "array", "items": {"type": "string"}}}, ["query"]),
    _tool("NotebookEdit", {"notebook_path": S, "new_source": S, "cell_id": S,
                           "edit_mode": {"type": "string", "enum": ["replace", "insert", "delete"]}},
          ["notebook_path", "new_source"]),
    _tool("ExitPlanMode", {"plan": S}, ["plan"]),
]


AGENT_TOOLS[-1]["cache_control"] = {"type": "ephemeral"}  # as Claude Code marks its tools (the API takes 4 at most)


def test_agent_tool_set_is_agent_sized():
    assert len(AGENT_TOOLS) == 12 and len(json.dumps(AGENT_TOOLS)) > 30_000


def test_agent_tools_are_accepted_and_counted(client):
    counted = client.messages.count_tokens(model=QWEN, tools=AGENT_TOOLS, system=[
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1; cch=abc;"},
        {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "list the files"}])
    assert counted.input_tokens > 6000


@pytest.mark.parametrize("kind", ["any", "auto"])
def test_agent_tools_compile_into_a_grammar_that_constrains(kind):
    """Real llama.cpp, small model for speed: the forced/lazy grammar over all 12 schemas compiles and the
    forced one produces a schema-valid call."""
    import jsonschema

    from parley.api.anthropic.protocol import MessagesRequest
    from parley.api.anthropic.translate import to_conversation, to_tool_choice
    from parley.chat.tools import ToolPlan
    from parley.core.params import SamplingParams
    from parley.engines.llamacpp import LlamaCppEngine
    from parley.engines.sync import generate
    from parley.models.packaged import SMOLLM2_135M
    from parley.parsers.json_scan import JsonCallScanner
    from parley.settings import Settings

    request = MessagesRequest(model=SMOL, max_tokens=5, tools=AGENT_TOOLS, tool_choice={"type": kind},
                              messages=[{"role": "user", "content": "Read the file README.md"}])
    conversation = to_conversation(request)
    engine = LlamaCppEngine(SMOLLM2_135M.gguf_path(Settings().cache_dir), n_ctx=2048)
    try:
        plan = ToolPlan(conversation.tools, to_tool_choice(request, conversation.tools), engine.chat_template.source)
        grammar = plan.grammar()
        engine.check([], SamplingParams(max_tokens=1, grammar=grammar))
        assert grammar.lazy == (kind == "auto")
        if kind == "any":
            prompt = engine.tokenize("Call a tool to read README.md:\n")
            params = SamplingParams(max_tokens=300, temperature=0.8, grammar=grammar, seed=7)
            text = b"".join(engine.token_bytes(s.token) for s in generate(engine, prompt, params)
                            if not engine.is_end_of_generation(s.token)).decode()
            scanner = JsonCallScanner({t["name"] for t in AGENT_TOOLS})
            scanner.feed(text)
            assert scanner.done, text
            schema = next(t["input_schema"] for t in AGENT_TOOLS if t["name"] == scanner.name)
            jsonschema.validate(scanner.arguments(), schema)
    finally:
        engine.close()
