"""The Responses API's stored state: retrieve, replay of the event stream, input items, delete,
`previous_response_id`, `store: false`, background responses and cancel, persistence across a restart, and
`POST /v1/responses/input_tokens`, with the official `openai` SDK against the real SmolLM2."""

from __future__ import annotations

import time

import httpx
import openai
import pydantic
import pytest
from openai.types.responses import Response, ResponseItemList

from conftest import SMOL
from test_responses import _assert_error, _strict, check_stream, read_sse

GREEDY = {"temperature": 0}
ITEMS = pydantic.TypeAdapter(ResponseItemList)
TIME = {"type": "function", "name": "get_time", "description": "Get the current local time in a time zone.",
        "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}


@pytest.fixture(scope="module")
def sserver(start_server):
    return start_server("--parallel", "2")


def _client(server, prefix: str = "/v1") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + prefix, api_key="not-needed", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def client(sserver) -> openai.OpenAI:
    return _client(sserver)


def _get(server, path: str, **params) -> httpx.Response:
    return httpx.get(server.url + path, params=params, timeout=60)


def _wait_done(client: openai.OpenAI, response_id: str, timeout: float = 90) -> Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.responses.retrieve(response_id)
        if response.status not in ("queued", "in_progress"):
            return response
        time.sleep(0.2)
    raise AssertionError(f"{response_id} still {response.status} after {timeout:g} s")


def test_a_stored_response_is_retrieved_as_created(sserver, client):
    created = httpx.post(sserver.url + "/v1/responses", timeout=120, json={
        "model": SMOL, "input": "Say hi.", "max_output_tokens": 16, "metadata": {"case": "retrieve"}, **GREEDY})
    assert created.status_code == 200, created.text
    body = created.json()
    stored = _get(sserver, f"/v1/responses/{body['id']}")
    assert stored.status_code == 200 and stored.json() == body
    assert _get(sserver, f"/openai/v1/responses/{body['id']}").json() == body
    assert client.responses.retrieve(body["id"]).model_dump() == _strict(body).model_dump()


def test_retrieve_with_stream_replays_the_events(sserver, client):
    events = read_sse("POST", sserver.url + "/v1/responses", {
        "model": SMOL, "input": "Name a colour.", "max_output_tokens": 16, "stream": True, **GREEDY})
    final, parsed = check_stream(events)
    url = f"{sserver.url}/v1/responses/{final.id}"
    replay = read_sse("GET", url, params={"stream": "true"})
    replayed, _ = check_stream(replay)
    assert replay[-1][1]["response"] == events[-1][1]["response"] and replayed.output_text == final.output_text
    # a client that lost its connection after the third text delta resumes from its sequence number
    deltas = [e for e in parsed if e.type == "response.output_text.delta"]
    assert len(deltas) > 3
    cursor = deltas[2].sequence_number
    later = read_sse("GET", url, params={"stream": "true", "starting_after": str(cursor)})
    assert later and all(data["sequence_number"] > cursor for _, data in later)
    resumed = "".join(e.delta for e in deltas[:3]) + "".join(
        data["delta"] for name, data in later if name == "response.output_text.delta")
    assert resumed == final.output_text
    assert [data for _, data in replay] == [data for _, data in events]  # the very events, as streamed
    sdk_events = list(client.responses.retrieve(final.id, stream=True))
    assert [e.type for e in sdk_events] == [name for name, _ in events]
    with client.responses.stream(response_id=final.id) as stream:  # the SDK's own helper resumes it too
        last = list(stream)[-1]  # (its get_final_response() takes only `completed`; 16 tokens may be cut)
    assert last.response.output_text == final.output_text


def test_input_items_page(sserver, client):
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"Message number {i}."} for i in range(5)]
    r = client.responses.create(model=SMOL, input=turns, max_output_tokens=16, **GREEDY)

    def texts(items):
        return [item.content[0].text for item in items]

    raw = _get(sserver, f"/v1/responses/{r.id}/input_items", order="asc")
    ITEMS.validate_python(raw.json())  # each item as the SDK types define it (content as a list of parts)
    listed = client.responses.input_items.list(r.id)  # newest first, as the API's default order
    assert listed.object == "list" and texts(listed.data) == [t["content"] for t in reversed(turns)]
    asc = client.responses.input_items.list(r.id, order="asc")
    assert texts(asc.data) == [t["content"] for t in turns] and not asc.has_more
    assert [item.role for item in asc.data] == [t["role"] for t in turns]
    assert all(item.type == "message" and item.id for item in asc.data)
    assert len({item.id for item in asc.data}) == 5
    assert asc.first_id == asc.data[0].id and asc.last_id == asc.data[-1].id
    page = client.responses.input_items.list(r.id, order="asc", limit=2)
    assert [i.id for i in page.data] == [i.id for i in asc.data[:2]] and page.has_more
    assert page.first_id == page.data[0].id and page.last_id == page.data[1].id
    after = client.responses.input_items.list(r.id, order="asc", limit=2, after=page.last_id)
    assert [i.id for i in after.data] == [i.id for i in asc.data[2:4]] and after.has_more
    every = [item.id for item in client.responses.input_items.list(r.id, order="asc", limit=2)]  # the SDK pages
    assert every == [i.id for i in asc.data]
    one = client.responses.create(model=SMOL, input="Just a string.", max_output_tokens=16, **GREEDY)
    (item,) = client.responses.input_items.list(one.id).data
    assert item.role == "user" and item.content[0].type == "input_text" and item.content[0].text == "Just a string."


def test_delete_then_everything_is_a_404(sserver, client):
    r = client.responses.create(model=SMOL, input="Hi", max_output_tokens=16, **GREEDY)
    assert client.responses.delete(r.id) is None
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list(r.id)
    _assert_error(_get(sserver, f"/v1/responses/{r.id}"), 404)
    _assert_error(_get(sserver, "/v1/responses/resp_doesnotexist"), 404)
    _assert_error(httpx.post(f"{sserver.url}/v1/responses/resp_doesnotexist/cancel", timeout=30), 404)


def test_previous_response_id_continues_over_the_cached_prefix(sserver, client):
    first = client.responses.create(model=SMOL, input="My name is Ada. Please remember it.",
                                    max_output_tokens=16, **GREEDY)
    second = client.responses.create(model=SMOL, previous_response_id=first.id, input="What is my name?",
                                     max_output_tokens=16, **GREEDY)
    assert second.previous_response_id == first.id and second.status in ("completed", "incomplete")
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert second.usage.input_tokens_details.cached_tokens > 0
    counted = client.responses.input_tokens.count(model=SMOL, previous_response_id=first.id,
                                                  input="What is my name?")
    assert counted.input_tokens == second.usage.input_tokens
    missing = httpx.post(sserver.url + "/v1/responses", timeout=60, json={
        "model": SMOL, "input": "Hi", "previous_response_id": "resp_doesnotexist", "max_output_tokens": 16})
    assert missing.status_code in (400, 404)
    _assert_error(missing, missing.status_code)


def test_store_false_is_not_retrievable(sserver, client):
    r = client.responses.create(model=SMOL, input="Hi", max_output_tokens=16, store=False, **GREEDY)
    assert r.status in ("completed", "incomplete")
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    follow = httpx.post(sserver.url + "/v1/responses", timeout=60, json={
        "model": SMOL, "input": "Hi", "previous_response_id": r.id, "max_output_tokens": 16})
    assert follow.status_code in (400, 404)
    _assert_error(follow, follow.status_code)


def test_background_response_is_polled_to_its_end(sserver, client):
    r = client.responses.create(model=SMOL, input="Say hello.", max_output_tokens=32, background=True, **GREEDY)
    assert r.status in ("queued", "in_progress") and r.background is True
    done = _wait_done(client, r.id)
    assert done.status in ("completed", "incomplete") and done.output_text and done.usage.output_tokens > 0
    assert done.background is True
    _assert_error(httpx.post(sserver.url + "/v1/responses", timeout=60, json={
        "model": SMOL, "input": "Hi", "background": True, "store": False}), 400)


def test_cancel_a_background_response(sserver, client):
    r = client.responses.create(model=SMOL, input="Write a very long story about the sea.", background=True,
                                max_output_tokens=2000, **GREEDY)
    cancelled = client.responses.cancel(r.id)
    assert cancelled.id == r.id and cancelled.status == "cancelled"
    sserver.wait_idle(SMOL, timeout=15)  # the generation stopped
    assert client.responses.retrieve(r.id).status == "cancelled"
    plain = client.responses.create(model=SMOL, input="Hi", max_output_tokens=16, **GREEDY)
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(plain.id)


def test_stored_state_survives_a_restart(start_server, tmp_path):
    data = tmp_path / "data"
    first = start_server("--data-dir", str(data))
    created = _client(first).responses.create(model=SMOL, input=[{"role": "user", "content": "Hello there."}],
                                              max_output_tokens=16, metadata={"case": "restart"}, **GREEDY)
    before = _get(first, f"/v1/responses/{created.id}").json()
    items_before = _get(first, f"/v1/responses/{created.id}/input_items").json()
    first.stop()
    second = start_server("--data-dir", str(data))
    after = _get(second, f"/v1/responses/{created.id}")
    assert after.status_code == 200 and after.json() == before
    assert _get(second, f"/v1/responses/{created.id}/input_items").json() == items_before
    follow = _client(second).responses.create(model=SMOL, previous_response_id=created.id, input="And again?",
                                              max_output_tokens=16, **GREEDY)
    assert follow.previous_response_id == created.id and follow.usage.input_tokens > before["usage"]["input_tokens"]


def test_input_tokens_count_matches_the_usage(sserver, client):
    body = {"model": SMOL, "instructions": "Be brief.", "tools": [TIME],
            "input": [{"role": "user", "content": "What time is it in Tokyo?"}]}
    counted = client.responses.input_tokens.count(**body)
    assert counted.object == "response.input_tokens" and counted.input_tokens > 0
    created = client.responses.create(**body, max_output_tokens=16, **GREEDY)
    assert counted.input_tokens == created.usage.input_tokens
    raw = httpx.post(sserver.url + "/openai/v1/responses/input_tokens", json=body, timeout=60)
    assert raw.status_code == 200 and raw.json() == {"object": "response.input_tokens",
                                                     "input_tokens": counted.input_tokens}
    _assert_error(httpx.post(sserver.url + "/v1/responses/input_tokens", json={"model": SMOL, "input": 5},
                             timeout=60), 400)
