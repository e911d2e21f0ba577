"""Every error type and status, in the Anthropic envelope, with its request id in the header and the body."""

from __future__ import annotations

import threading

import anthropic
import httpx
import pytest

from conftest import SMOL


def _post(server, body, path="/v1/messages", **kw) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=120, **kw)


def _assert_envelope(response: httpx.Response, status: int, error_type: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == error_type
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert response.headers["request-id"].startswith("req_")
    assert body["request_id"] == response.headers["request-id"]  # the API names it in the body too
    return body["error"]["message"]


BASE = {"model": SMOL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("body, fragment", [
    ({k: v for k, v in BASE.items() if k != "max_tokens"}, "max_tokens"),
    ({**BASE, "max_tokens": "many"}, "max_tokens"),
    ({**BASE, "max_tokens": 0}, "max_tokens"),
    ({**BASE, "messages": [{"role": "robot", "content": "hi"}]}, "role"),
    ({**BASE, "messages": []}, "messages"),
    ({**BASE, "temperature": 3}, "temperature"),
    ({**BASE, "stop_sequences": "stop"}, "stop_sequences"),
    ({**BASE, "system": 42}, "system"),
    ({**BASE, "messages": [{"role": "user", "content": [{"type": "text"}]}]}, "text"),
    ({**BASE, "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}, "image"),
    # Found by the fuzzer: a block whose `type` is not a string was a 500.
    ({**BASE, "messages": [{"role": "user", "content": [{"type": {"x": 1}, "text": "hi"}]}]}, "content"),
])
def test_invalid_requests_are_400(server, body, fragment):
    message = _assert_envelope(_post(server, body), 400, "invalid_request_error")
    assert fragment in message


def test_invalid_json_is_400(server):
    response = httpx.post(server.url + "/v1/messages", content=b"{not json", timeout=30,
                          headers={"content-type": "application/json"})
    _assert_envelope(response, 400, "invalid_request_error")


def test_sdk_raises_typed_errors(client):
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model=SMOL, max_tokens=-1, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("no-such-model")


def test_unknown_route_is_404(server):
    _assert_envelope(httpx.get(server.url + "/v1/nothing-here"), 404, "not_found_error")


def test_success_has_request_id(server):
    assert httpx.get(server.url + "/v1/models").headers["request-id"].startswith("req_")


def test_body_too_large_is_413(start_server):
    small = start_server(max_body_bytes="2000")
    big = {**BASE, "messages": [{"role": "user", "content": "x" * 5000}]}
    _assert_envelope(_post(small, big), 413, "request_too_large")
    chunked = httpx.post(small.url + "/v1/messages", content=iter([b'{"model": "', b"x" * 5000, b'"}']),
                         headers={"content-type": "application/json"}, timeout=30)
    _assert_envelope(chunked, 413, "request_too_large")


def test_prompt_over_the_context_is_400(start_server):
    tiny = start_server(n_ctx="256")
    body = {**BASE, "messages": [{"role": "user", "content": "word " * 400}]}
    message = _assert_envelope(_post(tiny, body), 400, "invalid_request_error")
    assert message.startswith("prompt is too long: ") and message.endswith(" tokens > 255 maximum")
    counted = _post(tiny, {k: v for k, v in body.items() if k != "max_tokens"}, "/v1/messages/count_tokens")
    assert int(message.split()[4]) == counted.json()["input_tokens"]


def test_queue_full_is_529_with_retry_after(start_server):
    busy = start_server("--parallel", "1", max_queue="0")  # one running request, none waiting
    long = {**BASE, "max_tokens": 2000, "stream": True, "temperature": 0,
            "messages": [{"role": "user", "content": "Write a very long essay about the sea."}]}
    started, release = threading.Event(), threading.Event()

    def hold_the_model() -> None:
        with httpx.stream("POST", busy.url + "/v1/messages", json=long, timeout=120) as response:
            for line in response.iter_lines():
                if "content_block_delta" in line:
                    started.set()
                    release.wait(60)
                    break

    holder = threading.Thread(target=hold_the_model)
    holder.start()
    try:
        assert started.wait(60)
        response = _post(busy, BASE)
        with pytest.raises(anthropic.APIStatusError) as info:  # the SDK sees the same, typed
            busy.client().messages.create(**BASE)
    finally:
        release.set()
        holder.join()
    _assert_envelope(response, 529, "overloaded_error")
    assert response.headers["retry-after"]
    assert info.value.status_code == 529 and info.value.body["error"]["type"] == "overloaded_error"
