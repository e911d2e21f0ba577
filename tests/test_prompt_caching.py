"""Prompt caching, as the API accounts for it: cache reads from parley's prefix cache, cache writes up to the last
`cache_control` breakpoint (by ttl), the rest as `input_tokens`; always adding up to what count_tokens says."""

from __future__ import annotations

import secrets

import anthropic
import pytest

from conftest import QWEN, SMOL
from support.sse_util import read_events

GREEDY = {"temperature": 0}
LONG = "You review Python code. Point out bugs first, then style, and keep every answer short. " * 12
SHORT = "You review Python code and keep answers short. " * 3


def _fresh(text: str) -> str:
    """A system prompt no earlier request began with, so the prefix cache holds none of it."""
    return f"[{secrets.token_hex(4)}] {text}"


def _ask(client, system, content, model=SMOL, **kw):
    return client.messages.create(model=model, max_tokens=1, system=system, extra_body=GREEDY,
                                  messages=[{"role": "user", "content": content}], **kw)


def _count(client, system, content, model=SMOL, **kw) -> int:
    return client.messages.count_tokens(model=model, system=system,
                                        messages=[{"role": "user", "content": content}], **kw).input_tokens


def _total(usage) -> int:
    return usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens


def _cached_system(text: str, ttl: str | None = None) -> list[dict]:
    control = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    return [{"type": "text", "text": text, "cache_control": control}]


def test_breakpoint_after_the_system_prompt_is_written_then_read(client):
    system = _cached_system(_fresh(LONG))
    first = _ask(client, system, "Is `x == None` fine?")
    assert _total(first.usage) == _count(client, system, "Is `x == None` fine?")
    assert first.usage.cache_read_input_tokens < 8  # at most the template's opening, shared with others
    written = first.usage.cache_creation_input_tokens
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == written > 150
    assert first.usage.cache_creation.ephemeral_1h_input_tokens == 0
    breakpoint_at = first.usage.cache_read_input_tokens + written  # the system prompt's end
    second = _ask(client, system, "And `len(x) == 0`?")
    assert second.usage.cache_creation_input_tokens == 0
    # Read: the system prompt, and the template's markup up to where the two questions differ.
    assert breakpoint_at <= second.usage.cache_read_input_tokens <= breakpoint_at + 8
    assert _total(second.usage) == _count(client, system, "And `len(x) == 0`?")
    # The breakpoint sits where the system text ends: exactly as many tokens further on as a longer one has.
    short = _cached_system(_fresh(SHORT))
    cold = _ask(client, short, "Is `x == None` fine?")
    assert breakpoint_at - (cold.usage.cache_read_input_tokens + cold.usage.cache_creation_input_tokens) == (
        _count(client, system, "Is `x == None` fine?") - _count(client, short, "Is `x == None` fine?"))
    # Without a breakpoint nothing is written, as in the API; the cache is still read.
    plain = _ask(client, system[0]["text"], "And `len(x) == 0`?")
    assert plain.usage.cache_creation_input_tokens == 0 and plain.usage.cache_creation.ephemeral_5m_input_tokens == 0
    assert plain.usage.cache_read_input_tokens == _total(plain.usage) - 1


def test_ttls_split_the_write_and_their_order_is_checked(client):
    system = _cached_system(_fresh(SHORT), "1h")
    question = [{"type": "text", "text": "Review: `def f(a=[]): a.append(1)`", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "One line, please."}]
    message = _ask(client, system, question)
    usage = message.usage
    assert _total(usage) == _count(client, system, question)
    assert usage.cache_creation.ephemeral_1h_input_tokens > 30  # the system prompt
    assert 10 < usage.cache_creation.ephemeral_5m_input_tokens < 30  # then the first block of the question
    assert usage.cache_creation_input_tokens == (usage.cache_creation.ephemeral_1h_input_tokens
                                                  + usage.cache_creation.ephemeral_5m_input_tokens)
    assert usage.input_tokens > 5  # the second block and the template's tail
    wrong_order = _cached_system(SHORT, "5m")
    later_hour = [{**question[0], "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    with pytest.raises(anthropic.BadRequestError, match=r"messages\.0\.content\.0\.cache_control\.ttl: a ttl='1h' "
                                                        r"cache_control block must not come after a ttl='5m'"):
        _ask(client, wrong_order, later_hour)
    five = [{"type": "text", "text": f"part {i}", "cache_control": {"type": "ephemeral"}} for i in range(5)]
    for call in (_ask, _count):
        with pytest.raises(anthropic.BadRequestError,
                           match="A maximum of 4 blocks with cache_control may be provided. Found 5."):
            call(client, SHORT, five)
    with pytest.raises(anthropic.BadRequestError):
        _ask(client, [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "2h"}}], "hi")


def test_top_level_cache_control_writes_the_whole_prompt(client):
    system, question = _fresh(SHORT), "Is `except:` without a type ever right?"
    auto = {"cache_control": {"type": "ephemeral"}, **GREEDY}
    kw = dict(model=SMOL, max_tokens=1, system=system, messages=[{"role": "user", "content": question}])
    first = client.messages.create(**kw, extra_body=auto)
    total = _count(client, system, question)
    assert _total(first.usage) == total
    # Up to the end of the last block: only the template's closing and the assistant's opening are left.
    assert 0 < first.usage.input_tokens <= 8 and first.usage.cache_creation_input_tokens > 40
    again = client.messages.create(**kw, extra_body=auto)
    assert again.usage.cache_read_input_tokens == total - 1 and again.usage.input_tokens == 1
    assert again.usage.cache_creation_input_tokens == 0
    # Streamed: the same accounting in message_start, message_delta and the SDK's final message.
    with client.messages.stream(**kw, extra_body=auto) as stream:
        final = stream.get_final_message().usage
    assert (final.cache_read_input_tokens, final.cache_creation_input_tokens, final.input_tokens) == (total - 1, 0, 1)
    body = {**kw, **auto, "system": _cached_system(_fresh(SHORT)), "stream": True}
    events = read_events(client.base_url.__str__().rstrip("/") + "/v1/messages", body)
    start = events[0][1]["message"]["usage"]
    delta = next(data for name, data in events if name == "message_delta")["usage"]
    for usage in (start, delta):
        assert usage["cache_creation_input_tokens"] == usage["cache_creation"]["ephemeral_5m_input_tokens"] > 30
        assert usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"] == (
            _count(client, body["system"], question))


def test_breakpoint_on_a_tool_in_a_hermes_system_prompt(client):
    """Qwen renders tools inside its system turn: a tool's breakpoint ends after that tool's JSON there."""
    def tools(description: str) -> list[dict]:
        return [{"name": "read_file", "description": _fresh(description),
                 "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
                 "cache_control": {"type": "ephemeral", "ttl": "1h"}}]

    def breakpoint_at(usage) -> int:
        assert usage.cache_creation_input_tokens == usage.cache_creation.ephemeral_1h_input_tokens > 10
        return usage.cache_read_input_tokens + usage.cache_creation_input_tokens

    long, short = tools("Read a file of the repository under review. " * 4), tools("Read a file.")
    first = _ask(client, SHORT, "Read setup.py", model=QWEN, tools=long)
    total = _count(client, SHORT, "Read setup.py", model=QWEN, tools=long)
    assert _total(first.usage) == total
    assert first.usage.input_tokens > 40  # Qwen's instructions for tool calls follow the tools, then the question
    second = _ask(client, SHORT, "Read README.md", model=QWEN, tools=long)
    assert second.usage.cache_creation_input_tokens == 0
    assert second.usage.cache_read_input_tokens >= breakpoint_at(first.usage)
    cold = _ask(client, SHORT, "Read setup.py", model=QWEN, tools=short)
    assert breakpoint_at(first.usage) - breakpoint_at(cold.usage) == (
        total - _count(client, SHORT, "Read setup.py", model=QWEN, tools=short))


def test_breakpoints_on_a_tool_call_and_its_result(client):
    """Claude Code marks the last block of its last turn, often a tool_result: parley finds the breakpoint by
    rendering a copy with a call or result of its own after the block, and that copy is not a pairing error."""
    tools = [{"name": "read_file", "description": "Read a file.",
              "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}]
    mark = {"type": "ephemeral"}

    def conversation(on_call: bool) -> list[dict]:
        call = {"type": "tool_use", "id": "toolu_01", "name": "read_file", "input": {"path": "a.py"}}
        result = {"type": "tool_result", "tool_use_id": "toolu_01", "content": "x = 1\nprint(x)\n" * 20}
        return [{"role": "user", "content": _fresh("What does a.py print?")},
                {"role": "assistant", "content": [{**call, "cache_control": mark} if on_call else call]},
                {"role": "user", "content": [result if on_call else {**result, "cache_control": mark},
                                             {"type": "text", "text": "Answer in one line."}]}]

    written = {}
    for on_call in (True, False):
        messages = conversation(on_call)
        answer = client.messages.create(model=QWEN, max_tokens=1, tools=tools, messages=messages,
                                        extra_body=GREEDY)
        total = client.messages.count_tokens(model=QWEN, tools=tools, messages=messages).input_tokens
        assert _total(answer.usage) == total
        assert answer.usage.input_tokens > 3  # the text after the marked block is not written
        written[on_call] = answer.usage.cache_read_input_tokens + answer.usage.cache_creation_input_tokens
    # The result's breakpoint lies past the 20 lines of the file: at least their tokens further on.
    assert written[False] - written[True] > 100
