"""Context editing (`context_management.edits`): the edit rules on wire requests, then on a real server, where the
edited prompt is what `count_tokens` counts and the applied counts are measured."""

from __future__ import annotations

import anthropic
import pytest

from conftest import SMOL
from parley.api.anthropic.context_edits import CLEARED_RESULT, apply_edits
from parley.api.anthropic.protocol import MessagesRequest, ToolResultBlockParam, ToolUseBlockParam
from parley.errors import InvalidRequestError

BETA = ["context-management-2025-06-27"]
TOOLS = [{"name": name, "description": f"The {name} tool.",
          "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}
         for name in ("read_file", "list_dir")]


def _tool_conversation(pairs: int = 10, thinking: bool = False, sign=None) -> list[dict]:
    """A long agent loop: `pairs` tool_use/tool_result pairs (every third one `list_dir`), then a question."""
    messages: list[dict] = [{"role": "user", "content": "Look around the project and summarize it."}]
    for i in range(pairs):
        name = "list_dir" if i % 3 == 2 else "read_file"
        content: list[dict] = []
        if thinking:
            text = f"I should look at file {i} next."
            content.append({"type": "thinking", "thinking": text, "signature": sign(text) if sign else "x"})
        content.append({"type": "tool_use", "id": f"toolu_{i:02d}", "name": name, "input": {"path": f"src/f{i}.py"}})
        messages.append({"role": "assistant", "content": content})
        result = f"# file {i}\n" + f"def function_{i}(value):\n    return value * {i}\n" * 2
        messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_{i:02d}",
                                                      "content": result}]})
    messages.append({"role": "assistant", "content": "I have read the files."})
    messages.append({"role": "user", "content": "Now summarize them in one line."})
    return messages


def _request(edits: list[dict], messages: list[dict] | None = None, **kw) -> MessagesRequest:
    return MessagesRequest(model=SMOL, max_tokens=5, tools=TOOLS, messages=messages or _tool_conversation(),
                           context_management={"edits": edits}, **kw)


def _count(req: MessagesRequest) -> int:
    """A stand-in tokenizer for the pure tests: one token per character of the messages."""
    return len(req.model_dump_json(include={"messages"}))


def _cleared_ids(req: MessagesRequest) -> list[str]:
    return [b.tool_use_id for m in req.messages if isinstance(m.content, list) for b in m.content
            if isinstance(b, ToolResultBlockParam) and b.content == CLEARED_RESULT]


def _inputs(req: MessagesRequest) -> dict[str, dict]:
    return {b.id: b.input for m in req.messages if isinstance(m.content, list) for b in m.content
            if isinstance(b, ToolUseBlockParam)}


# --- the rules, on wire requests ----------------------------------------------------------------------------------

def test_clear_tool_uses_below_the_default_trigger_does_nothing():
    req = _request([{"type": "clear_tool_uses_20250919"}])  # 100,000 input tokens: far above this conversation
    result = apply_edits(req, _count, False)
    assert result.applied_edits == [] and result.request is req


def test_clear_tool_uses_keeps_the_three_most_recent_by_default():
    req = _request([{"type": "clear_tool_uses_20250919", "trigger": {"type": "input_tokens", "value": 100}}])
    result = apply_edits(req, _count, False)
    assert _cleared_ids(result.request) == [f"toolu_{i:02d}" for i in range(7)]
    assert result.applied_edits == [{"type": "clear_tool_uses_20250919", "cleared_tool_uses": 7,
                                     "cleared_input_tokens": _count(req) - _count(result.request)}]
    assert _inputs(result.request) == _inputs(req)  # inputs stay unless clear_tool_inputs
    assert _cleared_ids(req) == []  # the client's request is not touched


def test_keep_exclude_tools_and_clear_tool_inputs():
    req = _request([{"type": "clear_tool_uses_20250919", "trigger": {"type": "input_tokens", "value": 100},
                     "keep": {"type": "tool_uses", "value": 2}, "exclude_tools": ["list_dir"],
                     "clear_tool_inputs": True}])
    result = apply_edits(req, _count, False)
    read_calls = [i for i in range(10) if i % 3 != 2]  # the list_dir uses (2, 5, 8) are never cleared
    cleared = [f"toolu_{i:02d}" for i in read_calls[:-2]]
    assert _cleared_ids(result.request) == cleared
    inputs = _inputs(result.request)
    assert all(inputs[i] == {} for i in cleared) and inputs["toolu_02"] == {"path": "src/f2.py"}
    assert result.applied_edits[0]["cleared_tool_uses"] == len(cleared) == 5


def test_clear_tool_inputs_by_tool_name():
    req = _request([{"type": "clear_tool_uses_20250919", "trigger": {"type": "tool_uses", "value": 3},
                     "keep": {"type": "tool_uses", "value": 0}, "clear_tool_inputs": ["list_dir"]}])
    inputs = _inputs(apply_edits(req, _count, False).request)
    assert [k for k, v in inputs.items() if v == {}] == ["toolu_02", "toolu_05", "toolu_08"]


def test_tool_uses_trigger_and_clear_at_least():
    def edit(trigger: int, at_least: int | None = None) -> list[dict]:
        return [{"type": "clear_tool_uses_20250919", "trigger": {"type": "tool_uses", "value": trigger},
                 **({"clear_at_least": {"type": "input_tokens", "value": at_least}} if at_least else {})}]
    assert apply_edits(_request(edit(10)), _count, False).applied_edits == []  # 10 uses do not exceed 10
    fired = apply_edits(_request(edit(9)), _count, False).applied_edits
    assert fired[0]["cleared_tool_uses"] == 7
    enough = fired[0]["cleared_input_tokens"]
    assert apply_edits(_request(edit(9, enough)), _count, False).applied_edits == fired
    assert apply_edits(_request(edit(9, enough + 1)), _count, False).applied_edits == []  # all or nothing


def test_clear_thinking_keeps_the_last_turn_by_default():
    req = _request([{"type": "clear_thinking_20251015"}], _tool_conversation(5, thinking=True),
                   thinking={"type": "enabled", "budget_tokens": 1024})
    result = apply_edits(req, _count, True)
    kinds = [[b.type for b in m.content] for m in result.request.messages
             if m.role == "assistant" and isinstance(m.content, list)]
    # One tool loop is one assistant turn: with tool results only in between, all five calls are one turn.
    assert kinds == [["thinking", "tool_use"]] * 5 and result.applied_edits == []
    split = _tool_conversation(2, thinking=True)
    split.insert(3, {"role": "user", "content": [split[2]["content"][0], {"type": "text", "text": "Go on."}]})
    del split[2]  # the first result now comes with user text: a new turn starts after it
    req = _request([{"type": "clear_thinking_20251015"}], split, thinking={"type": "adaptive"})
    result = apply_edits(req, _count, True)
    assert [b.type for b in result.request.messages[1].content] == ["tool_use"]
    assert [b.type for b in result.request.messages[3].content] == ["thinking", "tool_use"]
    assert result.applied_edits == [{"type": "clear_thinking_20251015", "cleared_thinking_turns": 1,
                                     "cleared_input_tokens": _count(req) - _count(result.request)}]
    for keep in ("all", {"type": "all"}, {"type": "thinking_turns", "value": 2}):
        edit = [{"type": "clear_thinking_20251015", "keep": keep}]
        assert apply_edits(_request(edit, split, thinking={"type": "adaptive"}), _count, True).applied_edits == []


def test_edit_rules_the_api_checks():
    thinking = {"type": "enabled", "budget_tokens": 1024}
    both = [{"type": "clear_tool_uses_20250919"}, {"type": "clear_thinking_20251015"}]
    with pytest.raises(InvalidRequestError, match="must be the first edit"):
        apply_edits(_request(both, thinking=thinking), _count, True)
    with pytest.raises(InvalidRequestError, match="requires thinking to be enabled"):
        apply_edits(_request([{"type": "clear_thinking_20251015"}]), _count, False)
    compact = [{"type": "compact_20260112", "trigger": {"type": "input_tokens", "value": 50}}]
    with pytest.raises(InvalidRequestError, match="does not summarize"):
        apply_edits(_request(compact), _count, False)
    assert apply_edits(_request([{"type": "compact_20260112"}]), _count, False).applied_edits == []


# --- on a server: the edited prompt is what count_tokens counts ---------------------------------------------------

def _edited_by_hand(messages: list[dict], cleared: list[int], inputs_too: bool = False) -> list[dict]:
    out = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            content = [{**b, "content": CLEARED_RESULT} if b["type"] == "tool_result"
                       and int(b["tool_use_id"][-2:]) in cleared else
                       {**b, "input": {}} if inputs_too and b["type"] == "tool_use" and int(b["id"][-2:]) in cleared
                       else b for b in content]
        out.append({**message, "content": content})
    return out


@pytest.mark.parametrize("edit, cleared, inputs_too", [
    ({"trigger": {"type": "input_tokens", "value": 300}}, list(range(7)), False),
    ({"trigger": {"type": "tool_uses", "value": 5}, "keep": {"type": "tool_uses", "value": 4},
      "exclude_tools": ["list_dir"]}, [0, 1, 3], False),
    ({"trigger": {"type": "input_tokens", "value": 300}, "keep": {"type": "tool_uses", "value": 1},
      "clear_tool_inputs": True, "clear_at_least": {"type": "input_tokens", "value": 100}}, list(range(9)), True),
], ids=["defaults", "keep-exclude", "inputs-at-least"])
def test_cleared_prompt_is_what_is_counted_and_generated(client, edit, cleared, inputs_too):
    messages = _tool_conversation()
    management = {"edits": [{"type": "clear_tool_uses_20250919", **edit}]}
    counted = client.beta.messages.count_tokens(model=SMOL, tools=TOOLS, messages=messages, betas=BETA,
                                                context_management=management)
    by_hand = client.messages.count_tokens(model=SMOL, tools=TOOLS,
                                           messages=_edited_by_hand(messages, cleared, inputs_too)).input_tokens
    original = client.messages.count_tokens(model=SMOL, tools=TOOLS, messages=messages).input_tokens
    assert counted.input_tokens == by_hand < original
    assert counted.context_management.original_input_tokens == original
    message = client.beta.messages.create(model=SMOL, max_tokens=1, tools=TOOLS, messages=messages, betas=BETA,
                                          context_management=management, extra_body={"temperature": 0})
    usage = message.usage
    assert usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens == by_hand
    [applied] = message.context_management.applied_edits
    assert applied.type == "clear_tool_uses_20250919" and applied.cleared_tool_uses == len(cleared)
    assert applied.cleared_input_tokens == original - by_hand


def test_untriggered_and_thinking_edits_on_a_server(client):
    messages = _tool_conversation()
    quiet = {"edits": [{"type": "clear_tool_uses_20250919"}]}  # 100,000 tokens: not reached
    counted = client.beta.messages.count_tokens(model=SMOL, tools=TOOLS, messages=messages, betas=BETA,
                                                context_management=quiet)
    assert counted.input_tokens == counted.context_management.original_input_tokens
    with client.beta.messages.stream(model=SMOL, max_tokens=1, messages=[{"role": "user", "content": "Hi"}],
                                     betas=BETA, context_management=quiet) as stream:
        final = stream.get_final_message()  # the stream's message_delta carries the (empty) record
    assert final.context_management is not None and final.context_management.applied_edits == []

    from parley.services.signatures import ThinkingSigner, load_or_create_key
    from parley.settings import Settings

    settings = Settings()
    signer = ThinkingSigner(load_or_create_key(settings.signing_key, settings.cache_dir / "signing.key"))
    history = _tool_conversation(2, thinking=True, sign=lambda text: signer.sign(text, sealed=False))
    history.insert(3, {"role": "user", "content": [history[2]["content"][0], {"type": "text", "text": "Go on."}]})
    del history[2]
    edits = {"edits": [{"type": "clear_thinking_20251015"},
                       {"type": "clear_tool_uses_20250919", "trigger": {"type": "tool_uses", "value": 1},
                        "keep": {"type": "tool_uses", "value": 1}}]}
    thinking = {"type": "adaptive"}  # no budget to stay below: one token is enough here
    message = client.beta.messages.create(model=SMOL, max_tokens=1, tools=TOOLS, messages=history, betas=BETA,
                                          thinking=thinking, context_management=edits, extra_body={"temperature": 0})
    first, second = message.context_management.applied_edits
    assert first.type == "clear_thinking_20251015" and first.cleared_thinking_turns == 1
    assert second.type == "clear_tool_uses_20250919" and second.cleared_tool_uses == 1
    counted = client.beta.messages.count_tokens(model=SMOL, tools=TOOLS, messages=history, betas=BETA,
                                                thinking=thinking, context_management=edits)
    assert first.cleared_input_tokens + second.cleared_input_tokens == (
        counted.context_management.original_input_tokens - counted.input_tokens)
    with pytest.raises(anthropic.BadRequestError, match="requires thinking to be enabled"):
        client.beta.messages.count_tokens(model=SMOL, messages=history, betas=BETA,
                                          context_management={"edits": [{"type": "clear_thinking_20251015"}]})
