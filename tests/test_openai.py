"""The OpenAI Chat Completions API on the same core, with the official `openai` SDK as the client."""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest

from conftest import QWEN, SMOL

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a given location",
    "parameters": {"type": "object", "properties": {
        "location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["location"]}}}
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def oai(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed", max_retries=0)


def test_plain_completion(oai):
    r = oai.chat.completions.create(model=QWEN, max_tokens=30, **GREEDY, messages=[
        {"role": "system", "content": "Answer in one short sentence."},
        {"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]}])
    choice = r.choices[0]
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion" and r.model == QWEN
    assert choice.message.role == "assistant" and "Paris" in choice.message.content
    assert choice.finish_reason == "stop"
    assert r.usage.prompt_tokens > 10 and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert 0 <= r.usage.prompt_tokens_details.cached_tokens < r.usage.prompt_tokens


def test_length_and_stop(oai):
    r = oai.chat.completions.create(model=SMOL, max_completion_tokens=3, messages=[
        {"role": "user", "content": "Tell me a long story."}])
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 3
    r = oai.chat.completions.create(model=QWEN, max_tokens=40, **GREEDY, stop=["3"], messages=[
        {"role": "user", "content": "Count from 1 to 10, separated by commas."}])
    assert r.choices[0].finish_reason == "stop" and "3" not in r.choices[0].message.content


def test_streaming_chunks_in_order(server):
    body = {"model": SMOL, "max_tokens": 8, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}, "messages": [{"role": "user", "content": "Hello"}]}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=60) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    contents = [c["choices"][0]["delta"].get("content") for c in chunks[1:-2]]
    assert contents and all(contents)
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 8


def test_sdk_stream_matches_non_stream(oai):
    kwargs = dict(model=QWEN, max_tokens=30, **GREEDY, messages=[{"role": "user", "content": "Name three fruits."}])
    # A cold prompt and a prefix-cached one differ in llama.cpp's batch shapes (and so, slightly, in logits):
    # warm the cache first so that both compared runs take the same path.
    oai.chat.completions.create(**kwargs)
    text = "".join(c.choices[0].delta.content or "" for c in oai.chat.completions.create(stream=True, **kwargs)
                   if c.choices)
    assert text == oai.chat.completions.create(**kwargs).choices[0].message.content


def test_streamed_tool_call_fragments_rebuild_the_arguments(oai):
    kwargs = dict(model=QWEN, max_tokens=120, **GREEDY, tools=[WEATHER], tool_choice="required",
                  messages=[{"role": "user", "content": "What's the weather in Paris?"}])
    calls: dict[int, dict] = {}
    finish = None
    for chunk in oai.chat.completions.create(stream=True, **kwargs):
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for call in choice.delta.tool_calls or []:
            entry = calls.setdefault(call.index, {"id": call.id, "name": call.function.name, "args": []})
            entry["args"].append(call.function.arguments or "")
    assert finish == "tool_calls" and calls[0]["id"].startswith("call_") and calls[0]["name"] == "get_weather"
    assert len(calls[0]["args"]) > 2
    streamed = json.loads("".join(calls[0]["args"]))
    jsonschema.validate(streamed, WEATHER["function"]["parameters"])
    whole = oai.chat.completions.create(**kwargs).choices[0]
    assert whole.finish_reason == "tool_calls" and whole.message.content is None
    assert json.loads(whole.message.tool_calls[0].function.arguments) == streamed


def test_named_and_none_tool_choice(oai):
    named = oai.chat.completions.create(model=QWEN, max_tokens=120, **GREEDY, tools=[WEATHER],
                                        tool_choice={"type": "function", "function": {"name": "get_weather"}},
                                        messages=[{"role": "user", "content": "Hello there"}])
    assert named.choices[0].message.tool_calls[0].function.name == "get_weather"
    none = oai.chat.completions.create(model=QWEN, max_tokens=30, **GREEDY, tools=[WEATHER], tool_choice="none",
                                       messages=[{"role": "user", "content": "What's the weather in Paris?"}])
    assert not none.choices[0].message.tool_calls and none.choices[0].message.content


def test_tool_loop_history(oai):
    r = oai.chat.completions.create(model=QWEN, max_tokens=60, **GREEDY, tools=[WEATHER], tool_choice="none",
                                    messages=[
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                              "arguments": '{"location": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees and sunny"}])
    assert "18" in r.choices[0].message.content


def test_json_schema_output_validates(oai):
    # Bounded lengths: at temperature 1 a small model may otherwise list tags until max_tokens (finish "length").
    short = {"type": "string", "maxLength": 40}
    schema = {"type": "object", "properties": {"name": short, "age": {"type": "integer", "minimum": 0},
                                               "tags": {"type": "array", "items": short, "maxItems": 3}},
              "required": ["name", "age", "tags"], "additionalProperties": False}
    for prompt in ("Describe a person.", "Invent a pirate.", "Hi"):
        r = oai.chat.completions.create(model=QWEN, max_tokens=200, messages=[{"role": "user", "content": prompt}],
                                        response_format={"type": "json_schema",
                                                         "json_schema": {"name": "person", "schema": schema}})
        assert r.choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads(r.choices[0].message.content), schema)
    r = oai.chat.completions.create(model=QWEN, max_tokens=200, **GREEDY, response_format={"type": "json_object"},
                                    messages=[{"role": "user", "content": "Give me a small JSON object about a cat."}])
    assert r.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_reasoning_content(think_server):
    client = openai.OpenAI(base_url=think_server.url + "/openai/v1", api_key="x", max_retries=0)
    r = client.chat.completions.create(model="smollm2-think", max_tokens=1200, reasoning_effort="low",
                                       messages=[{"role": "user", "content": "What is 2 + 2?"}])
    message = r.choices[0].message
    assert message.model_extra["reasoning_content"] and message.content
    streamed = [c.choices[0].delta.model_extra.get("reasoning_content") for c in client.chat.completions.create(
        model="smollm2-think", max_tokens=1200, reasoning_effort="low", stream=True,
        messages=[{"role": "user", "content": "What is 2 + 2?"}]) if c.choices]
    assert any(streamed)


@pytest.mark.parametrize("prefix", ["", "/openai", "/anthropic"])
def test_both_sdks_list_models_from_one_base_url(server, prefix):
    import anthropic

    ids_openai = [m.id for m in openai.OpenAI(base_url=server.url + prefix + "/v1", api_key="x").models.list()]
    ids_anthropic = [m.id for m in anthropic.Anthropic(base_url=server.url + prefix, api_key="x").models.list()]
    assert ids_openai == ids_anthropic and QWEN in ids_openai


def test_errors_use_the_openai_envelope(server, oai):
    response = httpx.post(server.url + "/v1/chat/completions", timeout=30,
                          json={"model": SMOL, "n": 2, "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model=SMOL, messages=[])
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model=SMOL, messages=[{"role": "user", "content": "hi"}], tool_choice="required")


def test_logprobs(oai):
    r = oai.chat.completions.create(model=QWEN, max_tokens=12, **GREEDY, logprobs=True, top_logprobs=3, messages=[
        {"role": "user", "content": "What is the capital of France? One word."}])
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens - (r.choices[0].finish_reason == "stop")  # no end token
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for entry in content:
        assert entry.logprob <= 0 and bytes(entry.bytes).decode("utf-8", "replace") == entry.token
        tops = [t.logprob for t in entry.top_logprobs]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True)
        assert entry.top_logprobs[0].token == entry.token  # greedy: the most likely token was taken
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob)
    plain = oai.chat.completions.create(model=QWEN, max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    assert plain.choices[0].logprobs is None


def test_streamed_logprobs_cover_the_content(oai):
    stream = oai.chat.completions.create(model=QWEN, max_tokens=12, **GREEDY, logprobs=True, stream=True,
                                         messages=[{"role": "user", "content": "Name a primary colour."}])
    text, tokens = [], []
    for chunk in stream:
        choice = chunk.choices[0]
        text.append(choice.delta.content or "")
        if choice.logprobs is not None:
            tokens += [t.token for t in choice.logprobs.content]
            assert all(t.top_logprobs == [] for t in choice.logprobs.content)
    assert tokens and "".join(tokens) == "".join(text)


def test_top_logprobs_needs_logprobs(server):
    r = httpx.post(server.url + "/v1/chat/completions", json={
        "model": SMOL, "max_tokens": 3, "top_logprobs": 2, "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 400 and r.json()["error"]["param"] is None
    assert "top_logprobs" in r.json()["error"]["message"]
