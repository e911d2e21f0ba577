"""The incremental tool-call parsers: every format, fed whole, split in two at every character, and one
character at a time, must give the same text and calls, and keep the event contract."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from parley.chat.pipeline import RenderPlan
from parley.chat.tools import ToolPlan
from parley.core.events import Event, TextDelta, ToolArgsDelta, ToolCallEnd, ToolCallStart
from parley.core.messages import ChatMessage, Conversation, ToolSpec
from parley.core.params import SamplingParams
from parley.core.request import ChatRequest
from parley.core.template import ChatTemplate
from parley.core.tools import ToolChoice
from parley.grammar.tool_grammar import forced_grammar, lazy_grammar
from parley.models.config import ConfigError, load_config
from parley.parsers.holdback import partial_marker
from parley.parsers.markup import MarkupCallParser
from parley.parsers.mistral import MISTRAL_FORMAT, MistralToolParser
from parley.parsers.qwen3_coder import QWEN3_CODER_FORMAT, Qwen3CoderToolParser
from parley.parsers.registry import (
    REASONING_PARSER_NAMES,
    REASONING_PARSERS,
    TOOL_PARSER_NAMES,
    TOOL_PARSERS,
    UnknownParserError,
    reasoning_parser_for,
    tool_parser_for,
)
from parley.parsers.think import ThinkParser
from parley.parsers.tool_calls import (
    BARE_JSON,
    HERMES,
    HERMES_FORMAT,
    JSON_FENCE,
    JSON_FORMAT,
    LLAMA3_FORMAT,
    PYTHON_TAG,
    ToolCallParser,
    ToolFormat,
)
from parley.settings import Settings

SCHEMAS: dict[str, dict] = {
    "get_weather": {
        "type": "object",
        "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
    },
    "get_time": {"type": "object", "properties": {}},
    "search": {
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            "limit": {"type": "integer"},
            "score": {"type": "number"},
            "exact": {"type": "boolean"},
            "filters": {"type": "object"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "after": {"type": ["integer", "null"]},
            "note": {"description": "no type: a string"},
        },
    },
}
MARKUP = ("<tool_call>", "</tool_call>", "[TOOL_CALLS]", "[ARGS]", "<function=", "<parameter=", "<|python_tag|>")

NESTED = {"location": 'São Paulo "SP" \\ {x} ☀️', "unit": "c", "extra": {"days": [1, 2.5, {"x": None}], "ok": True}}
NESTED_JSON = json.dumps(NESTED, ensure_ascii=False)
WEATHER = {"location": "Paris"}


# -- harness ------------------------------------------------------------------------------------------
def run(make: Callable[[], object], chunks: list[str]) -> list[Event]:
    parser = make()
    events: list[Event] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events + parser.finish()


def normalize(events: list[Event], markup_in_text: bool = False) -> list[tuple]:
    """Merge text deltas and each call's argument fragments, checking the event contract on the way."""
    out: list[tuple] = []
    call: list[str] | None = None
    ids = set()
    for event in events:
        if isinstance(event, TextDelta):
            assert call is None, "text inside a call"
            assert event.text, "empty text delta"
            if not markup_in_text:
                assert not any(m in event.text for m in MARKUP), event.text
            if out and out[-1][0] == "text":
                out[-1] = ("text", out[-1][1] + event.text)
            else:
                out.append(("text", event.text))
        elif isinstance(event, ToolCallStart):
            assert call is None and event.id.startswith("toolu_") and event.id not in ids
            assert event.name in SCHEMAS
            ids.add(event.id)
            call = [event.name, ""]
        elif isinstance(event, ToolArgsDelta):
            assert call is not None and event.json
            call[1] += event.json
        elif isinstance(event, ToolCallEnd):
            assert call is not None
            if event.input is not None:  # the fragments, as sent, parse to exactly the input
                assert json.loads(call[1]) == event.input, call[1]
            out.append(("call", call[0], call[1], event.input))
            call = None
    assert call is None, "a call without its end"
    return out


def check(make: Callable[[], object], text: str, expected: list[tuple], markup_in_text: bool = False) -> None:
    whole = normalize(run(make, [text]), markup_in_text)
    assert [e if e[0] == "text" else ("call", e[1], e[3]) for e in whole] == expected
    for i in range(1, len(text)):
        assert normalize(run(make, [text[:i], text[i:]]), markup_in_text) == whole, f"split at {i}: {text[:i]!r}"
    assert normalize(run(make, list(text)), markup_in_text) == whole, "char by char"


def text(t: str) -> tuple:
    return ("text", t)


def call(name: str, arguments: dict | None) -> tuple:
    return ("call", name, arguments)


def hermes() -> ToolCallParser:
    return ToolCallParser(HERMES_FORMAT.syntaxes, set(SCHEMAS))


def llama3() -> ToolCallParser:
    return ToolCallParser(LLAMA3_FORMAT.syntaxes, set(SCHEMAS))


def mistral() -> MistralToolParser:
    return MistralToolParser(set(SCHEMAS))


def qwen3() -> Qwen3CoderToolParser:
    return Qwen3CoderToolParser(SCHEMAS)


# -- ToolCallParser: hermes, fences, bare JSON ----------------------------------------------------------
def hcall(name: str, args: str) -> str:
    return f'<tool_call>\n{{"name": "{name}", "arguments": {args}}}\n</tool_call>'


HERMES_CASES = [
    ("text only", "  \n Hello there!\nHow can I help?\n", [text("Hello there!\nHow can I help?")]),
    ("text then call", f"Let me check.\n\n{hcall('get_weather', json.dumps(WEATHER))}",
     [text("Let me check."), call("get_weather", WEATHER)]),
    ("two calls", f"{hcall('get_weather', json.dumps(WEATHER))}\n{hcall('get_time', '{}')}",
     [call("get_weather", WEATHER), call("get_time", {})]),
    ("nested, unicode, escapes", hcall("get_weather", NESTED_JSON), [call("get_weather", NESTED)]),
    ("text after a call", f"{hcall('get_time', '{}')}\n\nIt is noon.", [call("get_time", {}), text("It is noon.")]),
    ("cut off in the arguments", 'Hi\n<tool_call>{"name": "get_weather", "arguments": {"location": "Par',
     [text("Hi"), call("get_weather", None)]),
    ("cut off before the name", 'Hi\n<tool_call>{"na', [text("Hi")]),
    ("object left open after complete arguments", '{"name": "get_weather", "arguments": {"location": "Paris"}',
     [call("get_weather", WEATHER)]),
    ("fenced call", 'Sure:\n```json\n{"name": "get_time", "arguments": {}}\n```\nDone.',
     [text("Sure:"), call("get_time", {}), text("Done.")]),
    ("fence that is not a call", 'Example:\n```json\n{"a": [1, {"b": 2}]}\n```\nEnd.',
     [text('Example:\n```json\n{"a": [1, {"b": 2}]}\n```\nEnd.')]),
    ("bare JSON call", '{"name": "get_weather", "arguments": {"location": "Paris"}}\nDone.',
     [call("get_weather", WEATHER), text("Done.")]),
    ("JSON mid-line is text", 'The object {"name": "get_time", "arguments": {}} is JSON.',
     [text('The object {"name": "get_time", "arguments": {}} is JSON.')]),
    ("JSON that is not a call", '{"a": {"b": [1, 2]}}\n{"name": "nope"}',
     [text('{"a": {"b": [1, 2]}}\n{"name": "nope"}')]),
    ("tag-like text", "Use <tool> or <tool_c> here.", [text("Use <tool> or <tool_c> here.")]),
    ("broken JSON after the name", 'A\n<tool_call>{"name": "get_time", oops}</tool_call>\nafter',
     [text("A"), call("get_time", None), text("after")]),
    ("call without arguments", '<tool_call>{"name": "get_time"}</tool_call>', [call("get_time", {})]),
    ("raw newline in a string argument", hcall("get_weather", '{"location": "Paris,\nFrance"}'),
     [call("get_weather", {"location": "Paris,\nFrance"})]),
]


@pytest.mark.parametrize("name,source,expected", HERMES_CASES, ids=[c[0] for c in HERMES_CASES])
def test_hermes(name: str, source: str, expected: list[tuple]) -> None:
    check(hermes, source, expected)


def test_hermes_unknown_tool_is_text_and_a_later_call_still_counts() -> None:
    source = f'<tool_call>{{"name": "nope", "arguments": {{}}}}</tool_call>\n{hcall("get_time", "{}")}'
    check(hermes, source, [text('<tool_call>{"name": "nope", "arguments": {}}</tool_call>'), call("get_time", {})],
          markup_in_text=True)


def test_json_format_only_fences_and_bare_json() -> None:
    make = lambda: ToolCallParser(JSON_FORMAT.syntaxes, set(SCHEMAS))  # noqa: E731
    check(make, '```json\n{"name": "get_time", "arguments": {}}\n```', [call("get_time", {})])
    check(make, "<tool_call>x</tool_call>", [text("<tool_call>x</tool_call>")], markup_in_text=True)


# -- Llama 3.x JSON -------------------------------------------------------------------------------------
LLAMA3_CASES = [
    ("python tag", '<|python_tag|>{"name": "get_weather", "parameters": {"location": "Paris"}}',
     [call("get_weather", WEATHER)]),
    ("bare", '{"name": "get_weather", "parameters": {"location": "Paris"}}', [call("get_weather", WEATHER)]),
    ("type function first", '{"type": "function", "name": "get_weather", "parameters": {"location": "Paris"}}',
     [call("get_weather", WEATHER)]),
    ("text then call", 'Checking.\n<|python_tag|>{"name": "get_weather", "parameters": ' + NESTED_JSON + "}",
     [text("Checking."), call("get_weather", NESTED)]),
    ("two calls", '{"name": "get_time", "parameters": {}}\n'
     '{"name": "get_weather", "parameters": {"location": "Paris"}}',
     [call("get_time", {}), call("get_weather", WEATHER)]),
    ("arguments as a JSON string", '{"name": "get_weather", "parameters": "{\\"location\\": \\"Paris\\"}"}',
     [call("get_weather", WEATHER)]),
    ("no parameters", '<|python_tag|>{"name": "get_time"}', [call("get_time", {})]),
    ("cut off", '<|python_tag|>{"name": "get_weather", "parameters": {"location": "Pa', [call("get_weather", None)]),
    ("a schema is not a call", '{"type": "object", "properties": {}}', [text('{"type": "object", "properties": {}}')]),
    ("text only", "The answer is 42.", [text("The answer is 42.")]),
]


@pytest.mark.parametrize("name,source,expected", LLAMA3_CASES, ids=[c[0] for c in LLAMA3_CASES])
def test_llama3(name: str, source: str, expected: list[tuple]) -> None:
    check(llama3, source, expected)


def test_llama3_builtin_python_call_is_text() -> None:
    source = '<|python_tag|>brave_search.call(query="paris")'
    check(llama3, source, [text(source)], markup_in_text=True)


# -- Mistral --------------------------------------------------------------------------------------------
MISTRAL_CASES = [
    ("text only", "Bonjour! [1] and [TOOL] are fine.", [text("Bonjour! [1] and [TOOL] are fine.")]),
    ("text then array", 'Checking.\n[TOOL_CALLS][{"name": "get_weather", "arguments": {"location": "Paris"}}]',
     [text("Checking."), call("get_weather", WEATHER)]),
    ("array of two with ids",
     '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"location": "Paris"}, "id": "a1b2c3d4e"}, '
     '{"name": "get_time", "arguments": {}, "id": "f5g6h7i8j"}]',
     [call("get_weather", WEATHER), call("get_time", {})]),
    ("array, nested", f'[TOOL_CALLS][{{"name": "get_weather", "arguments": {NESTED_JSON}}}]',
     [call("get_weather", NESTED)]),
    ("name and args", '[TOOL_CALLS]get_weather[ARGS]{"location": "Paris"}', [call("get_weather", WEATHER)]),
    ("two name and args", f"Sure.[TOOL_CALLS]get_weather[ARGS]{NESTED_JSON}[TOOL_CALLS]get_time[ARGS]{{}}",
     [text("Sure."), call("get_weather", NESTED), call("get_time", {})]),
    ("call id", '[TOOL_CALLS]get_weather[CALL_ID]a1b2c3d4e[ARGS]{"location": "Paris"}', [call("get_weather", WEATHER)]),
    ("object, as constrained", '[TOOL_CALLS] {"name": "get_time", "arguments": {}}\n'
     '[TOOL_CALLS] {"name": "get_weather", "arguments": {"location": "Paris"}}',
     [call("get_time", {}), call("get_weather", WEATHER)]),
    ("text after the calls", '[TOOL_CALLS]get_time[ARGS]{}\n\nDone.', [call("get_time", {}), text("Done.")]),
    ("cut off array", '[TOOL_CALLS][{"name": "get_weather", "arguments": {"loc', [call("get_weather", None)]),
    ("cut off args", "[TOOL_CALLS]get_weather[ARGS]{\"location\": \"Pa", [call("get_weather", None)]),
    ("cut off name", "Hm.[TOOL_CALLS]get_wea", [text("Hm.")]),
    ("a fence is text", 'Like:\n```json\n{"name": "get_time", "arguments": {}}\n```',
     [text('Like:\n```json\n{"name": "get_time", "arguments": {}}\n```')]),
]


@pytest.mark.parametrize("name,source,expected", MISTRAL_CASES, ids=[c[0] for c in MISTRAL_CASES])
def test_mistral(name: str, source: str, expected: list[tuple]) -> None:
    check(mistral, source, expected)


@pytest.mark.parametrize("source,expected", [
    ('[TOOL_CALLS]nope[ARGS]{"a": 1}', [text('[TOOL_CALLS]nope[ARGS]{"a": 1}')]),
    ('[TOOL_CALLS]This is prose [TOOL_CALLS]get_time[ARGS]{}',
     [text("[TOOL_CALLS]This is prose"), call("get_time", {})]),
    ('[TOOL_CALLS][{"name": "get_time", "arguments": {}}, {"name": "nope", "arguments": {}}]',
     [call("get_time", {}), text(', {"name": "nope", "arguments": {}}]')]),
])
def test_mistral_not_a_call_is_shown_as_written(source: str, expected: list[tuple]) -> None:
    check(mistral, source, expected, markup_in_text=True)


# -- Qwen3-Coder ----------------------------------------------------------------------------------------
def xcall(name: str, *params: tuple[str, str]) -> str:
    body = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in params)
    return f"<tool_call>\n<function={name}>\n{body}</function>\n</tool_call>"


CODE = 'def f(x):\n    return "<b>" + x + \'\\n\'  # ☀️ {}\n'
QWEN3_CASES = [
    ("text only", "Here is <b>bold</b> and <tool> text.", [text("Here is <b>bold</b> and <tool> text.")]),
    ("text then call", f"I'll look.\n\n{xcall('get_weather', ('location', 'Paris'))}",
     [text("I'll look."), call("get_weather", WEATHER)]),
    ("two calls", f"{xcall('get_weather', ('location', 'Paris'), ('unit', 'c'))}\n{xcall('get_time')}",
     [call("get_weather", {"location": "Paris", "unit": "c"}), call("get_time", {})]),
    ("typed values", xcall("search", ("query", "a \"quoted\" \\ query"), ("limit", " 10 "), ("score", "0.5"),
                           ("exact", "True"), ("filters", '{"lang": ["py", "rs"], "n": null}'),
                           ("tags", "['x', 'y']"), ("after", "null"), ("note", "42")),
     [call("search", {"query": 'a "quoted" \\ query', "limit": 10, "score": 0.5, "exact": True,
                      "filters": {"lang": ["py", "rs"], "n": None}, "tags": ["x", "y"], "after": None, "note": "42"})]),
    ("multi-line code value", xcall("search", ("query", CODE)), [call("search", {"query": CODE})]),
    ("values that do not parse stay text", xcall("search", ("limit", "ten"), ("exact", "yes")),
     [call("search", {"limit": "ten", "exact": "yes"})]),
    ("missing </parameter>", "<tool_call>\n<function=get_weather>\n<parameter=location>\nParis\n"
     "<parameter=unit>\nf\n</function>\n</tool_call>", [call("get_weather", {"location": "Paris", "unit": "f"})]),
    ("no wrapper", "Ok.\n<function=get_weather>\n<parameter=location>\nParis\n</parameter>\n</function>\nDone.",
     [text("Ok."), call("get_weather", WEATHER), text("Done.")]),
    ("hermes JSON, as constrained", f"{hcall('get_weather', NESTED_JSON)}\n{hcall('get_time', '{}')}",
     [call("get_weather", NESTED), call("get_time", {})]),
    ("cut off in a value", "<tool_call>\n<function=search>\n<parameter=limit>\n5\n</parameter>\n<parameter=query>\nab",
     [call("search", None)]),
    ("cut off before the name", "Wait.\n<tool_call>\n<function=sea", [text("Wait.")]),
    ("a fence is text", 'E.g.\n```json\n{"name": "get_time", "arguments": {}}\n```',
     [text('E.g.\n```json\n{"name": "get_time", "arguments": {}}\n```')]),
    ("text after a call", f"{xcall('get_time')}\n\nAll done.", [call("get_time", {}), text("All done.")]),
]


@pytest.mark.parametrize("name,source,expected", QWEN3_CASES, ids=[c[0] for c in QWEN3_CASES])
def test_qwen3_coder(name: str, source: str, expected: list[tuple]) -> None:
    check(qwen3, source, expected)


@pytest.mark.parametrize("source,expected", [
    (xcall("nope", ("a", "1")), [text(xcall("nope", ("a", "1")))]),
    ("Write <function=x y> then <tool_call> tags.", [text("Write <function=x y> then <tool_call> tags.")]),
])
def test_qwen3_coder_not_a_call_is_shown_as_written(source: str, expected: list[tuple]) -> None:
    check(qwen3, source, expected, markup_in_text=True)


def test_qwen3_coder_streams_string_values_as_they_arrive() -> None:
    parser = qwen3()
    events = parser.feed("<tool_call>\n<function=search>\n<parameter=query>\nhello wor")
    assert [type(e) for e in events] == [ToolCallStart, ToolArgsDelta, ToolArgsDelta]
    assert "".join(e.json for e in events[1:]) == '{"query": "hello wor'
    events = parser.feed("ld\n</parameter>\n<parameter=limit>\n3\n</parameter>\n</function>")
    assert "".join(e.json for e in events if isinstance(e, ToolArgsDelta)) == 'ld", "limit": 3}'
    assert events[-1] == ToolCallEnd({"query": "hello world", "limit": 3})


# -- formats, plans, grammars ---------------------------------------------------------------------------
@pytest.mark.parametrize("template,fmt", [
    ("{{ '[AVAILABLE_TOOLS]' }}{{ '[TOOL_CALLS]' + name + '[ARGS]' }}", MISTRAL_FORMAT),
    ("<tool_call>\n<function={{ name }}>\n<parameter={{ k }}>\n{{ v }}\n</parameter>\n</function>", QWEN3_CODER_FORMAT),
    ("<tool_call>\n{{ tool_call | tojson }}\n</tool_call>", HERMES_FORMAT),
    ("<function={{ name }}>{{ args }}</function>", JSON_FORMAT),  # Functionary: no <parameter=
    ("<|start_header_id|>ipython<|end_header_id|>", LLAMA3_FORMAT),
    ("{{ '<|python_tag|>' }}", LLAMA3_FORMAT),
    ("{{ messages }}", JSON_FORMAT),
])
def test_infer_tool_format(template: str, fmt: ToolFormat) -> None:
    assert tool_parser_for(template) is fmt


def test_existing_formats_are_unchanged() -> None:
    assert HERMES_FORMAT.syntaxes == (HERMES, JSON_FENCE, BARE_JSON) and HERMES_FORMAT.native == HERMES
    assert LLAMA3_FORMAT.syntaxes == (PYTHON_TAG, JSON_FENCE, BARE_JSON) and LLAMA3_FORMAT.native == BARE_JSON
    assert JSON_FORMAT.syntaxes == (JSON_FENCE, BARE_JSON) and JSON_FORMAT.native == BARE_JSON
    for fmt in (HERMES_FORMAT, LLAMA3_FORMAT, JSON_FORMAT):
        assert isinstance(fmt.make_parser(SCHEMAS), ToolCallParser)
    assert isinstance(MISTRAL_FORMAT.make_parser(SCHEMAS), MistralToolParser)
    assert isinstance(QWEN3_CODER_FORMAT.make_parser(SCHEMAS), Qwen3CoderToolParser)


def test_tool_plan_builds_the_templates_parser_for_the_callable_tools() -> None:
    tools = [ToolSpec(name, "", schema) for name, schema in SCHEMAS.items()]
    qwen = ToolPlan(tools, ToolChoice("tool", "search"), "<function=x><parameter=y>")
    parser = qwen.parser()
    assert isinstance(parser, Qwen3CoderToolParser)
    events = parser.feed(xcall("search", ("limit", "2"))) + parser.feed(xcall("get_time")) + parser.finish()
    assert normalize(events, markup_in_text=True)[0] == ("call", "search", '{"limit": 2}', {"limit": 2})
    assert all(not isinstance(e, ToolCallStart) or e.name == "search" for e in events)  # get_time is not callable
    assert isinstance(ToolPlan(tools, ToolChoice(), "[TOOL_CALLS]").parser(), MistralToolParser)
    assert isinstance(ToolPlan(tools, ToolChoice(), "<tool_call>").parser(), ToolCallParser)
    assert ToolPlan(tools, ToolChoice("none"), "[TOOL_CALLS]").parser() is None


@pytest.mark.parametrize("fmt", [MISTRAL_FORMAT, QWEN3_CODER_FORMAT])
def test_new_formats_grammars_build_and_their_output_parses(fmt: ToolFormat) -> None:
    tools = [ToolSpec(name, "", SCHEMAS[name]) for name in ("get_weather", "get_time")]
    assert json.dumps(fmt.native.opener) in forced_grammar(tools, fmt.native, True).gbnf
    assert lazy_grammar(tools, fmt.syntaxes, True).triggers
    # What the grammar forces: the native opener, a JSON call object, its closer.
    forced = f'{fmt.native.opener} {{"name": "get_weather", "arguments": {{"location": "Paris"}}}} {fmt.native.closer}'
    check(lambda: fmt.make_parser(SCHEMAS), forced, [call("get_weather", WEATHER)])


# -- hold-back ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("buf,markers,expected", [
    ("text <tool_", ["<tool_call>"], 6),
    ("text <tool_call>", ["<tool_call>"], 0),  # a whole marker is found, not held
    ("a</thi", ["</think>"], 5),
    ("", ["</think>"], 0),
    ("[", ["[TOOL_CALLS]", "[ARGS]"], 1),
    ("ab", ["abc", "bcd"], 2),  # the longest over all markers
    ("xb", ["abc", "bcd"], 1),
    ("abc", ["", "c"], 0),  # an empty marker, and a one-character one, never hold anything
    ("<<", ["<<<"], 2),
])
def test_partial_marker(buf: str, markers: list[str], expected: int) -> None:
    assert partial_marker(buf, markers) == expected


def test_partial_marker_fits_rejects_some_places() -> None:
    # `{` counts only at a line's start: a brace after text on its line is not held.
    at_line_start = lambda buf: lambda n: buf[: len(buf) - n].endswith("\n") or not buf[: len(buf) - n]  # noqa: E731
    assert partial_marker("say {", ["{\"a"], at_line_start("say {")) == 0
    assert partial_marker("say\n{", ["{\"a"], at_line_start("say\n{")) == 1
    assert partial_marker("abab", ["ababx"], lambda n: n != 4) == 2  # the longest that fits, not just the longest


def _brute_force(buf: str, markers: list[str], fits: Callable[[int], bool]) -> int:
    """The definition: the longest proper, non-empty marker prefix that `buf` ends with and `fits` accepts."""
    return max((n for m in markers for n in range(1, len(m)) if buf[len(buf) - n:] == m[:n] and n <= len(buf)
                and fits(n)), default=0)


@settings(max_examples=500, derandomize=True, deadline=None, database=None)
@given(buf=st.text("ab<>", max_size=12), markers=st.lists(st.text("ab<>", max_size=6), max_size=4),
       banned=st.sets(st.integers(0, 8)))
def test_partial_marker_is_its_definition(buf: str, markers: list[str], banned: set[int]) -> None:
    fits = lambda n: n not in banned  # noqa: E731
    assert partial_marker(buf, markers, fits) == _brute_force(buf, markers, fits)
    assert partial_marker(buf, markers) == _brute_force(buf, markers, lambda n: True)


# -- parsers by name ------------------------------------------------------------------------------------
def test_every_registered_parser_resolves_by_its_name() -> None:
    for name, fmt in TOOL_PARSERS.items():
        assert fmt.name == name and tool_parser_for("{{ '<tool_call>' }}", name) is fmt  # the name beats the template
        assert fmt.make_parser(SCHEMAS).finish() == []
    for name, reasoning in REASONING_PARSERS.items():
        assert reasoning.name == name and reasoning_parser_for("{{ '<think>' }}", name) is reasoning
    assert list(TOOL_PARSERS) == ["hermes", "llama3_json", "json", "mistral", "qwen3_coder"]
    assert list(REASONING_PARSERS) == ["think", "none"]


def test_the_template_picks_only_the_default_reasoning_parser() -> None:
    for template in ("<think>", "{% if enable_thinking %}", "{{ m.reasoning_content }}"):
        assert reasoning_parser_for(template).name == "think" and reasoning_parser_for(template).reasons
    assert reasoning_parser_for("{{ messages }}").name == "none" and not reasoning_parser_for("").reasons
    assert isinstance(reasoning_parser_for("", "think").make_parser(False), ThinkParser)
    assert reasoning_parser_for("<think>", "none").make_parser(True) is None


@pytest.mark.parametrize("kind,lookup", [("tool", tool_parser_for), ("reasoning", reasoning_parser_for)])
def test_an_unknown_parser_name_lists_the_known_ones(kind: str, lookup: Callable) -> None:
    known = TOOL_PARSER_NAMES if kind == "tool" else REASONING_PARSER_NAMES
    with pytest.raises(UnknownParserError, match=f"unknown {kind} parser 'nope'; one of {', '.join(known)}"):
        lookup("", "nope")


def test_a_named_tool_parser_sets_the_plans_parser_and_grammars() -> None:
    tools = [ToolSpec(name, "", schema) for name, schema in SCHEMAS.items()]
    hermes_template = "<tool_call>"
    assert ToolPlan(tools, ToolChoice(), hermes_template).format is HERMES_FORMAT
    plan = ToolPlan(tools, ToolChoice("any"), hermes_template, tool_parser="mistral")
    assert plan.format is MISTRAL_FORMAT and isinstance(plan.parser(), MistralToolParser)
    grammar = plan.grammar()
    assert grammar is not None and json.dumps("[TOOL_CALLS]") in grammar.gbnf and "<tool_call>" not in grammar.gbnf


def test_the_render_plan_takes_the_parsers_from_the_chat_template() -> None:
    template = ChatTemplate("{{ '<think>' }}{% for m in messages %}{{ m.content }}{% endfor %}{{ tools }}")
    request = ChatRequest(Conversation([ChatMessage("user", "hi")]), SamplingParams(max_tokens=8))
    plan = RenderPlan.of(request, template)
    assert plan.reasons and plan.template_vars() == {"enable_thinking": False} and plan.tools.format is JSON_FORMAT
    template.tool_parser, template.reasoning_parser = "qwen3_coder", "none"
    plan = RenderPlan.of(request, template)
    assert not plan.reasons and plan.template_vars() == {} and plan.tools.format is QWEN3_CODER_FORMAT


def test_a_markup_parser_must_say_what_each_hook_does() -> None:
    class Partial(MarkupCallParser):
        def _step(self, text: str, events: list[Event]) -> str:
            return ""

    with pytest.raises(TypeError, match="abstract"):
        Partial(set())  # type: ignore[abstract]


def test_settings_and_the_config_take_only_known_parser_names(tmp_path, monkeypatch) -> None:
    assert Settings(tool_parser="mistral", reasoning_parser="none").tool_parser == "mistral"
    monkeypatch.setenv("PARLEY_REASONING_PARSER", "think")
    assert Settings().reasoning_parser == "think" and Settings().tool_parser is None
    with pytest.raises(ValidationError, match="unknown tool parser 'nope'; one of hermes, llama3_json, json"):
        Settings(tool_parser="nope")
    config = tmp_path / "models.toml"
    config.write_text('[models."m"]\ntool_parser = "qwen3_coder"\nreasoning_parser = "none"\n')
    assert load_config(config).overrides("m") == {"tool_parser": "qwen3_coder", "reasoning_parser": "none"}
    config.write_text('[models."m"]\nreasoning_parser = "deepseek"\n')
    with pytest.raises(ConfigError, match=r"models.\"m\".reasoning_parser must be one of \('think', 'none'\)"):
        load_config(config)
