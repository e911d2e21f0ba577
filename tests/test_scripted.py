"""What the real engine cannot be made to do on demand, replayed by a scripted engine behind a real
uvicorn server: failures mid-stream, and output split at the worst places."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import anthropic
import httpx
import pytest
import uvicorn

from conftest import _free_port
from parley.app import create_app
from parley.services import app_services
from parley.settings import Settings
from support.scripted import ScriptedEngine
from support.sse_util import read_events


def _parsed_by(engine: ScriptedEngine, tool: str | None = None, reasoning: str | None = None) -> ScriptedEngine:
    """The parsers a model is loaded with by --tool-parser / --reasoning-parser (or its config), by name."""
    engine.chat_template.tool_parser, engine.chat_template.reasoning_parser = tool, reasoning
    return engine


MISTRAL_CALL = [b"[TOOL_", b'CALLS]{"name": "get_weather", ', b'"arguments": {"location": "Paris"}}']
THINK_TAGS = [b"<thi", b"nk>hm</think>", b"\n\nHi"]
SCRIPTS = {
    "fails-mid-stream": ScriptedEngine([b"Hello", b" world", b" never"], fail_after=2),
    "split-stop": ScriptedEngine([b"Hel", b"lo ST", b"O", b"P and more"]),
    "split-emoji": ScriptedEngine([b"sea "] + [bytes([b]) for b in "🌊".encode()] + [b"!"]),
    "almost-stop": ScriptedEngine([b"ends with ST"]),
    # ChatML (the scripted engine's template) implies the json tool parser and no reasoning.
    "mistral-call": ScriptedEngine(MISTRAL_CALL),
    "mistral-call-parsed": _parsed_by(ScriptedEngine(MISTRAL_CALL), tool="mistral"),
    "think-tags": ScriptedEngine(THINK_TAGS),
    "think-tags-parsed": _parsed_by(ScriptedEngine(THINK_TAGS), reasoning="think"),
}


@pytest.fixture(scope="module")
def scripted_url() -> Iterator[str]:
    settings = Settings(port=_free_port())
    app = create_app(settings)
    for name, engine in SCRIPTS.items():
        app_services(app).registry.register_engine(name, engine)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{settings.port}"
    server.should_exit = True
    thread.join(10)


def _body(model: str, **kw) -> dict:
    return {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "go"}], **kw}


def test_failure_after_streaming_began_is_an_error_event(scripted_url):
    events = read_events(scripted_url + "/v1/messages", _body("fails-mid-stream", stream=True))
    names = [n for n, _ in events]
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta",
                     "content_block_delta", "error"]
    assert events[-1][1] == {"type": "error", "error": {"type": "api_error", "message": "the engine failed"}}


def test_failure_before_the_response_is_a_500(scripted_url):
    response = httpx.post(scripted_url + "/v1/messages", json=_body("fails-mid-stream"), timeout=30)
    assert response.status_code == 500
    assert response.json() == {"type": "error", "error": {"type": "api_error", "message": "the engine failed"},
                               "request_id": response.headers["request-id"]}
    client = anthropic.Anthropic(base_url=scripted_url, api_key="x", max_retries=0)
    with pytest.raises(anthropic.InternalServerError):
        client.messages.create(**_body("fails-mid-stream"))


@pytest.mark.parametrize("stream", [False, True])
def test_stop_sequence_split_across_pieces(scripted_url, stream):
    client = anthropic.Anthropic(base_url=scripted_url, api_key="x", max_retries=0)
    if stream:
        with client.messages.stream(**_body("split-stop", stop_sequences=["STOP"])) as s:
            deltas = list(s.text_stream)
            message = s.get_final_message()
        assert "".join(deltas) == "Hello " and all("ST" not in d for d in deltas)
    else:
        message = client.messages.create(**_body("split-stop", stop_sequences=["STOP"]))
    assert message.content[0].text == "Hello "
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "STOP")
    assert message.usage.output_tokens == 4  # the piece that completed the stop counts


def test_held_back_prefix_is_released_at_the_end(scripted_url):
    client = anthropic.Anthropic(base_url=scripted_url, api_key="x", max_retries=0)
    message = client.messages.create(**_body("almost-stop", stop_sequences=["STOP"]))
    assert message.content[0].text == "ends with ST" and message.stop_reason == "end_turn"


def test_emoji_split_into_single_bytes_arrives_whole(scripted_url):
    events = read_events(scripted_url + "/v1/messages", _body("split-emoji", stream=True))
    deltas = [d["delta"]["text"] for n, d in events if n == "content_block_delta"]
    assert "".join(deltas) == "sea 🌊!" and "🌊" in deltas


WEATHER = {"name": "get_weather", "description": "Weather", "input_schema": {
    "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}


def test_the_tool_parser_by_name_decides_what_is_a_call(scripted_url):
    client = anthropic.Anthropic(base_url=scripted_url, api_key="x", max_retries=0)
    plain = client.messages.create(**_body("mistral-call", tools=[WEATHER]))
    assert [b.type for b in plain.content] == ["text"] and plain.content[0].text.startswith("[TOOL_CALLS]{")
    parsed = client.messages.create(**_body("mistral-call-parsed", tools=[WEATHER]))
    assert [(b.type, b.name, b.input) for b in parsed.content] == [("tool_use", "get_weather", {"location": "Paris"})]
    assert parsed.stop_reason == "tool_use"


def test_the_reasoning_parser_by_name_decides_what_is_reasoning(scripted_url):
    client = anthropic.Anthropic(base_url=scripted_url, api_key="x", max_retries=0)
    plain = client.messages.create(**_body("think-tags"))
    assert [b.type for b in plain.content] == ["text"] and plain.content[0].text == "<think>hm</think>\n\nHi"
    hidden = client.messages.create(**_body("think-tags-parsed"))  # thinking not asked for: the thoughts are dropped
    assert [(b.type, b.text) for b in hidden.content] == [("text", "Hi")]
    shown = client.messages.create(**_body("think-tags-parsed", max_tokens=2048,
                                           thinking={"type": "enabled", "budget_tokens": 1024}))
    assert [b.type for b in shown.content] == ["thinking", "text"] and shown.content[0].thinking == "hm"
