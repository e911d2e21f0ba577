"""The OpenAI Responses API (`POST /v1/responses`): create, streamed and not, the event stream as the SDK's
types define it, errors, tools, structured output and reasoning, with the official `openai` SDK (and raw
HTTP where the wire itself is asserted) against the real packaged models. Stored state (retrieve, replay,
input items, delete, previous_response_id, background, restart, input_tokens) is in test_responses_state.py."""

from __future__ import annotations

import json
import re

import httpx
import jsonschema
import openai
import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from conftest import QWEN, SMOL
from support.sse_util import read_events

EVENT = pydantic.TypeAdapter(ResponseStreamEvent)
RESPONSE = pydantic.TypeAdapter(Response)
GREEDY = {"temperature": 0}

WEATHER = {
    "type": "function", "name": "get_weather", "description": "Get the current weather in a given city.",
    "strict": True,
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "The city, e.g. Paris"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"], "additionalProperties": False},
}
TIME = {
    "type": "function", "name": "get_time", "description": "Get the current local time in a time zone.",
    "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]},
}
NAMESPACE = {
    "type": "namespace", "name": "crm", "description": "The customer records system.",
    "tools": [{"type": "function", "name": "lookup_customer", "description": "Find a customer by email address.",
               "strict": True,
               "parameters": {"type": "object", "properties": {"email": {"type": "string"}},
                              "required": ["email"], "additionalProperties": False}}],
}
PHONE_RE = r"\d{3}-\d{4}"
PHONE = {"type": "custom", "name": "dial", "description": "Dial a local phone number.",
         "format": {"type": "grammar", "syntax": "regex", "definition": PHONE_RE}}
SQL_LARK = """start: "SELECT " column (", " column)* " FROM " TABLE ";"
column: "id" | "name" | "email"
TABLE: /[a-z]{3,12}/
"""
SQL_RE = r"SELECT (id|name|email)(, (id|name|email))* FROM [a-z]{3,12};"
SQL = {"type": "custom", "name": "run_sql", "description": "Run one SQL query against the shop database.",
       "format": {"type": "grammar", "syntax": "lark", "definition": SQL_LARK}}
NOTE = {"type": "custom", "name": "save_note", "description": "Save a free-text note.",
        "format": {"type": "text"}}
HOSTED = [{"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["vs_parley_test"]},
          {"type": "code_interpreter", "container": {"type": "auto"}}, {"type": "image_generation"}]
FILLER = ("The harbour town kept its records in a long ledger: ships that came in, what they carried, who paid "
          "the duty and who argued about it. Entry {i}: a schooner with {n} barrels of salt fish. ")


@pytest.fixture(scope="module")
def rserver(start_server, tmp_path_factory):
    """SmolLM2 with a 1,024-token context (so that truncation is cheap to reach), Qwen as served, and
    `smollm2-think`: SmolLM2 with a reasoning chat template (support/reasoning_model.py; built once, shared with
    conftest's think_models)."""
    from parley.models.packaged import SMOLLM2_135M
    from parley.settings import Settings
    from support.reasoning_model import build_reasoning_gguf

    models = Settings().cache_dir / "test-models"
    build_reasoning_gguf(SMOLLM2_135M.gguf_path(Settings().cache_dir), models, "smollm2-think")
    config = tmp_path_factory.mktemp("responses-config") / "parley.toml"
    config.write_text(f'[models."{SMOL}"]\nn_ctx = 1024\n')
    return start_server("--config", str(config), "--models-dir", str(models), "--max-loaded-models", "3",
                        ping_interval="0.5")


@pytest.fixture(scope="module")
def oai(rserver) -> openai.OpenAI:
    return openai.OpenAI(base_url=rserver.url + "/v1", api_key="not-needed", max_retries=0, timeout=300)


# ---- helpers


def _post(server, body: dict, path: str = "/v1/responses") -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=300)


def _strict(data: dict) -> Response:
    """The SDK builds its models without validating; this validates every required field and type."""
    return RESPONSE.validate_python(data)


def _ok(server, body: dict) -> tuple[Response, dict]:
    response = _post(server, body)
    assert response.status_code == 200, response.text[:1000]
    return _strict(response.json()), response.json()


def _assert_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert "Traceback" not in response.text and "site-packages" not in response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"], error
    if status == 400:
        assert error["type"] == "invalid_request_error", error
    return error


def read_sse(method: str, url: str, body: dict | None = None, params: dict | None = None,
             timeout: float = 300) -> list[tuple[str, dict]]:
    return read_events(url, body, timeout, method, params)


def check_stream(events: list[tuple[str, dict]]) -> tuple[Response, list]:
    """Every event validates against the SDK's `ResponseStreamEvent`, sequence numbers increase, the order is
    created, in_progress, then per output item added … done with its parts and deltas in between, and the
    last event carries the whole response, whose items are the items the `done` events carried. Further
    `response.in_progress` events (parley's keep-alive through a long prefill) may come anywhere in between.
    Returns that final response and all the parsed events."""
    every = [EVENT.validate_python(data) for _, data in events]
    numbers = [e.sequence_number for e in every]
    assert all(a < b for a, b in zip(numbers, numbers[1:], strict=False)), numbers
    for beat in every[2:]:
        if beat.type == "response.in_progress":
            assert beat.response.id == every[0].response.id and beat.response.status == "in_progress"
    parsed = every[:2] + [e for e in every[2:] if e.type != "response.in_progress"]
    types = [e.type for e in parsed]
    assert types[:2] == ["response.created", "response.in_progress"], types[:5]
    assert types[-1] in ("response.completed", "response.incomplete"), types[-3:]
    final = parsed[-1].response
    assert parsed[0].response.id == parsed[1].response.id == final.id
    assert parsed[0].response.status in ("queued", "in_progress") and parsed[0].response.output == []
    assert final.status == types[-1].removeprefix("response.")
    i, items = 2, []
    while i < len(parsed) - 1:
        added = parsed[i]
        assert added.type == "response.output_item.added", (i, types[i - 2:i + 3])
        index, item = len(items), added.item
        assert added.output_index == index and item.id
        i, streamed = _ITEM_EVENTS[item.type](parsed, i + 1, item, index)
        done = parsed[i]
        assert done.type == "response.output_item.done", (i, types[i])
        assert done.output_index == index and done.item.id == item.id and done.item.type == item.type
        if item.type == "message":
            assert [c.text for c in done.item.content] == streamed, (done.item, streamed)
        elif item.type == "function_call":
            assert done.item.arguments == streamed and done.item.name == item.name, done.item
        elif item.type == "custom_tool_call":
            assert done.item.input == streamed and done.item.name == item.name, done.item
        items.append(done.item)
        i += 1
    assert [o.model_dump() for o in final.output] == [o.model_dump() for o in items]
    _check_usage(final)
    return final, every


def _same_place(event, item, index: int, content_index: int | None = None) -> None:
    assert event.item_id == item.id and event.output_index == index, event
    if content_index is not None:
        assert event.content_index == content_index, event


def _deltas(parsed: list, i: int, item, index: int, kind: str, content_index: int | None = None):
    """The `kind` deltas from `i` on, then their `done` event: (index after it, the joined text, done)."""
    pieces = []
    while parsed[i].type == f"response.{kind}.delta":
        _same_place(parsed[i], item, index, content_index)
        pieces.append(parsed[i].delta)
        i += 1
    assert parsed[i].type == f"response.{kind}.done", parsed[i].type
    _same_place(parsed[i], item, index, content_index)
    return i + 1, "".join(pieces), parsed[i]


def _message_events(parsed: list, i: int, item, index: int) -> tuple[int, list[str]]:
    assert item.role == "assistant" and item.content == [] and item.status == "in_progress"
    texts: list[str] = []
    while parsed[i].type == "response.content_part.added":
        _same_place(parsed[i], item, index, len(texts))
        assert parsed[i].part.type == "output_text" and parsed[i].part.text == ""
        i, text, done = _deltas(parsed, i + 1, item, index, "output_text", len(texts))
        assert done.text == text
        assert parsed[i].type == "response.content_part.done", parsed[i].type
        _same_place(parsed[i], item, index, len(texts))
        assert parsed[i].part.text == text
        texts.append(text)
        i += 1
    return i, texts


def _function_call_events(parsed: list, i: int, item, index: int) -> tuple[int, str]:
    assert item.arguments == "" and item.status == "in_progress"
    assert parsed[i].type == "response.function_call_arguments.delta", parsed[i].type
    i, arguments, done = _deltas(parsed, i, item, index, "function_call_arguments")
    assert done.arguments == arguments
    return i, arguments


def _custom_tool_call_events(parsed: list, i: int, item, index: int) -> tuple[int, str]:
    assert item.input == ""
    i, custom_input, done = _deltas(parsed, i, item, index, "custom_tool_call_input")
    assert done.input == custom_input
    return i, custom_input


def _reasoning_events(parsed: list, i: int, item, index: int) -> tuple[int, None]:
    while parsed[i].type.startswith("response.reasoning"):
        i += 1
    return i, None


_ITEM_EVENTS = {"message": _message_events, "function_call": _function_call_events,
                "custom_tool_call": _custom_tool_call_events, "reasoning": _reasoning_events}


def _check_usage(response: Response) -> None:
    usage = response.usage
    assert usage is not None and usage.input_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert 0 <= usage.input_tokens_details.cached_tokens <= usage.input_tokens
    assert 0 <= usage.output_tokens_details.reasoning_tokens <= usage.output_tokens


def _calls(response: Response, kind: str = "function_call") -> list:
    return [o for o in response.output if o.type == kind]


# ---- create


def test_plain_create_shape_and_usage(rserver):
    r, raw = _ok(rserver, {"model": QWEN, "input": "What is the capital of France?", "max_output_tokens": 24,
                           "instructions": "Answer in one short sentence.", **GREEDY})
    assert r.id.startswith("resp_") and r.object == "response" and r.model == QWEN
    assert r.status == "completed" and r.error is None and r.incomplete_details is None
    assert r.created_at > 1.6e9 and r.completed_at is not None and r.completed_at >= r.created_at
    message = r.output[-1]
    assert message.type == "message" and message.role == "assistant" and message.status == "completed"
    assert message.id.startswith("msg_") and message.id != r.id
    assert [c.type for c in message.content] == ["output_text"] and message.content[0].annotations == []
    assert r.output_text and r.output_text == message.content[0].text
    _check_usage(r)
    assert r.usage.output_tokens_details.reasoning_tokens == 0
    assert "Paris" in r.output_text


def test_request_fields_are_echoed(rserver):
    body = {"model": SMOL, "input": "Say hi.", "max_output_tokens": 16, "temperature": 0, "top_p": 0.9,
            "instructions": "Be brief.", "metadata": {"run": "echo", "n": "1"}, "parallel_tool_calls": False,
            "max_tool_calls": 2, "prompt_cache_key": "parley-tests", "user": "user-1",
            "safety_identifier": "safety-1", "truncation": "disabled", "store": True}
    r, raw = _ok(rserver, body)
    got = {"metadata": r.metadata, "instructions": r.instructions, "max_output_tokens": r.max_output_tokens,
           "temperature": r.temperature, "top_p": r.top_p, "parallel_tool_calls": r.parallel_tool_calls,
           "max_tool_calls": r.max_tool_calls, "prompt_cache_key": r.prompt_cache_key, "user": r.user,
           "safety_identifier": r.safety_identifier, "truncation": r.truncation, "tool_choice": r.tool_choice,
           "tools": r.tools, "text.format": r.text and r.text.format.type, "background": r.background}
    expected = {**{k: body[k] for k in got if k in body}, "tool_choice": "auto", "tools": [],
                "text.format": "text", "background": False}
    assert {k: v for k, v in got.items() if v != expected[k]} == {}


def test_input_items_of_every_role_and_part(rserver):
    r, _ = _ok(rserver, {"model": QWEN, "max_output_tokens": 16, **GREEDY, "input": [
        {"role": "system", "content": "You are terse."},
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Answer in one word."}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Name a colour."}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Blue."}]},
        {"role": "assistant", "content": "Or red."},
        {"role": "user", "content": "Another one?"}]})
    assert r.status == "completed" and r.output_text


def test_max_output_tokens_makes_it_incomplete(rserver):
    r, _ = _ok(rserver, {"model": SMOL, "input": "Tell me a very long story about a dragon.",
                         "max_output_tokens": 16, **GREEDY})
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 16 and r.output[-1].status == "incomplete"
    events = read_sse("POST", rserver.url + "/v1/responses", {
        "model": SMOL, "input": "Tell me a very long story about a dragon.", "max_output_tokens": 16,
        "stream": True, **GREEDY})
    final, _ = check_stream(events)
    assert events[-1][0] == "response.incomplete" and final.incomplete_details.reason == "max_output_tokens"


def test_stream_events_are_typed_ordered_and_match_the_stored_response(rserver):
    events = read_sse("POST", rserver.url + "/v1/responses", {
        "model": QWEN, "input": "Name three fruits.", "max_output_tokens": 30, "stream": True,
        "metadata": {"k": "v"}, **GREEDY})
    final, parsed = check_stream(events)
    assert final.status == "completed" and final.metadata == {"k": "v"}
    assert sum(e.type == "response.output_text.delta" for e in parsed) >= 2
    text = "".join(e.delta for e in parsed if e.type == "response.output_text.delta")
    assert text == final.output_text and text
    stored = httpx.get(f"{rserver.url}/v1/responses/{final.id}", timeout=30)
    assert stored.status_code == 200 and stored.json() == events[-1][1]["response"]


def test_sdk_stream_helpers(oai):
    # get_final_response() wants `response.completed`: an answer that ends within the limit
    with oai.responses.stream(model=QWEN, input="Reply with only the word hello.", max_output_tokens=16,
                              **GREEDY) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas and "".join(deltas) == final.output_text
    events = list(oai.responses.create(model=SMOL, input="Say hello.", max_output_tokens=16, stream=True,
                                       **GREEDY))
    assert events[0].type == "response.created" and events[-1].type in ("response.completed",
                                                                        "response.incomplete")
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == \
        events[-1].response.output_text


def test_logprobs_on_output_text_and_deltas(rserver):
    body = {"model": QWEN, "input": "What is the capital of France? One word.", "max_output_tokens": 16,
            "top_logprobs": 3, "include": ["message.output_text.logprobs"], **GREEDY}
    r, _ = _ok(rserver, body)
    part = r.output[-1].content[0]
    assert part.logprobs and "".join(t.token for t in part.logprobs) == part.text
    for entry in part.logprobs:
        assert entry.logprob <= 0 and bytes(entry.bytes).decode("utf-8", "replace") == entry.token
        tops = [t.logprob for t in entry.top_logprobs]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True)
        assert entry.top_logprobs[0].token == entry.token  # greedy
    events = read_sse("POST", rserver.url + "/v1/responses", {**body, "stream": True})
    final, parsed = check_stream(events)
    deltas = [e for e in parsed if e.type == "response.output_text.delta"]
    assert all(e.logprobs for e in deltas)
    assert all("".join(t.token for t in e.logprobs) == e.delta for e in deltas)
    assert all(len(t.top_logprobs) == 3 for e in deltas for t in e.logprobs)


def test_truncation_disabled_is_a_400_and_auto_drops_the_oldest_items(rserver):
    history = []
    for i in range(10):  # ~1,700 tokens: over SmolLM2's 1,024 here
        history += [{"role": "user", "content": "".join(FILLER.format(i=i * 3 + j, n=j * 7) for j in range(3))},
                    {"role": "assistant", "content": f"Noted entry {i}."}]
    body = {"model": SMOL, "input": [*history, {"role": "user", "content": "Say OK."}],
            "max_output_tokens": 16, **GREEDY}
    error = _assert_error(_post(rserver, body), 400)
    assert "context" in error["message"] or "too long" in error["message"], error
    _assert_error(_post(rserver, {**body, "truncation": "disabled"}), 400)
    r, _ = _ok(rserver, {**body, "truncation": "auto"})
    assert r.truncation == "auto" and r.status in ("completed", "incomplete")
    assert 0 < r.usage.input_tokens < 1024


# ---- errors


_BAD = {
    "input_type": {"input": 5},
    "temperature_type": {"temperature": "hot"},
    "negative_max_output_tokens": {"max_output_tokens": -1},
    "unknown_role": {"input": [{"type": "message", "role": "wizard", "content": "hi"}]},
    "unknown_item": {"input": [{"type": "bogus_item", "text": "hi"}]},
    "bad_part": {"input": [{"role": "user", "content": [{"type": "input_bogus", "text": "hi"}]}]},
    "tool_without_name": {"tools": [{"type": "function", "parameters": {"type": "object"}}]},
    "unknown_tool_type": {"tools": [{"type": "teleport"}]},
    "tool_choice_missing_function": {"tools": [TIME], "tool_choice": {"type": "function", "name": "nope"}},
    "required_without_tools": {"tool_choice": "required"},
    "json_schema_without_schema": {"text": {"format": {"type": "json_schema", "name": "x"}}},
    "unknown_include": {"include": ["bogus.include"]},
    "bad_truncation": {"truncation": "sometimes"},
    "too_many_top_logprobs": {"top_logprobs": 50, "include": ["message.output_text.logprobs"]},
    "orphan_function_call_output": {"input": [{"role": "user", "content": "hi"}, {
        "type": "function_call_output", "call_id": "call_missing", "output": "42"}]},
    "function_call_without_output": {"tools": [TIME], "input": [
        {"role": "user", "content": "Time in Tokyo?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_time", "arguments": '{"timezone": "JST"}'},
        {"role": "user", "content": "hi"}]},
    "bad_lark": {"tools": [{"type": "custom", "name": "x", "format": {
        "type": "grammar", "syntax": "lark", "definition": "start: (((("}}]},
    "bad_regex": {"tools": [{"type": "custom", "name": "x", "format": {
        "type": "grammar", "syntax": "regex", "definition": "(unclosed"}}]},
}


@pytest.mark.parametrize("case", sorted(_BAD))
def test_bad_requests_are_400s_in_the_openai_envelope(rserver, case):
    body = {"model": SMOL, "input": "hi", "max_output_tokens": 16, **_BAD[case]}
    _assert_error(_post(rserver, body), 400)
    _assert_error(_post(rserver, {**body, "stream": True}), 400)


def test_unknown_model_conversation_and_malformed_json(rserver, oai):
    _assert_error(_post(rserver, {"model": "no-such-model", "input": "hi"}), 404)
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(model="no-such-model", input="hi")
    error = _assert_error(_post(rserver, {"model": SMOL, "input": "hi", "conversation": "conv_123"}), 400)
    assert "conversation" in error["message"].lower() or error["param"] == "conversation", error
    _assert_error(_post(rserver, {"model": SMOL, "input": "hi", "conversation": {"id": "conv_123"}}), 400)
    bad = httpx.post(rserver.url + "/v1/responses", content=b'{"model": "x", "input": ', timeout=30,
                     headers={"content-type": "application/json"})
    _assert_error(bad, 400)
    assert rserver.proc.poll() is None


# ---- tools


def test_forced_strict_function_call(rserver):
    r, _ = _ok(rserver, {"model": QWEN, "input": "What's the weather in Paris?", "tools": [WEATHER, TIME],
                         "tool_choice": {"type": "function", "name": "get_weather"}, "max_output_tokens": 60,
                         **GREEDY})
    calls = _calls(r)
    assert r.status == "completed" and calls and all(c.name == "get_weather" for c in calls)
    for call in calls:
        assert call.id.startswith("fc_") and call.call_id.startswith("call_") and call.status == "completed"
        jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])
    assert len({c.call_id for c in calls}) == len(calls)


def test_streamed_function_call(rserver):
    events = read_sse("POST", rserver.url + "/v1/responses", {
        "model": QWEN, "input": "What's the weather in Tokyo, in celsius?", "tools": [WEATHER],
        "tool_choice": "required", "max_output_tokens": 60, "stream": True, **GREEDY})
    final, parsed = check_stream(events)
    calls = _calls(final)
    assert calls and final.status == "completed"
    jsonschema.validate(json.loads(calls[0].arguments), WEATHER["parameters"])
    assert any(e.type == "response.function_call_arguments.delta" for e in parsed)


def test_tool_choice_none_required_and_allowed_tools(rserver):
    base = {"model": QWEN, "tools": [WEATHER, TIME], "max_output_tokens": 60, **GREEDY}
    none, _ = _ok(rserver, {**base, "input": "What's the weather in Paris?", "tool_choice": "none",
                            "max_output_tokens": 16})
    assert not _calls(none) and none.output_text
    required, _ = _ok(rserver, {**base, "input": "Weather in Paris and in Rome, and the time in Tokyo?",
                                "tool_choice": "required", "parallel_tool_calls": False})
    assert required.parallel_tool_calls is False and len(_calls(required)) == 1
    assert _calls(required)[0].name in ("get_weather", "get_time")
    allowed, _ = _ok(rserver, {**base, "input": "What's the weather in Paris?", "tool_choice": {
        "type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "get_time"}]}})
    assert _calls(allowed) and all(c.name == "get_time" for c in _calls(allowed))
    assert allowed.tool_choice.type == "allowed_tools" and [t.name for t in allowed.tools] == ["get_weather",
                                                                                               "get_time"]


def test_namespace_tool_call_and_its_round_trip(rserver):
    r, _ = _ok(rserver, {"model": QWEN, "input": "Look up the customer ada@example.com.", "tools": [NAMESPACE],
                         "tool_choice": "required", "max_output_tokens": 60, **GREEDY})
    call = _calls(r)[0]
    assert call.name == "lookup_customer" and call.namespace == "crm", call
    jsonschema.validate(json.loads(call.arguments), NAMESPACE["tools"][0]["parameters"])
    assert r.tools[0].type == "namespace" and r.tools[0].name == "crm"
    follow, _ = _ok(rserver, {"model": QWEN, "tools": [NAMESPACE], "tool_choice": "none", "max_output_tokens": 16,
                              **GREEDY, "input": [
        {"role": "user", "content": "Look up the customer ada@example.com."},
        call.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": call.call_id, "output": '{"name": "Ada Lovelace"}'}]})
    assert follow.status in ("completed", "incomplete") and follow.output_text


def test_function_call_history(rserver):
    r, _ = _ok(rserver, {"model": SMOL, "tools": [WEATHER], "tool_choice": "none", "max_output_tokens": 16, **GREEDY,
                         "input": [
        {"role": "user", "content": "What's the weather in Paris?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather",
         "arguments": '{"city": "Paris", "unit": "celsius"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "18 degrees and sunny"}]})
    assert r.status in ("completed", "incomplete") and r.output_text


def test_custom_tool_with_a_regex_grammar_streamed(rserver):
    events = read_sse("POST", rserver.url + "/v1/responses", {
        "model": SMOL, "input": "Call the pizza place.", "tools": [PHONE, NOTE], "stream": True,
        "tool_choice": {"type": "custom", "name": "dial"}, "max_output_tokens": 30, **GREEDY})
    final, parsed = check_stream(events)
    calls = _calls(final, "custom_tool_call")
    assert calls and all(c.name == "dial" for c in calls)
    for call in calls:
        assert re.fullmatch(PHONE_RE, call.input), call.input
        assert call.call_id and call.id
    assert any(e.type == "response.custom_tool_call_input.delta" for e in parsed)


def test_custom_tool_with_a_lark_grammar(rserver):
    r, _ = _ok(rserver, {"model": QWEN, "input": "List the names and emails of all customers.", "tools": [SQL],
                         "tool_choice": {"type": "custom", "name": "run_sql"}, "max_output_tokens": 40, **GREEDY})
    calls = _calls(r, "custom_tool_call")
    assert calls and calls[0].name == "run_sql"
    assert re.fullmatch(SQL_RE, calls[0].input), calls[0].input  # the same language
    try:
        import lark
    except ImportError:  # not a declared test dependency
        return
    lark.Lark(SQL_LARK, start="start").parse(calls[0].input)


def test_custom_tool_text_format_and_its_round_trip(rserver):
    r, _ = _ok(rserver, {"model": QWEN, "input": "Save the one-word note: Friday.",
                         "tools": [NOTE], "tool_choice": {"type": "custom", "name": "save_note"},
                         "max_output_tokens": 32, **GREEDY})
    call = _calls(r, "custom_tool_call")[0]
    assert call.name == "save_note" and isinstance(call.input, str) and call.call_id
    follow, _ = _ok(rserver, {"model": QWEN, "tools": [NOTE], "tool_choice": "none", "max_output_tokens": 16,
                              **GREEDY, "input": [
        {"role": "user", "content": "Save the one-word note: Friday."},
        call.model_dump(exclude_none=True),
        {"type": "custom_tool_call_output", "call_id": call.call_id, "output": "saved"}]})
    assert follow.status in ("completed", "incomplete") and follow.output_text


def test_hosted_tools_are_accepted_and_not_offered(rserver):
    r, raw = _ok(rserver, {"model": QWEN, "input": "Search the web for today's news.", "tools": [*HOSTED, TIME],
                           "tool_choice": "auto", "max_output_tokens": 24, **GREEDY})
    assert r.status in ("completed", "incomplete") and r.output
    assert {o.type for o in r.output} <= {"message", "function_call"}
    assert all(c.name == "get_time" for c in _calls(r))
    assert [t.type for t in r.tools] == [t["type"] for t in HOSTED] + ["function"]


# ---- structured output


def test_json_schema_and_json_object_formats(rserver):
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 30},
                                               "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    r, _ = _ok(rserver, {"model": QWEN, "input": "Invent a person.", "max_output_tokens": 60, **GREEDY,
                         "text": {"format": {"type": "json_schema", "name": "person", "schema": schema,
                                             "strict": True}}})
    assert r.status == "completed" and r.text.format.type == "json_schema"
    jsonschema.validate(json.loads(r.output_text), schema)
    r, _ = _ok(rserver, {"model": QWEN, "input": "Give me a small JSON object about a cat.",
                         "max_output_tokens": 160, **GREEDY, "text": {"format": {"type": "json_object"}}})
    # The grammar holds the output to one JSON object; how long the model makes it is its own (on a shared server
    # the prefix cache can tip a greedy near-tie), so a cut-off object is the API's `incomplete`, still an object.
    assert r.output_text.lstrip().startswith("{")
    if r.status == "completed":
        assert isinstance(json.loads(r.output_text), dict)
    else:
        assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"


class City(pydantic.BaseModel):
    name: str
    country: str


def test_sdk_parse_helper(oai):
    r = oai.responses.parse(model=QWEN, input="Name a famous city.", text_format=City, max_output_tokens=60,
                            **GREEDY)
    assert isinstance(r.output_parsed, City) and r.output_parsed.name


# ---- reasoning


def test_reasoning_effort_and_encrypted_content_shapes(rserver):
    r, _ = _ok(rserver, {"model": QWEN, "input": "What is 2 + 2?", "reasoning": {"effort": "low"},
                         "include": ["reasoning.encrypted_content"], "store": False, "max_output_tokens": 16,
                         **GREEDY})
    assert r.reasoning is not None and r.reasoning.effort == "low"
    for item in r.output:
        if item.type == "reasoning":
            assert item.encrypted_content
    forged = {"model": QWEN, "max_output_tokens": 16, "store": False, "input": [
        {"role": "user", "content": "What is 2 + 2?"},
        {"type": "reasoning", "id": "rs_forged", "summary": [], "encrypted_content": "gAAAAABforgedcontent=="},
        {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3 + 3?"}]}
    _assert_error(_post(rserver, forged), 400)


def test_reasoning_items_round_trip_and_tampering_is_a_400(rserver):
    """A model that reasons: its reasoning item comes back sealed, goes back in as it came, and a tampered
    seal is refused."""
    body = {"model": "smollm2-think", "input": "What is 2 + 2?", "reasoning": {"effort": "low"},
            "include": ["reasoning.encrypted_content"], "store": False, "max_output_tokens": 64}
    r, raw = _ok(rserver, body)
    reasoning = [o for o in r.output if o.type == "reasoning"]
    assert reasoning and all(item.encrypted_content for item in reasoning)
    assert r.usage.output_tokens_details.reasoning_tokens > 0
    follow = {**body, "max_output_tokens": 16, "input": [
        {"role": "user", "content": "What is 2 + 2?"}, *raw["output"], {"role": "user", "content": "Thanks!"}]}
    _ok(rserver, follow)
    sealed = reasoning[0].encrypted_content
    middle = len(sealed) // 2
    tampered = sealed[:middle] + ("A" if sealed[middle] != "A" else "B") + sealed[middle + 1:]
    items = json.loads(json.dumps(follow["input"]))
    next(i for i in items if i.get("type") == "reasoning")["encrypted_content"] = tampered
    _assert_error(_post(rserver, {**follow, "input": items}), 400)


# ---- prefixes


def test_openai_prefix(rserver):
    client = openai.OpenAI(base_url=rserver.url + "/openai/v1", api_key="x", max_retries=0, timeout=120)
    r = client.responses.create(model=SMOL, input="Hi", max_output_tokens=16, **GREEDY)
    assert r.status in ("completed", "incomplete") and client.responses.retrieve(r.id).id == r.id


def test_a_long_prefill_is_kept_alive_by_in_progress_events(rserver):
    """Codex gives a stream up after 5 minutes without an SSE event, and comments are not events to it: while a
    prompt is prefilled, `response.in_progress` repeats every ping interval (0.5 s here), numbered like the rest."""
    long_input = "Summarize this log.\n" + "\n".join(f"line {i}: request served in {i % 97} ms" for i in range(300))
    events = read_sse("POST", rserver.url + "/v1/responses", {
        "model": QWEN, "input": long_input, "max_output_tokens": 4, "stream": True, "temperature": 0})
    kinds = [name for name, _ in events]
    first_item = kinds.index("response.output_item.added")
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[2:first_item].count("response.in_progress") >= 2, kinds[:first_item]
    numbers = [data["sequence_number"] for _, data in events]
    assert numbers == list(range(len(events)))
    assert kinds[-1] in ("response.completed", "response.incomplete")
