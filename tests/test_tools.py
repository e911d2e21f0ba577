"""Tool use end to end: the official SDK against the real Qwen2.5-0.5B, grammar-constrained."""

from __future__ import annotations

import json

import anthropic
import httpx
import jsonschema
import pytest

from conftest import QWEN, SMOL

WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "input_schema": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "The unit of temperature"},
        },
        "required": ["location"],
    },
}
EMAIL = {
    "name": "send_email",
    "description": "Send an email to a recipient",
    "input_schema": {
        "type": "object",
        "properties": {"to": {"type": "string"}, "subject": {"type": "string"}, "body": {"type": "string"}},
        "required": ["to", "subject", "body"],
    },
}
TOOLS = [WEATHER, EMAIL]
SCHEMAS = {t["name"]: t["input_schema"] for t in TOOLS}
UPSTREAM = ("What's the weather like in San Francisco? Also send an email to john@example.com about the "
            "meeting tomorrow.")
GREEDY = {"temperature": 0}


def _tool_uses(message) -> list:
    return [b for b in message.content if b.type == "tool_use"]


def _assert_valid_calls(message, schemas=SCHEMAS) -> None:
    calls = _tool_uses(message)
    assert calls, message.content
    for call in calls:
        assert call.id.startswith("toolu_") and call.name in schemas
        jsonschema.validate(call.input, schemas[call.name])
    assert len({c.id for c in calls}) == len(calls)


def test_upstream_non_streaming_example(client):
    message = client.messages.create(model=QWEN, max_tokens=400, tools=TOOLS, extra_body=GREEDY,
                                     messages=[{"role": "user", "content": UPSTREAM}])
    assert message.stop_reason == "tool_use"
    _assert_valid_calls(message)
    assert all(b.type in ("text", "tool_use") for b in message.content)
    assert all("<tool_call>" not in b.text and '"arguments"' not in b.text
               for b in message.content if b.type == "text")


def test_upstream_streaming_example(client):
    with client.messages.stream(model=QWEN, max_tokens=400, tools=TOOLS, extra_body=GREEDY,
                                messages=[{"role": "user", "content": UPSTREAM}]) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    _assert_valid_calls(final)
    block_events = [e for e in events if e.type.startswith("content_block")]
    open_index, fragments, expected_index = None, {}, 0
    for event in block_events:
        if event.type == "content_block_start":
            assert open_index is None and event.index == expected_index  # one block open at a time
            open_index = event.index
            if event.content_block.type == "tool_use":
                assert event.content_block.input == {} and event.content_block.id.startswith("toolu_")
                fragments[event.index] = []
        elif event.type == "content_block_delta":
            assert event.index == open_index
            if event.delta.type == "input_json_delta":
                fragments[event.index].append(event.delta.partial_json)
        else:
            assert event.index == open_index
            open_index, expected_index = None, expected_index + 1
    assert fragments
    for index, parts in fragments.items():
        assert len(parts) > 1  # streamed as generated, not in one piece
        assert json.loads("".join(parts)) == final.content[index].input


PROMPTS = [
    "Weather in Paris please.", "Email bob@x.org that the build is green.", "Is it raining in Tokyo?",
    "Tell alice@corp.com the meeting moved to 3pm.", "How hot is it in Cairo in fahrenheit?",
    "Send a thank-you note to hr@acme.io.", "Do I need an umbrella in London today?",
    "Write to team@site.dev: release tomorrow.", "What's the temperature in Sydney in celsius?",
    "Notify ops@infra.net that the disk is full.", "Check the weather for New York, NY.",
    "Email my landlord at rent@home.com about the leak.", "Forecast for Berlin?", "Hi!",
    "Let sam@pm.co know the report is late.", "Weather at the North Pole?", "Tell me a joke.",
    "Remind joe@x.io by email to buy milk.", "Is it sunny in Rome, Italy?", "Write an email to me@me.me saying hi.",
]


def test_tool_choice_any_always_returns_schema_valid_calls(client):
    """Sampled at temperature 1 on purpose: validity must not depend on the model behaving. A sampled email
    body may legitimately run past `max_tokens` (seen once in CI): such a call is cut short, as the real API
    cuts it, so it is checked for that shape; every call that ended must validate, and most must end."""
    truncated = []
    for prompt in PROMPTS:
        message = client.messages.create(model=QWEN, max_tokens=600, tools=TOOLS, tool_choice={"type": "any"},
                                         messages=[{"role": "user", "content": prompt}])
        if message.stop_reason == "max_tokens":
            assert [b.type for b in message.content][-1] == "tool_use", message.content
            assert message.usage.output_tokens == 600
            truncated.append(prompt)
            continue
        assert message.stop_reason == "tool_use", (prompt, message.content)
        _assert_valid_calls(message)
    assert len(truncated) <= 2, truncated


def test_tool_choice_tool_forces_the_named_tool(client):
    message = client.messages.create(model=QWEN, max_tokens=200, tools=TOOLS, extra_body=GREEDY,
                                     tool_choice={"type": "tool", "name": "send_email"},
                                     messages=[{"role": "user", "content": "What's the weather in Oslo?"}])
    assert [c.name for c in _tool_uses(message)] == ["send_email"]
    _assert_valid_calls(message)


def test_disable_parallel_tool_use_gives_one_call(client):
    message = client.messages.create(
        model=QWEN, max_tokens=300, tools=TOOLS, extra_body=GREEDY,
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        messages=[{"role": "user", "content": UPSTREAM}])
    assert len(_tool_uses(message)) == 1 and message.stop_reason == "tool_use"


def test_tool_choice_none_returns_no_calls(client):
    message = client.messages.create(model=QWEN, max_tokens=60, tools=TOOLS, tool_choice={"type": "none"},
                                     extra_body=GREEDY, messages=[{"role": "user", "content": UPSTREAM}])
    assert not _tool_uses(message) and message.stop_reason in ("end_turn", "max_tokens")
    assert "<tool_call>" not in message.content[0].text


def test_refs_and_nested_schemas_are_enforced(client):
    order = {
        "name": "place_order",
        "description": "Order items for delivery",
        "input_schema": {
            "type": "object",
            "$defs": {"item": {"type": "object", "properties": {
                "sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}},
                "required": ["sku", "qty"], "additionalProperties": False}},
            "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/item"}, "minItems": 1},
                           "express": {"type": "boolean"}},
            "required": ["items", "express"],
            "additionalProperties": False,
        },
    }
    message = client.messages.create(model=QWEN, max_tokens=200, tools=[order], tool_choice={"type": "any"},
                                     messages=[{"role": "user", "content": "Order two apples, express."}])
    _assert_valid_calls(message, {"place_order": order["input_schema"]})


def test_max_tokens_inside_a_call_is_not_a_valid_looking_call(client):
    message = client.messages.create(model=QWEN, max_tokens=8, tools=TOOLS, tool_choice={"type": "any"},
                                     extra_body=GREEDY, messages=[{"role": "user", "content": UPSTREAM}])
    assert message.stop_reason == "max_tokens"
    assert all(c.input == {} for c in _tool_uses(message))


def _loop_messages(is_error: bool) -> list[dict]:
    return [
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"location": "Paris"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01", "is_error": is_error,
             "content": [{"type": "text", "text": "service unavailable" if is_error else "18 degrees, sunny"}]},
        ]},
    ]


@pytest.mark.parametrize("is_error", [False, True])
def test_full_tool_loop_ends_in_an_answer(client, is_error):
    question = {"role": "user", "content": "What's the weather in Paris?"}
    first = client.messages.create(model=QWEN, max_tokens=200, tools=TOOLS, extra_body=GREEDY,
                                   tool_choice={"type": "tool", "name": "get_weather"}, messages=[question])
    call = _tool_uses(first)[0]
    result = "service unavailable" if is_error else "18 degrees, sunny"
    history = [question, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "is_error": is_error,
                                             "content": [{"type": "text", "text": result}]}]}]
    # The 0.5B model tends to call again in auto mode; `none` asks for the answer, with the same history.
    answer = client.messages.create(model=QWEN, max_tokens=80, tools=TOOLS, tool_choice={"type": "none"},
                                    extra_body=GREEDY, messages=history)
    text = answer.content[0].text
    assert answer.stop_reason == "end_turn" and text and not _tool_uses(answer)
    if not is_error:
        assert "18" in text


def test_history_renders_in_the_templates_native_format():
    from llama_cpp import Llama

    from parley.api.anthropic.protocol import MessagesRequest
    from parley.api.anthropic.translate import to_conversation
    from parley.models.packaged import QWEN_CODER_05B
    from parley.settings import Settings

    path = QWEN_CODER_05B.gguf_path(Settings().cache_dir)
    template_source = Llama(str(path), vocab_only=True, verbose=False).metadata["tokenizer.chat_template"]
    from parley.core.template import ChatTemplate

    request = MessagesRequest(model=QWEN, max_tokens=5, tools=TOOLS, messages=_loop_messages(True))
    prompt = ChatTemplate(template_source).render(to_conversation(request))
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"location": "Paris"}}\n</tool_call>' in prompt
    assert "<|im_start|>user\n<tool_response>\nError: service unavailable\n</tool_response><|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    assert '"name": "send_email"' in prompt  # the tools section, in the template's own words


def test_count_tokens_with_tools_matches_usage(client):
    kwargs = dict(model=SMOL, tools=TOOLS, messages=[{"role": "user", "content": UPSTREAM}])
    counted = client.messages.count_tokens(**kwargs)
    message = client.messages.create(max_tokens=5, **kwargs)
    assert counted.input_tokens == message.usage.input_tokens + message.usage.cache_read_input_tokens
    plain = client.messages.count_tokens(model=SMOL, messages=[{"role": "user", "content": UPSTREAM}])
    assert counted.input_tokens > plain.input_tokens + 50  # the tools are in the prompt


@pytest.mark.parametrize("tools, choice, fragment", [
    ([{"name": "x", "description": "no schema"}], None, "input_schema"),
    ([{"name": "bad name!", "input_schema": {"type": "object"}}], None, "name"),
    ([{"name": "x", "input_schema": {"type": 12}}], None, "input_schema"),
    ([{"name": "x", "input_schema": {"type": "string"}}], None, "input_schema"),
    ([WEATHER, WEATHER], None, "unique"),
    (TOOLS, {"type": "tool", "name": "nope"}, "tool_choice"),
    (None, {"type": "any"}, "tool_choice"),
    (TOOLS, {"type": "sometimes"}, "tool_choice"),
])
def test_invalid_tool_definitions_are_400(client, tools, choice, fragment):
    kwargs = {"tools": tools} if tools else {}
    if choice:
        kwargs["tool_choice"] = choice
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=SMOL, max_tokens=5, messages=[{"role": "user", "content": "hi"}], **kwargs)
    assert fragment in info.value.body["error"]["message"]


def test_agent_tool_fields_and_server_tools_are_accepted(client):
    tools = [
        {**WEATHER, "type": "custom", "cache_control": {"type": "ephemeral"}, "strict": True,
         "defer_loading": False, "input_examples": [{"location": "Paris"}]},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
        {"type": "tool_search_tool_regex_20251119", "name": "tool_search_tool_regex"},
    ]
    message = client.messages.create(model=SMOL, max_tokens=40, tools=tools, tool_choice={"type": "any"},
                                     messages=[{"role": "user", "content": "Weather in Rome?"}])
    assert [c.name for c in _tool_uses(message)] == ["get_weather"]  # server tools are not offered


def test_deferred_tools_are_not_in_the_prompt(client):
    """`defer_loading: true` keeps a tool out of the model's context (Claude Code sends a placeholder so)."""
    placeholder = {"name": "DeferredToolPlaceholder", "description": "Never call this tool. " * 20,
                   "input_schema": {"type": "object", "properties": {}}}
    messages = [{"role": "user", "content": "Weather in Rome?"}]
    count = lambda tools: client.messages.count_tokens(model=SMOL, tools=tools, messages=messages).input_tokens  # noqa: E731
    alone = count([WEATHER])
    assert count([WEATHER, {**placeholder, "defer_loading": True}]) == alone
    assert count([WEATHER, placeholder]) > alone + 40
    with pytest.raises(anthropic.BadRequestError):  # still validated: names stay unique
        count([WEATHER, {**WEATHER, "defer_loading": True}])


def test_a_tool_reference_loads_a_deferred_tool(client):
    """Claude Code's ToolSearch answers with `tool_reference` blocks; the referenced deferred tool is then in the
    model's context, as the API loads it."""
    deferred = {**WEATHER, "defer_loading": True}
    search = {"name": "ToolSearch", "description": "Find tools",
              "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}}

    def turns(result_content):
        return [{"role": "user", "content": "Weather in Rome?"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "ToolSearch",
                                                   "input": {"query": "weather"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                              "content": result_content}]}]

    def count(tools, messages):
        return client.messages.count_tokens(model=SMOL, tools=tools, messages=messages).input_tokens

    reference = [{"type": "tool_reference", "tool_name": "get_weather"}]
    loaded = count([search, deferred], turns(reference))
    assert loaded > count([search, deferred], turns([{"type": "text", "text": "[tool loaded: get_weather]"}])) + 20
    assert loaded == count([search, WEATHER], turns(reference))  # exactly as if it had never been deferred
    message = client.messages.create(model=SMOL, max_tokens=60, tools=[search, deferred], messages=turns(reference),
                                     tool_choice={"type": "tool", "name": "get_weather"})
    assert [c.name for c in _tool_uses(message)] == ["get_weather"]
    with pytest.raises(anthropic.BadRequestError) as info:  # only a tool result may carry one
        count([search, deferred], [{"role": "user", "content": reference}])
    assert "messages.0.content.0" in info.value.body["error"]["message"]


# --- the API's pairing rule: a tool_use is answered in the next message, a tool_result answers one before ------

CALL = {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"location": "Paris"}}
OTHER_CALL = {"type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {"location": "Rome"}}


def _result(tool_use_id: str) -> dict:
    return {"type": "tool_result", "tool_use_id": tool_use_id, "content": "Sunny, 18 C"}


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
@pytest.mark.parametrize("messages, expected", [
    ([{"role": "user", "content": "Weather in Paris and Rome?"},
      {"role": "assistant", "content": [{"type": "text", "text": "Checking."}, CALL, OTHER_CALL]},
      {"role": "user", "content": [_result("toolu_01"), {"type": "text", "text": "and?"}]}],
     "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_02. Each "
     "`tool_use` block must have a corresponding `tool_result` block in the next message."),
    ([{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": [CALL]},
      {"role": "user", "content": "never mind"}, {"role": "assistant", "content": "OK."},
      {"role": "user", "content": [_result("toolu_01")]}],
     "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_01. Each "
     "`tool_use` block must have a corresponding `tool_result` block in the next message."),
    ([{"role": "user", "content": [_result("toolu_09")]}],
     "messages.0.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_09. Each `tool_result` "
     "block must have a corresponding `tool_use` block in the previous message."),
    ([{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": [CALL]},
      {"role": "user", "content": [_result("toolu_01"), _result("toolu_02")]}],
     "messages.2.content.1: unexpected `tool_use_id` found in `tool_result` blocks: toolu_02. Each `tool_result` "
     "block must have a corresponding `tool_use` block in the previous message."),
])
def test_unpaired_tool_turns_are_the_apis_400(server, path, messages, expected):
    body = {"model": SMOL, "max_tokens": 5, "tools": [WEATHER], "messages": messages}
    response = httpx.post(server.url + path, json=body, timeout=60)
    assert response.status_code == 400, response.text
    assert response.json()["type"] == "error"
    assert response.json()["error"] == {"type": "invalid_request_error", "message": expected}


def test_paired_tool_turns_may_be_split_or_interleaved_with_system_messages(client):
    """Consecutive user messages are one turn to the API; parley's mid-conversation system messages are passed
    over: both still pair."""
    messages = [{"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "content": [CALL]}, {"role": "assistant", "content": [OTHER_CALL]},
                {"role": "system", "content": "Tool results follow."},
                {"role": "user", "content": [_result("toolu_02")]}, {"role": "user", "content": [_result("toolu_01")]}]
    counted = client.messages.count_tokens(model=SMOL, tools=[WEATHER], messages=messages)
    assert counted.input_tokens > 20
