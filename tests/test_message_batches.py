"""The Message Batches API on real servers through the official SDK: shapes, validation, paging, cancel, delete,
results; a batch that survives a graceful stop and a kill -9; batch requests that yield to interactive ones."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import anthropic
import httpx
import pytest

from conftest import SMOL

GREEDY = {"temperature": 0}


def _params(text: str, max_tokens: int = 4, **kw) -> dict:
    return {"model": SMOL, "max_tokens": max_tokens, "messages": [{"role": "user", "content": text}], **GREEDY, **kw}


def _wait_ended(client: anthropic.Anthropic, batch_id: str, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        time.sleep(0.1)
    raise AssertionError(f"batch {batch_id} did not end")


def _raw_results(server, batch_id: str) -> list[dict]:
    response = httpx.get(f"{server.url}/v1/messages/batches/{batch_id}/results", timeout=30)
    assert response.status_code == 200
    return [json.loads(line) for line in response.text.splitlines()]


def _answered(data_dir: Path, batch_id: str) -> dict[str, str]:
    """custom_id → stored result JSON of the answered requests, read from the server's database."""
    db = sqlite3.connect(f"file:{data_dir / 'batches.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT r.custom_id, r.result FROM requests r JOIN batches b ON b.seq = r.batch_seq "
                          "WHERE b.id = ? AND r.state != 'pending'", (batch_id,)).fetchall()
    except sqlite3.OperationalError:  # created a moment ago: the schema is not visible yet
        return {}
    finally:
        db.close()
    return dict(rows)


def _runner_health(server) -> dict:
    return server.health()["models"].get(SMOL, {})


def _wait_for(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("batch-data")


@pytest.fixture(scope="module")
def bserver(start_server, data_dir):
    return start_server("--parallel", "2", "--data-dir", str(data_dir))


@pytest.fixture(scope="module")
def bclient(bserver) -> anthropic.Anthropic:
    return bserver.client()


def test_a_batch_runs_to_the_apis_shapes(bserver, bclient):
    no_max_tokens = {"model": SMOL, "messages": [{"role": "user", "content": "x"}]}
    requests = [{"custom_id": "hello-1", "params": _params("Say hello.")},
                {"custom_id": "hello_2", "params": _params("Say goodbye.")},
                {"custom_id": "no-max-tokens", "params": no_max_tokens}]
    created = bclient.messages.batches.create(requests=requests)
    assert created.id.startswith("msgbatch_") and created.type == "message_batch"
    assert created.processing_status == "in_progress" and created.results_url is None and created.ended_at is None
    assert created.request_counts.model_dump() == {"processing": 3, "succeeded": 0, "errored": 0, "canceled": 0,
                                                   "expired": 0}
    assert (created.expires_at - created.created_at).total_seconds() == 24 * 3600
    assert created.cancel_initiated_at is None and created.archived_at is None

    ended = _wait_ended(bclient, created.id)
    assert ended.request_counts.model_dump() == {"processing": 0, "succeeded": 2, "errored": 1, "canceled": 0,
                                                 "expired": 0}
    assert ended.ended_at >= ended.created_at and ended.expires_at == created.expires_at
    # results_url lives under the base URL the client used, with or without /anthropic.
    assert ended.results_url == f"{bserver.url}/anthropic/v1/messages/batches/{created.id}/results"
    root = bserver.client(prefix="")
    assert root.messages.batches.retrieve(created.id).results_url == (
        f"{bserver.url}/v1/messages/batches/{created.id}/results")
    for client in (bclient, root):
        results = {r.custom_id: r.result for r in client.messages.batches.results(created.id)}
        assert sorted(results) == ["hello-1", "hello_2", "no-max-tokens"]
        for custom_id in ("hello-1", "hello_2"):
            message = results[custom_id].message
            assert results[custom_id].type == "succeeded" and message.id.startswith("msg_")
            assert message.role == "assistant" and message.model == SMOL and message.content[0].type == "text"
            assert message.usage.output_tokens <= 4 and message.usage.input_tokens > 0
        assert results["no-max-tokens"].type == "errored"
        assert results["no-max-tokens"].error.error.type == "invalid_request_error"


@pytest.mark.parametrize("params", [
    {"model": SMOL, "messages": [{"role": "user", "content": "x"}]},  # no max_tokens
    {"model": SMOL, "max_tokens": 4, "messages": [{"role": "user", "content": [{"type": "audio"}]}]},
    {"model": "no-such-model", "max_tokens": 4, "messages": [{"role": "user", "content": "x"}]},
], ids=["missing-field", "bad-block", "unknown-model"])
def test_an_invalid_request_errors_as_v1_messages_would(bserver, bclient, params):
    direct = httpx.post(bserver.url + "/v1/messages", json=params, timeout=60)
    assert direct.status_code in (400, 404)
    batch = bclient.messages.batches.create(requests=[{"custom_id": "only", "params": params}])
    _wait_ended(bclient, batch.id)
    (line,) = _raw_results(bserver, batch.id)
    # The same envelope, less the request id: no HTTP request of its own carried the batch's one.
    expected = {k: v for k, v in direct.json().items() if k != "request_id"}
    assert line == {"custom_id": "only", "result": {"type": "errored", "error": expected}}


def test_stream_true_in_a_batch_request_is_errored(bserver, bclient):
    batch = bclient.messages.batches.create(requests=[{"custom_id": "s", "params": _params("hi", stream=True)}])
    _wait_ended(bclient, batch.id)
    (line,) = _raw_results(bserver, batch.id)
    error = line["result"]["error"]["error"]
    assert line["result"]["type"] == "errored" and error["type"] == "invalid_request_error"
    assert error["message"].startswith("stream:")


@pytest.mark.parametrize("body, message", [
    ({"requests": {"custom_id": "a", "params": {}}}, "requests: Input should be a valid list"),
    ({"requests": []}, "requests: List should have at least 1 item"),
    ({}, "requests: Field required"),
    ({"requests": [{"params": {}}]}, "requests.0.custom_id: Field required"),
    ({"requests": [{"custom_id": "a b", "params": {}}]}, "requests.0.custom_id: String should match pattern"),
    ({"requests": [{"custom_id": "x" * 65, "params": {}}]}, "requests.0.custom_id: String should match pattern"),
    ({"requests": [{"custom_id": "a", "params": {}}, {"custom_id": "a", "params": {}}]},
     "requests.1.custom_id: duplicate custom_id 'a'"),
    ({"requests": [{"custom_id": "a", "params": "text"}]}, "requests.0.params: Input should be a valid dictionary"),
    ({"requests": [{"custom_id": f"r{i}", "params": {}} for i in range(100_001)]},
     "requests: List should have at most 100000 items"),
], ids=["not-a-list", "empty", "missing", "no-custom-id", "bad-custom-id", "long-custom-id", "duplicate",
        "params-not-object", "too-many"])
def test_a_malformed_batch_is_a_400(bserver, body, message):
    before = httpx.get(bserver.url + "/v1/messages/batches", params={"limit": 1000}, timeout=30).json()["data"]
    response = httpx.post(bserver.url + "/v1/messages/batches", json=body, timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"].startswith(message), error
    after = httpx.get(bserver.url + "/v1/messages/batches", params={"limit": 1000}, timeout=30).json()["data"]
    assert after == before  # nothing was stored


def test_a_body_that_is_not_json_is_a_400(bserver):
    response = httpx.post(bserver.url + "/v1/messages/batches", content=b'{"requests": [', timeout=30)
    assert response.status_code == 400
    assert response.json()["error"] == {"type": "invalid_request_error", "message": "Request body is not valid JSON."}


def test_the_store_expires_ends_and_forgets_batches(tmp_path):
    """What takes a day or a month to happen on a server: the store's own clock, moved forward."""
    from parley.services.batches.store import EXPIRES_AFTER, BatchStore

    store = BatchStore(tmp_path)
    batch = store.create([("a", {}), ("b", {}), ("c", {})], now=1000.0)
    assert store.finish(batch.seq, 0, "succeeded", '{"type":"succeeded"}')
    assert store.sweep({}, now=1000.0 + EXPIRES_AFTER - 1) == []  # not yet
    assert store.sweep({}, now=1000.0 + EXPIRES_AFTER) == [batch.seq]
    ended = store.get(batch.id)
    assert ended.status == "ended" and ended.counts == {"succeeded": 1, "errored": 0, "canceled": 0, "expired": 2}
    assert not store.finish(batch.seq, 1, "succeeded", "{}")  # answered once: by the expiry
    assert [cid for _, cid, _ in store.results(batch.seq)] == ["a", "b", "c"]
    assert store.purge(created_before=1000.0) == 0 and store.purge(created_before=1000.1) == 1
    assert store.get(batch.id) is None and store.results(batch.seq) == []


def test_unknown_batch_is_a_404(bclient):
    for call in (bclient.messages.batches.retrieve, bclient.messages.batches.cancel,
                 bclient.messages.batches.delete):
        with pytest.raises(anthropic.NotFoundError) as caught:
            call("msgbatch_nonexistent")
        assert caught.value.body["error"]["type"] == "not_found_error"


def test_listing_pages_newest_first(bclient):
    bad = {"model": SMOL, "messages": []}  # errored at once: nothing to generate
    ids = [bclient.messages.batches.create(requests=[{"custom_id": "x", "params": bad}]).id for _ in range(3)]
    newest = ids[::-1]
    first = bclient.messages.batches.list(limit=2)
    assert [b.id for b in first.data] == newest[:2] and first.has_more
    assert first.first_id == newest[0] and first.last_id == newest[1]
    after = bclient.messages.batches.list(limit=2, after_id=newest[1])
    assert after.data[0].id == newest[2]
    before = bclient.messages.batches.list(limit=2, before_id=newest[2])
    assert [b.id for b in before.data] == newest[:2] and not before.has_more
    assert [b.id for b in bclient.messages.batches.list(limit=1, before_id=newest[1]).data] == newest[:1]
    every = [b.id for b in bclient.messages.batches.list(limit=1)]  # the SDK follows after_id page by page
    assert every[:3] == newest and len(every) == len(set(every))
    with pytest.raises(anthropic.BadRequestError):
        bclient.messages.batches.list(after_id="msgbatch_nonexistent")
    with pytest.raises(anthropic.BadRequestError):
        bclient.messages.batches.list(limit=1001)


def test_cancel_then_delete(bserver, bclient):
    requests = [{"custom_id": f"c{i}", "params": _params("Count from 1 to 500.", 64)} for i in range(5)]
    batch = bclient.messages.batches.create(requests=requests)
    _wait_for(lambda: _runner_health(bserver).get("batch_admitted", 0) >= 1, "a running batch request")
    with pytest.raises(anthropic.BadRequestError, match="cannot be deleted while it is in_progress"):
        bclient.messages.batches.delete(batch.id)
    canceling = bclient.messages.batches.cancel(batch.id)
    assert canceling.cancel_initiated_at is not None
    assert canceling.processing_status in ("canceling", "ended")
    ended = _wait_ended(bclient, batch.id)
    counts = ended.request_counts
    assert counts.canceled >= 3 and counts.canceled + counts.succeeded == 5 and counts.processing == 0
    assert bclient.messages.batches.cancel(batch.id).processing_status == "ended"  # no change once ended
    results = list(bclient.messages.batches.results(batch.id))
    assert sorted(r.custom_id for r in results) == [f"c{i}" for i in range(5)]
    assert sum(r.result.type == "canceled" for r in results) == counts.canceled

    deleted = bclient.messages.batches.delete(batch.id)
    assert deleted.id == batch.id and deleted.type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        bclient.messages.batches.retrieve(batch.id)
    assert batch.id not in [b.id for b in bclient.messages.batches.list(limit=1000)]


def _first_token_after(url: str, body: dict) -> tuple[float, float]:
    """Seconds to the first text delta, and to the end, of one streamed request."""
    start = time.perf_counter()
    first = 0.0
    with httpx.stream("POST", url + "/v1/messages", json={**body, "stream": True}, timeout=300) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if not first and line.startswith("data: ") and '"content_block_delta"' in line:
                first = time.perf_counter() - start
    assert first
    return first, time.perf_counter() - start


def test_an_interactive_request_preempts_a_batch_that_fills_the_slots(bserver, bclient, data_dir):
    interactive = _params("What is the capital of France?", 2)
    _first_token_after(bserver.url, interactive)  # the model is loaded and this prompt is cached
    idle_ttft, _ = _first_token_after(bserver.url, interactive)
    preemptions = _runner_health(bserver)["preemptions"]
    # Two long generations for two slots: without preemption the interactive request would wait for one.
    # One prompt for both: greedy, it runs to max_tokens (asserted below; a suffix such as "(0)" can end it early).
    requests = [{"custom_id": f"long{i}", "params": _params("Count from 1 to 500.", 24)} for i in range(2)]
    batch = bclient.messages.batches.create(requests=requests)
    _wait_for(lambda: _runner_health(bserver).get("active_generations") == 2, "the batch in both slots")

    busy_ttft, _ = _first_token_after(bserver.url, interactive)
    assert _answered(data_dir, batch.id) == {}  # the whole answer came while the batch was still generating
    assert bclient.messages.batches.retrieve(batch.id).processing_status == "in_progress"
    assert _runner_health(bserver)["preemptions"] == preemptions + 1
    print(f"interactive TTFT: idle {idle_ttft * 1000:.0f} ms, with the batch in every slot {busy_ttft * 1000:.0f} ms")

    ended = _wait_ended(bclient, batch.id)
    assert ended.request_counts.succeeded == 2
    for result in bclient.messages.batches.results(batch.id):  # the preempted request ran again, in full
        assert result.result.message.stop_reason == "max_tokens" and result.result.message.usage.output_tokens == 24


def test_a_batch_survives_a_graceful_stop_and_a_kill(start_server, tmp_path):
    """Stopped with SIGTERM, its running requests stay pending; killed with -9 mid-batch, what was committed
    stays and the rest runs after the restart: every custom_id answered exactly once."""
    n = 8
    args = ("--parallel", "2", "--data-dir", str(tmp_path))
    requests = [{"custom_id": f"k{i}", "params": _params("Count from 1 to 500.", 16)} for i in range(n)]

    first = start_server(*args)
    batch_id = first.client().messages.batches.create(requests=requests).id
    _wait_for(lambda: len(_answered(tmp_path, batch_id)) >= 1, "a first result")
    first.stop()  # SIGTERM: the worker stops; nothing running is marked failed
    kept = _answered(tmp_path, batch_id)
    assert 1 <= len(kept) < n, "the batch ended before the stop: make its requests longer"
    assert all(json.loads(r)["type"] == "succeeded" for r in kept.values())

    second = start_server(*args)  # resumes on its own, at start-up
    _wait_for(lambda: len(_answered(tmp_path, batch_id)) > len(kept), "a result after the restart")
    second.proc.kill()  # kill -9, mid-batch
    second.proc.wait()
    killed = _answered(tmp_path, batch_id)
    assert len(killed) < n, "the batch ended before the kill: make its requests longer"
    assert killed.items() >= kept.items()

    third = start_server(*args)
    client = third.client()
    ended = _wait_ended(client, batch_id)
    assert ended.request_counts.succeeded == n
    lines = _raw_results(third, batch_id)
    assert sorted(line["custom_id"] for line in lines) == sorted(r["custom_id"] for r in requests)
    for line in lines:  # answers committed before the kill were kept, not computed again
        if line["custom_id"] in killed:
            assert line["result"] == json.loads(killed[line["custom_id"]])
    assert "batch request" not in third.log_text()  # no failure logged by the worker


def test_batch_bodies_may_exceed_the_request_size_limit(start_server, tmp_path):
    """The 256 MB batch limit applies to the batch route; other routes keep --max-body-bytes."""
    server = start_server("--data-dir", str(tmp_path), max_body_bytes="2000", max_batch_bytes="20000")
    big = [{"custom_id": f"b{i}", "params": {"model": SMOL, "messages": []}} for i in range(60)]  # ~4 kB
    assert httpx.post(server.url + "/v1/messages/batches", json={"requests": big}, timeout=30).status_code == 200
    huge = [{"custom_id": f"b{i}", "params": {"model": SMOL, "messages": []}} for i in range(400)]  # ~28 kB
    response = httpx.post(server.url + "/v1/messages/batches", json={"requests": huge}, timeout=30)
    assert response.status_code == 413 and response.json()["error"]["type"] == "request_too_large"
    message = httpx.post(server.url + "/v1/messages", json=_params("x" * 3000), timeout=30)
    assert message.status_code == 413
