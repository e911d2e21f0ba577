"""Reading a raw SSE stream into (event, data) pairs, to assert exact wire behaviour."""

from __future__ import annotations

import json

import httpx


def read_events(url: str, body: dict, timeout: float = 300) -> list[tuple[str, dict]]:
    events = []
    with httpx.stream("POST", url, json=body, timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: "):])
                assert data["type"] == name  # every event names itself twice, identically
                events.append((name, data))
    return events
