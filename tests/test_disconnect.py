"""A client that leaves stops its generation within a decode step, and the next request runs."""

from __future__ import annotations

import threading
import time

import httpx

from conftest import SMOL


def test_disconnect_stops_generation_and_frees_the_model(server, client):
    client.messages.create(model=SMOL, max_tokens=1, messages=[{"role": "user", "content": "hi"}])  # loaded
    before = server.wait_idle(SMOL)["tokens_generated"]
    body = {"model": SMOL, "max_tokens": 4000, "stream": True, "temperature": 0.8,
            "messages": [{"role": "user", "content": "Write an extremely long story about a lighthouse."}]}
    queued: dict = {}

    def queued_request() -> None:
        queued["message"] = client.messages.create(model=SMOL, max_tokens=3,
                                                   messages=[{"role": "user", "content": "Say hi"}])

    waiter = threading.Thread(target=queued_request)
    with httpx.stream("POST", server.url + "/v1/messages", json=body, timeout=60) as response:
        deltas = 0
        for line in response.iter_lines():
            if line.startswith("event: content_block_delta"):
                deltas += 1
                if deltas == 1:
                    waiter.start()  # queues behind the running stream
                if deltas == 5:
                    break  # leaving the block closes the connection mid-stream
    waiter.join(timeout=60)
    assert queued["message"].usage.output_tokens == 3  # the queued request got the model
    after = server.wait_idle(SMOL)["tokens_generated"]
    time.sleep(0.5)
    assert server.health()["models"][SMOL]["tokens_generated"] == after  # nothing runs on
    assert after - before < 1000  # the abandoned stream did not run to its 4000 tokens


def test_non_streaming_disconnect_stops_generation(server, client):
    client.messages.create(model=SMOL, max_tokens=1, messages=[{"role": "user", "content": "hi"}])
    before = server.wait_idle(SMOL)["tokens_generated"]
    body = {"model": SMOL, "max_tokens": 4000, "temperature": 0.8,
            "messages": [{"role": "user", "content": "Write an extremely long story about a lighthouse."}]}
    try:
        httpx.post(server.url + "/v1/messages", json=body, timeout=1.5)
    except httpx.TimeoutException:
        pass
    after = server.wait_idle(SMOL)["tokens_generated"]
    assert after - before < 1000
