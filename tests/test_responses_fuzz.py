"""Hypothesis against `POST /v1/responses` on a real server: request bodies built from the API's own shapes
(input items, tools, tool_choice, text formats), each part now and then swapped for random JSON. Whatever
comes in: never a 5xx, every rejection in OpenAI's error envelope, every 200 a response (or an event stream)
that validates against the SDK's types, and the server alive at the end. A fixed seed and a bounded number of
examples (PARLEY_FUZZ_EXAMPLES, 60) keep it short; generations are capped at 24 tokens of SmolLM2."""

from __future__ import annotations

import json
import os
from collections import Counter

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SMOL
from test_responses import _strict, check_stream

EXAMPLES = int(os.environ.get("PARLEY_FUZZ_EXAMPLES", "60"))


@pytest.fixture(scope="module")
def fuzz_server(start_server):
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # an `org/repo` model id is a quick 404, not a hub probe
    try:
        return start_server("--parallel", "2")
    finally:
        if previous is None:
            del os.environ["HF_HUB_OFFLINE"]
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


_leaf = (st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False, allow_infinity=False)
         | st.text(max_size=12))
ANY = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=3), max_leaves=8)


TEXT = st.text(max_size=40)
GOOD_SCHEMAS = st.sampled_from([
    {"type": "object", "properties": {"timezone": {"type": "string", "maxLength": 20}}, "required": ["timezone"]},
    {"type": "object", "properties": {"n": {"type": "integer"}, "ok": {"type": "boolean"}},
     "required": ["n", "ok"], "additionalProperties": False},
    {"type": "object", "properties": {}},
])
BAD_SCHEMAS = st.sampled_from([
    {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}, "tags": {"type": "array"}},
     "additionalProperties": False},
    {"type": "string"}, {"$ref": "#/$defs/missing"}, {}, {"type": "object", "properties": {"x": {"type": "nope"}}},
]) | ANY
GOOD_GRAMMARS = st.sampled_from([
    ("regex", r"\d{3}-\d{4}"), ("regex", "(yes|no)"), ("lark", 'start: "a" B\nB: /[0-9]{1,3}/'),
    ("lark", 'start: item+\nitem: "x" | "y"'),
])
BAD_GRAMMARS = st.sampled_from([
    ("regex", "(unclosed"), ("regex", "a{2,1}"), ("regex", "(?<=a)b"), ("lark", "start: ((("),
    ("lark", "start: x\nx: x"), ("lark", ""), ("gbnf", "root ::= x"),
]) | st.tuples(st.sampled_from(["regex", "lark"]), st.text(max_size=30))


def bodies(broken: bool):
    """Request bodies from the API's own shapes; with `broken`, every part is now and then any JSON value and
    names, roles, schemas and grammars come from wider (mostly wrong) sets."""

    def maybe(strategy):
        return st.one_of(strategy, strategy, strategy, ANY) if broken else strategy

    names = st.sampled_from(["get_time", "dial", "lookup"]) | (st.text(max_size=10) if broken else st.nothing())
    call_ids = st.sampled_from(["call_1", "call_2"]) | (st.text(max_size=10) if broken else st.nothing())
    schemas = GOOD_SCHEMAS | BAD_SCHEMAS if broken else GOOD_SCHEMAS
    grammars = GOOD_GRAMMARS | BAD_GRAMMARS if broken else GOOD_GRAMMARS
    roles = ["user", "assistant", "system", "developer"] + (["tool", "bogus"] if broken else [])

    def message(role: str):
        kinds = (["input_text", "output_text", "refusal", "input_image", "input_file", "bogus"] if broken
                 else ["output_text"] if role == "assistant" else ["input_text"])
        part = st.fixed_dictionaries({"type": st.sampled_from(kinds), "text": TEXT},
                                     optional={"annotations": st.just([])} if role == "assistant" else {})
        return st.fixed_dictionaries({"role": st.just(role), "content": TEXT | st.lists(maybe(part), max_size=3)},
                                     optional={"type": st.just("message")})

    output_parts = st.builds(lambda t: [{"type": "input_text", "text": t}], TEXT)
    item = maybe(st.one_of(
        st.sampled_from(roles).flatmap(message),
        st.fixed_dictionaries({"type": st.just("function_call"), "call_id": call_ids, "name": names,
                               "arguments": st.sampled_from(['{"timezone": "UTC"}', "{", "[]", ""])},
                              optional={"namespace": names, "status": st.just("completed")}),
        st.fixed_dictionaries({"type": st.just("function_call_output"), "call_id": call_ids,
                               "output": TEXT | output_parts}),
        st.fixed_dictionaries({"type": st.just("custom_tool_call"), "call_id": call_ids, "name": names,
                               "input": TEXT}),
        st.fixed_dictionaries({"type": st.just("custom_tool_call_output"), "call_id": call_ids,
                               "output": TEXT | output_parts}),
        st.fixed_dictionaries({"type": st.just("reasoning"), "id": TEXT, "summary": st.lists(
            st.fixed_dictionaries({"type": st.just("summary_text"), "text": TEXT}), max_size=2)},
            optional={"encrypted_content": TEXT}),
        *([st.fixed_dictionaries({"type": st.sampled_from(["item_reference", "web_search_call", "bogus"]),
                                  "id": TEXT})] if broken else []),
    ))
    function = st.fixed_dictionaries({"type": st.just("function"), "name": names, "parameters": schemas},
                                     optional={"strict": st.booleans(), "description": TEXT})
    custom = st.fixed_dictionaries({"type": st.just("custom"), "name": names}, optional={
        "description": TEXT,
        "format": maybe(st.one_of(st.just({"type": "text"}), grammars.map(
            lambda g: {"type": "grammar", "syntax": g[0], "definition": g[1]})))})
    tool = maybe(st.one_of(
        function, custom,
        st.fixed_dictionaries({"type": st.just("namespace"), "name": st.just("ns"), "description": TEXT,
                               "tools": st.lists(maybe(function | custom), max_size=2)}),
        st.sampled_from([{"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["vs_1"]},
                         {"type": "code_interpreter", "container": {"type": "auto"}}, {"type": "image_generation"},
                         {"type": "mcp", "server_label": "x", "server_url": "http://127.0.0.1:9"}]),
    ))
    tool_choice = maybe(st.one_of(
        st.sampled_from(["auto", "none", "required"]),
        st.builds(lambda kind, name: {"type": kind, "name": name}, st.sampled_from(["function", "custom"]), names),
        st.builds(lambda mode, chosen: {"type": "allowed_tools", "mode": mode,
                                        "tools": [{"type": "function", "name": n} for n in chosen]},
                  st.sampled_from(["auto", "required"]), st.lists(names, max_size=2)),
    ))
    text_format = maybe(st.one_of(
        st.just({"type": "text"}), st.just({"type": "json_object"}),
        st.builds(lambda schema, strict: {"type": "json_schema", "name": "out", "schema": schema,
                                          "strict": strict}, schemas, st.booleans()),
    ))
    optional = {
        "tools": maybe(st.lists(tool, max_size=3)),
        "tool_choice": tool_choice,
        "text": maybe(st.fixed_dictionaries({}, optional={"format": text_format})),
        "instructions": maybe(TEXT),
        "temperature": maybe(st.floats(0, 2)),
        "top_p": maybe(st.floats(0.01, 1)),
        "top_logprobs": maybe(st.integers(0, 20)),
        "include": maybe(st.lists(st.sampled_from(
            ["message.output_text.logprobs", "reasoning.encrypted_content"] + (["bogus"] if broken else [])),
            max_size=2)),
        "truncation": maybe(st.sampled_from(["auto", "disabled"])),
        "parallel_tool_calls": maybe(st.booleans()),
        "max_tool_calls": maybe(st.integers(1, 5)),
        "metadata": maybe(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3)),
        "reasoning": maybe(st.fixed_dictionaries({}, optional={"effort": st.sampled_from(
            ["none", "minimal", "low", "medium", "high", "xhigh"])})),
        "store": st.booleans(),
        "stream": st.booleans(),
        "user": TEXT, "safety_identifier": TEXT, "prompt_cache_key": TEXT,
    }
    if broken:
        optional |= {"conversation": st.just("conv_1"), "bogus_field": ANY,
                     "previous_response_id": st.sampled_from(["resp_missing", ""]) | ANY}
    models = [SMOL, SMOL, SMOL, "no-such-model", "org/missing-repo"] if broken else [SMOL]
    return st.fixed_dictionaries(
        {"model": st.sampled_from(models),
         "input": st.one_of(TEXT, st.lists(item, min_size=1, max_size=5), *([ANY] if broken else [])),
         # always bounded: an accepted request generates at most 24 tokens
         "max_output_tokens": st.integers(16, 24) | (st.sampled_from(["16", -5, 1.5, [], {}]) if broken
                                                     else st.nothing())},
        optional=optional)


BODY = st.one_of(bodies(broken=False), bodies(broken=True))


def _assert_envelope(response: httpx.Response) -> None:
    body = response.json()
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"], body
    assert "Traceback" not in response.text and "site-packages" not in response.text


def _stream(url: str, body: dict) -> tuple[int, str]:
    """The status, and for a 200 the stream checked to its end ("completed"/"incomplete")."""
    with httpx.stream("POST", url, json=body, timeout=120) as response:
        if response.status_code != 200:
            response.read()
            if response.status_code < 500:
                _assert_envelope(response)
            return response.status_code, response.text[:300]
        events, name = [], None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: "):])
                assert data["type"] == name, (name, data)
                events.append((name, data))
    final, _ = check_stream(events)
    return 200, final.status


def test_responses_bodies_never_a_5xx(fuzz_server):
    url = fuzz_server.url + "/v1/responses"
    statuses: Counter = Counter()

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(body=BODY)
    def check(body) -> None:
        if body.get("stream") is True:
            status, detail = _stream(url, body)
        else:
            response = httpx.post(url, json=body, timeout=120)
            status, detail = response.status_code, response.text[:300]
            if status == 200:
                _strict(response.json())
            elif status < 500:
                _assert_envelope(response)
        statuses[status] += 1
        assert status < 500, (status, detail, body)

    check()
    print("responses fuzz:", dict(statuses))
    assert fuzz_server.proc.poll() is None and httpx.get(fuzz_server.url + "/health", timeout=10).status_code == 200
    assert statuses[200] >= EXAMPLES // 10 and sum(v for k, v in statuses.items() if 400 <= k < 500) > 0, statuses
