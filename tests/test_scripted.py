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

SCRIPTS = {
    "fails-mid-stream": ScriptedEngine([b"Hello", b" world", b" never"], fail_after=2),
    "split-stop": ScriptedEngine([b"Hel", b"lo ST", b"O", b"P and more"]),
    "split-emoji": ScriptedEngine([b"sea "] + [bytes([b]) for b in "🌊".encode()] + [b"!"]),
    "almost-stop": ScriptedEngine([b"ends with ST"]),
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
