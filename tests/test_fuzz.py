"""Schemathesis against parley's own OpenAPI document, on a real server: whatever a client sends (valid by the
schema or not), no 5xx, and every rejection comes in the error envelope of the route's API. A fixed seed and a
bounded number of examples keep CI short; `bench/fuzz.sh` runs 1,000 examples per operation and mode."""

from __future__ import annotations

import os
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

EXAMPLES = int(os.environ.get("PARLEY_FUZZ_EXAMPLES", "60"))


@pytest.fixture(scope="module")
def fuzz_schema(start_server):
    # Offline: an `org/repo` model id must be a quick 404, not a hub probe per example.
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        server = start_server("--parallel", "1")
    finally:
        if previous is None:
            del os.environ["HF_HUB_OFFLINE"]
        else:
            os.environ["HF_HUB_OFFLINE"] = previous
    return schemathesis.openapi.from_url(server.url + "/openapi.json")


def _assert_envelope(path: str, body: dict) -> None:
    if path.startswith("/openai/") or path.endswith("/chat/completions"):
        error = body["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"], body
    else:
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body
        assert body["error"]["message"], body


def test_no_server_errors_and_typed_rejections(fuzz_schema):
    sent: list[int] = []
    operations = [result.ok() for result in fuzz_schema.get_all_operations()]
    assert len(operations) >= 10  # every route of both APIs, under each prefix

    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    for operation, mode in ((op, mode) for op in operations for mode in modes):
        @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(mode))
        def check(case) -> None:
            response = case.call(timeout=120)
            sent.append(response.status_code)
            assert response.status_code < 500, (case.path, response.status_code, response.text[:500])
            if 400 <= response.status_code < 500:
                _assert_envelope(case.path, response.json())
                assert "Traceback" not in response.text and "site-packages" not in response.text

        try:
            check()
        except Unsatisfiable:  # nothing to get wrong: an operation without parameters or body
            assert mode == schemathesis.GenerationMode.NEGATIVE
    print("fuzz:", len(sent), "requests,", dict(Counter(sent)))
    assert len(sent) >= min(1000, EXAMPLES * 10), len(sent)
