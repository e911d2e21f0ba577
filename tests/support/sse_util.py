"""Reading a raw SSE stream into (event, data) pairs, to assert exact wire behaviour."""

from __future__ import annotations

import json

import httpx


def read_events(url: str, body: dict | None = None, timeout: float = 300, method: str = "POST",
                params: dict | None = None) -> list[tuple[str, dict]]:
    """`event:`/`data:` pairs; comments (keep-alives) are skipped, and every event must name its type twice."""
    events = []
    with httpx.stream(method, url, json=body, params=params, timeout=timeout) as response:
        assert response.status_code == 200, response.read()[:1000]
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                assert line != "data: [DONE]", "these APIs end their streams without [DONE]"
                data = json.loads(line[len("data: "):])
                assert data["type"] == name, (name, data)  # every event names itself twice, identically
                events.append((name, data))
                name = None
    return events
