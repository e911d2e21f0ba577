"""Structured outputs (`output_config.format`, `tools[].strict`) with the official SDK against the real models."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import anthropic
import jsonschema
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import QWEN, SMOL


class City(pydantic.BaseModel):
    name: str
    country: str
    population_millions: int
    continent: Literal["Africa", "Asia", "Europe", "North America", "Oceania", "South America"]
    capital: bool


CITY_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},  # bounds beyond the API's subset that a grammar holds
        "founded": {"type": "integer"},
        "rating": {"type": "string", "enum": ["low", "medium", "high"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 3},
    },
    "required": ["name", "founded", "rating", "tags"],
    "additionalProperties": False,
}
RARE_COLORS = ["vermilion", "chartreuse", "cerulean"]
PAINT = {
    "name": "paint_wall",
    "description": "Paint the wall in a colour.",
    "strict": True,
    "input_schema": {
        "type": "object",
        "properties": {"color": {"type": "string", "enum": RARE_COLORS}, "coats": {"type": "integer"}},
        "required": ["color", "coats"],
        "additionalProperties": False,
    },
}


def _sampled(n: int, ask):
    with ThreadPoolExecutor(4) as pool:  # the server's four slots
        return list(pool.map(lambda _: ask(), range(n)))


def test_parse_helper_answers_validate_at_temperature_1(client):
    """20 sampled answers through the SDK's own `messages.parse(output_format=...)`: each is one text block
    of JSON that validates against the schema the SDK sent, and the SDK parses it into the model."""
    schema = City.model_json_schema()

    def ask():
        return client.messages.parse(
            model=QWEN, max_tokens=120, output_format=City, extra_body={"temperature": 1.0},
            messages=[{"role": "user", "content": "Describe a famous city."}])

    answers = _sampled(20, ask)
    for message in answers:
        assert message.stop_reason == "end_turn", message
        assert [b.type for b in message.content] == ["text"]
        jsonschema.validate(json.loads(message.content[0].text), schema)
        assert isinstance(message.parsed_output, City)


def test_streamed_json_output_is_text_deltas_of_valid_json(client):
    with client.messages.stream(
            model=QWEN, max_tokens=200, extra_body={"temperature": 1.0},
            output_config={"format": {"type": "json_schema", "schema": CITY_SCHEMA}},
            messages=[{"role": "user", "content": "Tell me about Rome."}]) as stream:
        kinds = {e.delta.type for e in stream if e.type == "content_block_delta"}
        message = stream.get_final_message()
    assert kinds == {"text_delta"}
    jsonschema.validate(json.loads(message.content[0].text), CITY_SCHEMA)


def test_count_tokens_counts_the_format_as_the_message_does(client):
    messages = [{"role": "user", "content": "Tell me about Rome."}]
    fmt = {"format": {"type": "json_schema", "schema": CITY_SCHEMA}}
    plain = client.messages.count_tokens(model=QWEN, messages=messages).input_tokens
    counted = client.messages.count_tokens(model=QWEN, messages=messages, output_config=fmt).input_tokens
    message = client.messages.create(model=QWEN, max_tokens=60, messages=messages, output_config=fmt,
                                     extra_body={"temperature": 0.0})
    assert counted > plain  # the schema is told to the model
    usage = message.usage
    assert usage.input_tokens + usage.cache_read_input_tokens + (usage.cache_creation_input_tokens or 0) == counted


@pytest.mark.parametrize(("schema", "named"), [
    ({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}, "schema.properties.n.minimum"),
    ({"type": "object", "additionalProperties": True}, "schema.additionalProperties"),
    ({"type": "object", "properties": {"a": {"not": {"type": "string"}}}}, "schema.properties.a.not"),
    ({"type": "object", "properties": {"r": {"$ref": "https://example.com/s.json"}}}, "schema.properties.r.$ref"),
])
def test_unsupported_schema_features_are_a_400_naming_them(client, schema, named):
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model=QWEN, max_tokens=5, messages=[{"role": "user", "content": "hi"}],
                               output_config={"format": {"type": "json_schema", "schema": schema}})
    body = err.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert f"output_config.format.{named}" in body["error"]["message"]


def test_invalid_schema_and_two_formats_are_400s(client):
    for extra in ({"output_config": {"format": {"type": "json_schema", "schema": {"type": "nonsense"}}}},
                  {"output_config": {"format": {"type": "json_schema", "schema": CITY_SCHEMA}},
                   "output_format": {"type": "json_schema", "schema": CITY_SCHEMA}}):
        with pytest.raises(anthropic.BadRequestError):
            client.messages.create(model=QWEN, max_tokens=5, messages=[{"role": "user", "content": "hi"}],
                                   extra_body=extra)
    with pytest.raises(anthropic.BadRequestError, match=r"tools\.0\.input_schema\.properties\.n\.maximum"):
        client.messages.create(model=QWEN, max_tokens=5, messages=[{"role": "user", "content": "hi"}], tools=[{
            "name": "t", "strict": True, "input_schema": {
                "type": "object", "properties": {"n": {"type": "integer", "maximum": 3}}}}])


@pytest.fixture(scope="module")
def loose_server(start_server):
    """Tool calls unconstrained under `auto` (`PARLEY_TOOL_GRAMMAR=false`): only strict tools are held."""
    return start_server(tool_grammar="false")


def test_strict_tool_input_is_enforced_under_auto(loose_server):
    """Asked for red, the model must still pick one of the tool's unusual colours: a grammar holds it."""
    client = loose_server.client()

    def ask():
        return client.messages.create(
            model=QWEN, max_tokens=120, tools=[PAINT], tool_choice={"type": "auto"},
            extra_body={"temperature": 1.0},
            messages=[{"role": "user", "content": "Use the paint_wall tool to paint the wall red, two coats."}])

    calls = [b for m in _sampled(8, ask) for b in m.content if b.type == "tool_use"]
    assert calls, "the model never called the tool"
    for call in calls:
        jsonschema.validate(call.input, PAINT["input_schema"])


def test_json_answer_or_a_tool_call_with_tools_offered(client):
    message = client.messages.create(
        model=QWEN, max_tokens=200, tools=[PAINT], extra_body={"temperature": 0.0},
        output_config={"format": {"type": "json_schema", "schema": CITY_SCHEMA}},
        messages=[{"role": "user", "content": "Tell me about Rome."}])
    for block in message.content:
        if block.type == "tool_use":
            jsonschema.validate(block.input, PAINT["input_schema"])
        else:
            jsonschema.validate(json.loads(block.text), CITY_SCHEMA)


def test_thinking_stays_free_and_the_answer_follows_the_schema(think_server):
    """A reasoning model: the grammar engages when the reasoning closes (the budget forces it at most)."""
    client = think_server.client()
    message = client.messages.create(
        model="smollm2-think", max_tokens=1700, thinking={"type": "enabled", "budget_tokens": 1024},
        output_config={"format": {"type": "json_schema", "schema": CITY_SCHEMA}}, extra_body={"temperature": 0.0},
        messages=[{"role": "user", "content": "Tell me about Rome."}])
    # The reasoning may use its whole budget; the answer still gets 676 tokens (it once ran out at 76: the grammar
    # lets the model put newlines between items, and on another CPU greedy decoding took a wordier path).
    assert message.stop_reason == "end_turn", message
    kinds = [b.type for b in message.content]
    assert kinds == ["thinking", "text"], message
    assert message.content[0].thinking and not message.content[0].thinking.lstrip().startswith("{")
    jsonschema.validate(json.loads(message.content[1].text), CITY_SCHEMA)


def test_small_model_too(client):
    """The same holds on the 135M model (a grammar, not the model's skill, makes it valid)."""
    message = client.messages.create(
        model=SMOL, max_tokens=200, extra_body={"temperature": 1.0},
        output_config={"format": {"type": "json_schema", "schema": CITY_SCHEMA}},
        messages=[{"role": "user", "content": "Tell me about Rome."}])
    assert message.stop_reason == "end_turn"
    jsonschema.validate(json.loads(message.content[0].text), CITY_SCHEMA)


# -- the schema check and the grammars it admits, fuzzed (no server) -------------------------------------------

_LEAF = st.sampled_from([
    {"type": "string"}, {"type": "string", "format": "text"}, {"type": "integer"}, {"type": "number"},
    {"type": "boolean"}, {"type": "null"}, {"enum": ["a", "b", 3]}, {"const": "x"},
    {"type": "string", "maxLength": 5}, {"type": "integer", "minimum": 0}, {"type": "string", "pattern": "^a+$"},
    {"type": ["string", "null"]}, {"type": "string", "format": "date-time"}, {"not": {"type": "null"}},
])


def _node(children):
    props = st.dictionaries(st.sampled_from(["a", "b", "c-d", "é"]), children, max_size=3)
    return st.one_of(
        st.builds(lambda p, closed: {"type": "object", "properties": p, "required": sorted(p)[:1],
                                     **({"additionalProperties": False} if closed else {})}, props, st.booleans()),
        st.builds(lambda i, n: {"type": "array", "items": i, **({"maxItems": n} if n is not None else {})},
                  children, st.one_of(st.none(), st.integers(0, 4))),
        st.builds(lambda xs: {"anyOf": xs}, st.lists(children, min_size=1, max_size=3)),
    )


SCHEMAS = st.recursive(_LEAF, _node, max_leaves=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SCHEMAS)
def test_a_checked_schema_always_compiles_or_is_a_400(schema):
    """Whatever the schema, the strict check and the grammar build end in a grammar llama.cpp takes, or in a
    400 — never another exception (which would be a 500) and never an unenforced answer."""
    from parley.core.params import GrammarConstraint
    from parley.errors import InvalidRequestError
    from parley.grammar.json_output import after_reasoning, check_strict_schema, strict_gbnf
    from parley.grammar.limits import grammar_problem

    try:
        checked = check_strict_schema(schema, "output_config.format.schema")
        gbnf = strict_gbnf(checked, "output_config.format.schema")
    except InvalidRequestError:
        return
    assert grammar_problem(gbnf) is None
    assert grammar_problem(after_reasoning(GrammarConstraint(gbnf), "</think>").gbnf) is None
    assert not any(key in json.dumps(checked) for key in ('"minimum"', '"not"'))
