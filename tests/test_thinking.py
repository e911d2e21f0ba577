"""Extended thinking end to end: a real model given a reasoning template, the official SDK as client."""

from __future__ import annotations

import anthropic
import pytest

from conftest import SMOL
from parley.core.events import TextDelta, ThinkingDelta, ThinkingEnd
from parley.parsers.think import ThinkParser

QWEN_THINK, SMOL_THINK = "qwen2.5-0.5b-think", "smollm2-think"
THINK = {"type": "enabled", "budget_tokens": 1024}


def test_upstream_streaming_example_thinks_then_answers(think_server):
    client = think_server.client()
    with client.messages.stream(model=QWEN_THINK, max_tokens=1400, thinking=THINK, extra_body={"temperature": 0},
                                messages=[{"role": "user",
                                           "content": "What is 27 * 453? Show your calculation steps."}]) as stream:
        raw = {"message_start", "content_block_start", "content_block_delta", "content_block_stop",
               "message_delta", "message_stop"}  # the SDK also derives "text"/"thinking" events
        events = [e for e in stream if e.type in raw]
        final = stream.get_final_message()
    kinds = [(e.type, getattr(e, "index", None), getattr(getattr(e, "delta", None), "type", None)
              or getattr(getattr(e, "content_block", None), "type", None)) for e in events]
    assert kinds[0][0] == "message_start"
    assert kinds[1] == ("content_block_start", 0, "thinking")
    thinking_deltas = [k for k in kinds if k[2] == "thinking_delta"]
    assert thinking_deltas and all(k[1] == 0 for k in thinking_deltas)
    signature_at = kinds.index(("content_block_delta", 0, "signature_delta"))
    assert [k[2] for k in kinds].count("signature_delta") == 1
    assert kinds[signature_at + 1][:2] == ("content_block_stop", 0)
    assert kinds[signature_at + 2] == ("content_block_start", 1, "text")
    assert [k[0] for k in kinds[-3:]] == ["content_block_stop", "message_delta", "message_stop"]
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking.strip() and final.content[0].signature and final.content[1].text.strip()
    assert "<think>" not in final.content[1].text and "</think>" not in final.content[1].text


def test_non_streaming_blocks_and_usage_counts_thinking(think_server):
    client = think_server.client()
    before = think_server.health()["models"].get(SMOL_THINK, {}).get("tokens_generated", 0)
    message = client.messages.create(model=SMOL_THINK, max_tokens=1500, thinking=THINK, extra_body={"temperature": 0},
                                     messages=[
        {"role": "user", "content": "Are there an infinite number of prime numbers such that n mod 4 == 3?"}])
    after = think_server.health()["models"][SMOL_THINK]["tokens_generated"]
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking and message.content[0].signature.startswith("ps1.")
    assert message.usage.output_tokens == after - before  # every generated token, reasoning included


def _tokens(client, text: str) -> int:
    return client.messages.count_tokens(model=SMOL_THINK, messages=[{"role": "user", "content": text}]).input_tokens


def test_budget_is_enforced_and_the_answer_follows(think_server):
    client = think_server.client()
    message = client.messages.create(
        model=SMOL_THINK, max_tokens=1400, thinking=THINK, extra_body={"temperature": 0},
        messages=[{"role": "user",
                   "content": "List all integers from 1 to 3000 in order, one per line, without skipping any."}])
    thinking = message.content[0]
    assert thinking.type == "thinking"
    reasoning_tokens = _tokens(client, thinking.thinking) - _tokens(client, "")
    assert 900 <= reasoning_tokens <= 1100  # stopped at the budget (re-tokenized text: approximately)
    assert [b.type for b in message.content] == ["thinking", "text"]  # and the model went on to answer
    assert message.usage.output_tokens > 1024


def _first_turn(client, display: str = "summarized"):
    return client.messages.create(model=SMOL_THINK, max_tokens=1200,
                                  thinking={**THINK, "display": display},
                                  messages=[{"role": "user", "content": "What is 2 + 2?"}])


def _history(first, blocks=None) -> list[dict]:
    content = blocks if blocks is not None else [b.model_dump(exclude_none=True) for b in first.content]
    for block in content:  # a final assistant turn may not end in whitespace (as in the real API)
        if block.get("type") == "text":
            block["text"] = block["text"].rstrip() or "4"
    return [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": content},
            {"role": "user", "content": "And 3 + 3?"}]


def test_signed_thinking_round_trips_and_tampering_is_rejected(think_server):
    client = think_server.client()
    first = _first_turn(client)
    follow = client.messages.create(model=SMOL_THINK, max_tokens=1200, thinking=THINK, messages=_history(first))
    assert follow.content
    blocks = [b.model_dump(exclude_none=True) for b in first.content]
    tampered_text = [{**blocks[0], "thinking": blocks[0]["thinking"] + " (edited)"}, *blocks[1:]]
    tampered_sig = [{**blocks[0], "signature": blocks[0]["signature"][:-4] + "AAAA"}, *blocks[1:]]
    for bad in (tampered_text, tampered_sig):
        with pytest.raises(anthropic.BadRequestError) as info:
            client.messages.create(model=SMOL_THINK, max_tokens=1200, thinking=THINK, messages=_history(first, bad))
        assert info.value.body["error"]["type"] == "invalid_request_error"
        assert "signature" in info.value.body["error"]["message"]
    redacted = [{"type": "redacted_thinking", "data": "opaque"}, *blocks[1:]]
    assert client.messages.create(model=SMOL_THINK, max_tokens=1200, thinking=THINK,
                                  messages=_history(first, redacted)).content


def test_omitted_display_seals_the_reasoning_in_the_signature(think_server):
    client = think_server.client()
    sealed = _first_turn(client, "omitted")
    block = sealed.content[0]
    assert block.type == "thinking" and block.thinking == "" and block.signature.startswith("pe1.")
    # Sent back with the prefilled assistant turn last, the template renders the restored reasoning.
    restored = client.messages.count_tokens(model=SMOL_THINK, thinking=THINK, messages=_history(sealed)[:2])
    without = client.messages.count_tokens(model=SMOL_THINK, thinking=THINK, messages=_history(
        sealed, [b.model_dump(exclude_none=True) for b in sealed.content[1:]])[:2])
    assert restored.input_tokens > without.input_tokens


def test_streamed_omitted_thinking_has_no_text_but_a_signature(think_server):
    with think_server.client().messages.stream(model=SMOL_THINK, max_tokens=1200,
                                               thinking={**THINK, "display": "omitted"},
                                               messages=[{"role": "user", "content": "Hi"}]) as stream:
        deltas = [e.delta.type for e in stream if e.type == "content_block_delta"]
    assert "thinking_delta" not in deltas and deltas.count("signature_delta") == 1


def test_signatures_survive_a_restart(start_server, think_models, tmp_path):
    model = str(think_models / "smollm2-think.gguf")
    first_server = start_server("--model", model, cache_dir=str(tmp_path))
    first = _first_turn(first_server.client())
    first_server.stop()
    second_server = start_server("--model", model, cache_dir=str(tmp_path))
    assert second_server.client().messages.create(model=SMOL_THINK, max_tokens=1200, thinking=THINK,
                                                  messages=_history(first)).content


def test_claude_code_thinking_shape_is_accepted(think_server):
    message = think_server.client().messages.create(
        model=SMOL_THINK, max_tokens=600, messages=[{"role": "user", "content": "Say hi"}],
        extra_body={"thinking": {"type": "adaptive", "display": "omitted"}, "output_config": {"effort": "low"},
                    "context_management": {"edits": []}})
    assert message.content[0].type == "thinking" and message.content[0].thinking == ""


def test_disabled_thinking_on_a_reasoning_model_gives_no_thinking_block(think_server):
    # Greedy: sampled at temperature 1, the 135M model once wrote a literal "<think>" into its answer (CI).
    message = think_server.client().messages.create(model=SMOL_THINK, max_tokens=40, extra_body={"temperature": 0},
                                                    messages=[{"role": "user", "content": "Say hi"}])
    assert all(b.type == "text" for b in message.content)
    assert "<think>" not in message.content[0].text


def test_a_model_that_cannot_reason_just_answers(client):
    message = client.messages.create(model=SMOL, max_tokens=2000, thinking=THINK,
                                     messages=[{"role": "user", "content": "Say hi"}])
    assert [b.type for b in message.content] == ["text"]


@pytest.mark.parametrize("thinking, extra, fragment", [
    ({"type": "enabled", "budget_tokens": 500}, {}, "budget_tokens"),
    ({"type": "enabled", "budget_tokens": 4000}, {}, "max_tokens"),
    ({"type": "enabled"}, {}, "budget_tokens"),
    ({"type": "sometimes"}, {}, "thinking"),
    (THINK, {"tool_choice": {"type": "any"}, "tools": [{"name": "t", "input_schema": {"type": "object"}}]},
     "tool_choice"),
])
def test_thinking_validation(client, thinking, extra, fragment):
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=SMOL, max_tokens=2000, thinking=thinking,
                               messages=[{"role": "user", "content": "hi"}], **extra)
    assert fragment in info.value.body["error"]["message"]


def _run_think(chunks: list[str], starts_open: bool) -> tuple[str, str, int]:
    parser = ThinkParser(starts_open)
    events = [e for c in chunks for e in parser.feed(c)] + parser.finish()
    thought = "".join(e.text for e in events if isinstance(e, ThinkingDelta))
    answer = "".join(e.text for e in events if isinstance(e, TextDelta))
    ends = [e for e in events if isinstance(e, ThinkingEnd)]
    assert all(end.text == thought for end in ends)
    return thought, answer, len(ends)


@pytest.mark.parametrize("text, starts_open, expected", [
    ("<think>\nweigh it</think>\n\nThe answer.", False, ("weigh it", "The answer.", 1)),
    ("weigh it</think>The answer.", True, ("weigh it", "The answer.", 1)),  # only the closing tag
    ("<think></think>Just this.", False, ("", "Just this.", 1)),  # empty reasoning
    ("No reasoning at all.", False, ("", "No reasoning at all.", 0)),
    ("<think>cut off mid-thou", False, ("cut off mid-thou", "", 1)),
    ("a < b </thin and </think>x", True, ("a < b </thin and ", "x", 1)),
])
def test_think_parser_every_split(text, starts_open, expected):
    for i in range(len(text) + 1):
        for j in range(i, len(text) + 1):
            assert _run_think([text[:i], text[i:j], text[j:]], starts_open) == expected, (i, j)
