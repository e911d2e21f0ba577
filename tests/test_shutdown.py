"""SIGTERM: stop accepting, let running streams finish within the grace period, end the rest with an
in-stream error, free the models, exit 0."""

from __future__ import annotations

import json
import signal
import threading
import time

import httpx

from conftest import SMOL


def _stream(url: str, body: dict, out: list, first: threading.Event) -> None:
    with httpx.stream("POST", url + "/v1/messages", json={**body, "stream": True}, timeout=60) as response:
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                out.append((name, json.loads(line[6:])))
                if name == "content_block_delta":
                    first.set()


def test_sigterm_drains_then_ends_streams_and_exits_zero(start_server):
    server = start_server(shutdown_grace="2")
    server.client().messages.create(model=SMOL, max_tokens=1, messages=[{"role": "user", "content": "hi"}])
    long_events: list = []
    short_events: list = []
    long_started, short_started = threading.Event(), threading.Event()
    long = threading.Thread(target=_stream, args=(server.url, {
        # Greedy: SmolLM2 tells this story to max_tokens (sampled, it once ended within the grace period).
        "model": SMOL, "max_tokens": 4000, "temperature": 0,
        "messages": [{"role": "user", "content": "Write an extremely long story about a lighthouse."}]},
        long_events, long_started))
    long.start()
    assert long_started.wait(30)
    short = threading.Thread(target=_stream, args=(server.url, {
        "model": SMOL, "max_tokens": 15, "messages": [{"role": "user", "content": "Say hello."}]},
        short_events, short_started))
    short.start()
    assert short_started.wait(30)
    server.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    time.sleep(0.5)
    try:
        httpx.get(server.url + "/health", timeout=2)
        accepted = True
    except httpx.HTTPError:
        accepted = False
    assert not accepted  # no new connections once shutdown began
    short.join(30)
    long.join(30)
    assert [n for n, _ in short_events][-1] == "message_stop"  # finished within the grace period
    names = [n for n, _ in long_events]
    assert names[-1] == "error" and "message_stop" not in names, long_events[-3:]
    assert long_events[-1][1]["error"]["type"] == "overloaded_error"
    assert 1.5 < time.monotonic() - signalled
    assert server.proc.wait(timeout=30) == 0
