"""/metrics in Prometheus format, and log lines that carry the request id."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from conftest import SMOL


def _samples(server) -> dict[tuple[str, tuple], float]:
    response = httpx.get(server.url + "/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def test_metrics_count_requests_tokens_and_cache(start_server):
    server = start_server()
    client = server.client()
    system = "You are a terse assistant. " * 20
    for _ in range(2):  # the second one reads its prefix from the cache
        client.messages.create(model=SMOL, max_tokens=5, system=system,
                               messages=[{"role": "user", "content": "Say hi"}])
    httpx.post(server.url + "/v1/messages", json={"model": "nope", "max_tokens": 1, "messages": []})
    m = _samples(server)
    model = (("model", SMOL),)
    assert m[("parley_requests_total", (("route", "/v1/messages"), ("status", "200")))] == 2
    assert m[("parley_requests_total", (("route", "/v1/messages"), ("status", "400")))] == 1
    assert m[("parley_output_tokens_total", model)] == 10
    assert m[("parley_prompt_tokens_total", model)] > 2 * 100
    assert m[("parley_prefix_cache_hit_tokens_total", model)] > 100
    assert m[("parley_time_to_first_token_seconds_count", model)] == 2
    assert m[("parley_decode_tokens_per_second_count", model)] == 2
    assert m[("parley_active_generations", model)] == 0 and m[("parley_queue_depth", model)] == 0
    assert m[("parley_prefix_cache_tokens", model)] > 100
    assert not any(name == "parley_requests_total" and dict(labels)["route"].startswith("/nope")
                   for name, labels in m)


def test_unmatched_routes_share_one_label(server):
    for path in ("/a", "/b/c", "/v1/zzz"):
        httpx.get(server.url + path)
    routes = {dict(labels)["route"] for name, labels in _samples(server) if name == "parley_requests_total"}
    assert "unmatched" in routes and not routes & {"/a", "/b/c", "/v1/zzz"}


def test_log_lines_carry_the_request_id(start_server):
    server = start_server()
    response = httpx.post(server.url + "/v1/messages", json={"model": "missing-model", "max_tokens": 1,
                                                             "messages": [{"role": "user", "content": "x"}]})
    request_id = response.headers["request-id"]
    log = server._log.name
    server.stop()
    lines = [line for line in open(log).read().splitlines() if request_id in line]
    assert any("POST /v1/messages 404" in line for line in lines), lines
