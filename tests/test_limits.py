"""Limits that keep one request from hurting the server: tools, schema depth, wall-clock time, and chat
templates from model files that try to hang or escape the sandbox."""

from __future__ import annotations

import time

import httpx
import pytest

from conftest import SMOL
from support.sse_util import read_events

BODY = {"model": SMOL, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
# Greedy, so that it surely runs past the limits below (sampled, SmolLM2 sometimes ends its story in 2 s).
LONG = {"model": SMOL, "max_tokens": 4000, "temperature": 0,
        "messages": [{"role": "user", "content": "Write an extremely long story about a lighthouse."}]}


def _tool(i: int, schema: dict | None = None) -> dict:
    return {"name": f"tool_{i}", "description": "t", "input_schema": schema or {"type": "object", "properties": {}}}


def _nested(depth: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


def test_too_many_tools_is_400(server):
    response = httpx.post(server.url + "/v1/messages", json={**BODY, "tools": [_tool(i) for i in range(513)]})
    assert response.status_code == 400 and "tools" in response.json()["error"]["message"]
    oai = [{"type": "function", "function": {"name": f"f{i}", "parameters": {"type": "object"}}} for i in range(513)]
    response = httpx.post(server.url + "/v1/chat/completions", json={**BODY, "tools": oai})
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"


def test_schema_nesting_is_bounded(server):
    ok = httpx.post(server.url + "/v1/messages/count_tokens", json={**BODY, "tools": [_tool(0, _nested(10))]})
    assert ok.status_code == 200
    deep = httpx.post(server.url + "/v1/messages", json={**BODY, "tools": [_tool(0, _nested(40))]})
    assert deep.status_code == 400 and "nested deeper" in deep.json()["error"]["message"]


def test_huge_max_tokens_is_bounded_by_the_context(server):
    # Greedy: sampled, SmolLM2 can go on without a full stop until the context's end, past the timeout.
    body = {**BODY, "max_tokens": 10**9, "stop_sequences": ["."], "temperature": 0,
            "messages": [{"role": "user", "content": "Say one short sentence."}]}
    response = httpx.post(server.url + "/v1/messages", json=body, timeout=120)
    assert response.status_code == 200 and response.json()["stop_reason"] in ("end_turn", "stop_sequence")


@pytest.fixture(scope="module")
def impatient(start_server):
    return start_server("--request-timeout", "2", ping_interval="0.5")


def _idle(server) -> dict:
    deadline = time.monotonic() + 10
    state = server.health()["models"][SMOL]
    while (state["active_generations"] or state["admitted"]) and time.monotonic() < deadline:
        time.sleep(0.05)
        state = server.health()["models"][SMOL]
    return state


def test_wall_clock_limit_ends_a_stream_in_band(impatient):
    httpx.post(impatient.url + "/v1/messages", json=BODY, timeout=60)  # loaded: the clock covers generation
    started = time.monotonic()
    events = read_events(impatient.url + "/v1/messages", {**LONG, "stream": True})
    assert 1.5 < time.monotonic() - started < 10
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-1] == "error" and "message_stop" not in names
    assert events[-1][1]["error"]["type"] == "timeout_error"
    state = _idle(impatient)
    assert state["active_generations"] == 0 and state["busy_slots"] == 0  # the generation stopped too


def test_wall_clock_limit_is_504_without_streaming(impatient):
    response = httpx.post(impatient.url + "/v1/messages", json=LONG, timeout=60)
    assert response.status_code == 504
    assert response.json() == {"type": "error", "error": {"type": "timeout_error",
                                                          "message": response.json()["error"]["message"]},
                               "request_id": response.headers["request-id"]}
    oai = httpx.post(impatient.url + "/v1/chat/completions", json=LONG, timeout=60)
    assert oai.status_code == 504 and oai.json()["error"]["type"] == "timeout_error"
    assert _idle(impatient)["active_generations"] == 0


HOSTILE = {
    "smollm2-hang": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "smollm2-escape": "{{ ''.__class__.__mro__[1].__subclasses__() }}{{ messages[0].content }}",
    "smollm2-bloat": "{{ 'x' * 10**10 }}",
}


@pytest.fixture(scope="module")
def hostile_server(start_server, tmp_path_factory):
    from parley.models.packaged import SMOLLM2_135M
    from parley.settings import Settings
    from support.reasoning_model import build_gguf_with_template

    cache = Settings().cache_dir
    target = cache / "test-models" / "hostile"
    for name, template in HOSTILE.items():
        build_gguf_with_template(SMOLLM2_135M.gguf_path(cache), target, name, template)
    return start_server("--models-dir", str(target), render_timeout="1")


@pytest.mark.parametrize("model", sorted(HOSTILE))
def test_hostile_templates_are_a_400_and_the_server_lives_on(hostile_server, model):
    started = time.monotonic()
    response = httpx.post(hostile_server.url + "/v1/messages", json={**BODY, "model": model}, timeout=60)
    assert response.status_code == 400, response.text
    assert "chat template" in response.json()["error"]["message"]
    assert time.monotonic() - started < 30  # includes loading the model
    assert httpx.post(hostile_server.url + "/v1/messages", json=BODY, timeout=60).status_code == 200


def test_an_idle_connection_outlives_the_clients_keep_alive(start_server):
    """httpx (both SDKs) keeps an idle connection 5 s; a server closing its side at the same 5 s races it, and
    a request sent as the server closes is a connection reset (seen in CI). parley keeps it longer."""
    import http.client

    server = start_server()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for _ in range(2):
            connection.request("GET", "/health")  # the same socket both times: a closed one fails here or below
            reply = connection.getresponse()
            assert reply.status == 200 and reply.read()
            time.sleep(6)  # past uvicorn's default keep-alive (5 s)
    finally:
        connection.close()
