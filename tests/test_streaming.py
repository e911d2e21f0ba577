"""Exact SSE event order, indices and payloads, read from the raw stream."""

from __future__ import annotations

from conftest import QWEN, SMOL
from support.sse_util import read_events


def _body(**kw) -> dict:
    return {"model": SMOL, "max_tokens": 12, "stream": True, "temperature": 0,
            "messages": [{"role": "user", "content": "Tell me about the moon."}], **kw}


def test_event_order_and_indices(server):
    events = read_events(server.url + "/anthropic/v1/messages", _body())
    names = [n for n, _ in events if n != "ping"]
    assert names[:2] == ["message_start", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[2:-3]) == {"content_block_delta"}
    all_names = [n for n, _ in events]
    assert all_names[all_names.index("content_block_start") + 1] == "ping"

    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["role"] == "assistant"
    assert start["id"].startswith("msg_") and start["usage"]["input_tokens"] > 5
    block = dict(events)["content_block_start"]
    assert block == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    deltas = [d for n, d in events if n == "content_block_delta"]
    assert all(d["index"] == 0 and d["delta"]["type"] == "text_delta" and d["delta"]["text"] for d in deltas)
    assert dict(events)["content_block_stop"] == {"type": "content_block_stop", "index": 0}
    delta = dict(events)["message_delta"]
    assert delta["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 12


def test_stream_and_non_stream_agree(server, client):
    events = read_events(server.url + "/v1/messages", _body())
    streamed = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    message = client.messages.create(**{k: v for k, v in _body().items() if k not in ("stream", "temperature")},
                                     extra_body={"temperature": 0})
    assert message.content[0].text == streamed
    assert message.usage.input_tokens == events[0][1]["message"]["usage"]["input_tokens"]


def test_multibyte_text_arrives_intact(client):
    with client.messages.stream(
        model=QWEN, max_tokens=40, extra_body={"temperature": 0},
        messages=[{"role": "user", "content": "Write the word 你好 and then three ocean emojis."}],
    ) as stream:
        deltas = list(stream.text_stream)
        final = stream.get_final_message()
    text = "".join(deltas)
    assert "\ufffd" not in text
    assert any(ord(c) > 0xFFFF for c in text)  # an emoji: 4 UTF-8 bytes, several tokens
    assert "你好" in text
    assert final.content[0].text == text


def test_pings_keep_a_slow_prefill_alive(server):
    """A long prompt takes seconds to prefill; pings (every 0.5 s on this server) fill the silence."""
    long_prompt = "Summarise this. " + " ".join(f"Line {i}: the quick brown fox jumps." for i in range(100))
    events = read_events(server.url + "/v1/messages", _body(max_tokens=2, messages=[
        {"role": "user", "content": long_prompt}]))
    names = [n for n, _ in events]
    assert names[0] == "message_start"
    before_content = names[1 : names.index("content_block_start")]
    assert before_content and set(before_content) == {"ping"}
