"""Schemathesis against parley's own OpenAPI document, on a real server: whatever a client sends (valid by the
schema or not), no 5xx, and every rejection comes in the error envelope of the route's API. A fixed seed and a
bounded number of examples keep CI short; `bench/fuzz.sh` runs 1,000 examples per operation and mode."""

from __future__ import annotations

import os
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from parley.api.errors import is_openai_path

EXAMPLES = int(os.environ.get("PARLEY_FUZZ_EXAMPLES", "60"))


@pytest.fixture(scope="module")
def fuzz_server(start_server):
    # Offline: an `org/repo` model id must be a quick 404, not a hub probe per example.
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        server = start_server("--parallel", "1")
    finally:
        if previous is None:
            del os.environ["HF_HUB_OFFLINE"]
        else:
            os.environ["HF_HUB_OFFLINE"] = previous
    return server


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_server):
    return schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json")


def _assert_envelope(path: str, body: dict) -> None:
    if is_openai_path(path):  # the server's own rule: /openai/…, chat completions, the Responses API
        error = body["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"], body
    else:
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body
        assert body["error"]["message"], body


def test_no_server_errors_and_typed_rejections(fuzz_schema):
    sent: list[int] = []
    operations = [result.ok() for result in fuzz_schema.get_all_operations()]
    assert len(operations) >= 10  # every route of both APIs, under each prefix

    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    for operation, mode in ((op, mode) for op in operations for mode in modes):
        @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(mode))
        def check(case) -> None:
            response = case.call(timeout=120)
            sent.append(response.status_code)
            assert response.status_code < 500, (case.path, response.status_code, response.text[:500])
            if 400 <= response.status_code < 500:
                _assert_envelope(case.path, response.json())
                assert "Traceback" not in response.text and "site-packages" not in response.text

        try:
            check()
        except Unsatisfiable:  # nothing to get wrong: an operation without parameters or body
            assert mode == schemathesis.GenerationMode.NEGATIVE
    print("fuzz:", len(sent), "requests,", dict(Counter(sent)))
    assert len(sent) >= min(1000, EXAMPLES * 10), len(sent)


# ---- invalid Unicode: a lone surrogate anywhere in an otherwise valid request

_TOOL = {"name": "get_weather", "description": "Weather in a city",
         "input_schema": {"type": "object", "properties": {"city": {"type": "string", "description": "a city"}}}}
_VALID_REQUESTS = [
    ("/v1/messages", {
        "model": "qwen2.5-coder-0.5b-instruct", "max_tokens": 8, "system": [{"type": "text", "text": "Be brief."}],
        "tools": [_TOOL], "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                               "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"},
                                         {"type": "text", "text": "And tomorrow?"}]}]}),
    ("/anthropic/v1/messages/count_tokens", {
        "model": "qwen2.5-coder-0.5b-instruct", "system": "You are terse.", "tools": [_TOOL],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}),
    ("/v1/chat/completions", {
        "model": "qwen2.5-coder-0.5b-instruct", "max_tokens": 8,
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": _TOOL["input_schema"]}}],
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]}),
]


def _string_paths(value, at=()):
    """Every string in a JSON value, as (path, is_key)."""
    if isinstance(value, str):
        yield at, False
    elif isinstance(value, dict):
        for key, sub in value.items():
            yield (*at, key), True
            yield from _string_paths(sub, (*at, key))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            yield from _string_paths(sub, (*at, i))


def _with_surrogate(body, path, is_key, char: str, offset: int):
    parent = body
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if is_key:
        parent[last[:offset] + char + last[offset:]] = parent.pop(last)
    else:
        text = parent[last]
        parent[last] = text[:offset] + char + text[offset:]


def test_lone_surrogates_are_a_400_naming_the_field(fuzz_server):
    import copy
    import json

    import httpx
    from hypothesis import strategies as st

    seen: Counter = Counter()

    @settings(max_examples=EXAMPLES * 2, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def check(data) -> None:
        route, valid = data.draw(st.sampled_from(_VALID_REQUESTS))
        body = copy.deepcopy(valid)
        path, is_key = data.draw(st.sampled_from(sorted(_string_paths(body), key=repr)))
        text = path[-1] if is_key else _lookup(body, path)
        char = chr(data.draw(st.integers(0xD800, 0xDFFF)))
        _with_surrogate(body, path, is_key, char, data.draw(st.integers(0, len(text))))
        raw = json.dumps(body, ensure_ascii=True)  # JSON spells the lone surrogate as a valid \\uXXXX escape
        response = httpx.post(fuzz_server.url + route, content=raw, timeout=60,
                              headers={"content-type": "application/json"})
        seen[route] += 1
        assert response.status_code == 400, (route, path, response.text[:300])
        _assert_envelope(route, response.json())
        message = (response.json()["error"]["message"])
        where = ".".join(str(p) for p in (path[:-1] if is_key else path)) or "body"
        assert message.startswith(where + ":") and "surrogate" in message, (path, message)

    check()
    assert fuzz_server.proc.poll() is None and httpx.get(fuzz_server.url + "/health").status_code == 200
    assert len(seen) == len(_VALID_REQUESTS), seen


def _lookup(body, path):
    for part in path:
        body = body[part]
    return body
