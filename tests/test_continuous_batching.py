"""Continuous batching and the prompt-prefix cache, on real servers: answers, usage and slots."""

from __future__ import annotations

import threading
import time

import anthropic
import httpx
import openai
import pytest

from conftest import QWEN, SMOL
from support.sse_util import read_events

GREEDY = {"temperature": 0}
SYSTEM = ("You are a careful assistant for a geography quiz. Answer with a single word, the name asked for, "
          "and nothing else: no punctuation, no explanation, no greeting.")
BILLING = "x-anthropic-billing-header: cc_version=2.1.0; cc_entrypoint=cli; cch={};"


@pytest.fixture(scope="module")
def fresh(start_server):
    """A server of its own, so the first request is known to start from an empty cache."""
    return start_server("--parallel", "4", ping_interval="0.5")


def _ask(client, question: str, system=SYSTEM, **kw):
    return client.messages.create(model=QWEN, max_tokens=12, system=system, extra_body=GREEDY,
                                  messages=[{"role": "user", "content": question}], **kw)


def test_cached_answer_equals_cold_and_usage_tells(fresh):
    client = fresh.client()
    cold = _ask(client, "What is the capital of France?")
    total = cold.usage.input_tokens + cold.usage.cache_read_input_tokens
    assert cold.usage.cache_read_input_tokens == 0 and "Paris" in cold.content[0].text
    warm = _ask(client, "What is the capital of France?")
    assert warm.content[0].text == cold.content[0].text
    # Everything but the last prompt token (whose logits start the answer) came from the cache.
    assert warm.usage.cache_read_input_tokens == total - 1 and warm.usage.input_tokens == 1
    assert warm.usage.cache_creation_input_tokens == 0
    other = _ask(client, "What is the capital of Italy?")
    assert 20 < other.usage.cache_read_input_tokens < total - 1  # the system prompt, not the question
    assert other.usage.input_tokens + other.usage.cache_read_input_tokens == client.messages.count_tokens(
        model=QWEN, system=SYSTEM, messages=[{"role": "user", "content": "What is the capital of Italy?"}]
    ).input_tokens


def test_streamed_usage_reports_cache_in_start_and_delta(fresh):
    body = {"model": QWEN, "max_tokens": 5, "stream": True, "system": SYSTEM, "temperature": 0,
            "messages": [{"role": "user", "content": "What is the capital of Spain?"}]}
    for _ in range(2):
        events = read_events(fresh.url + "/v1/messages", body)
        start = events[0][1]["message"]["usage"]
        delta = next(data for name, data in events if name == "message_delta")["usage"]
        assert start["cache_read_input_tokens"] == delta["cache_read_input_tokens"]
        assert start["input_tokens"] == delta["input_tokens"]
    assert start["input_tokens"] == 1 and start["cache_read_input_tokens"] > 20  # the repeat is all cached


def test_idle_slots_are_parked_in_host_memory_and_loaded_back(fresh):
    """While another request runs, an idle slot's cells leave the KV cache (each decode step walks every cell
    in use, masked or not) and its state waits in host memory; a prompt that continues it loads it back."""
    client = fresh.client()
    question = "Which city is the capital of Japan? " + "Take your time. " * 60
    first = _ask(client, question)
    total = first.usage.input_tokens + first.usage.cache_read_input_tokens
    _ask(client, "What is the capital of Peru?", system="Answer with one word.")
    state = fresh.health()["models"][QWEN]
    assert state["parked_tokens"] >= total > state["cached_tokens"], state
    again = _ask(client, question)
    assert again.content[0].text == first.content[0].text
    assert again.usage.cache_read_input_tokens == total - 1 and again.usage.input_tokens == 1
    state = fresh.health()["models"][QWEN]
    assert state["cached_tokens"] >= total, state  # back in the KV cache, and the other one parked
    assert state["parked_tokens"] < total, state


def test_more_conversations_than_slots_each_continue_from_their_own_cache(start_server):
    """Four conversations take turns on a server of two slots (as 4 agent sessions and their side requests
    do on 4): a parked state belongs to no slot, so each conversation's next turn reads all of its previous
    turn — prompt and answer — from the cache instead of the system prompt alone. They share a system prompt
    longer than what each adds to it (as agent sessions share their tools): sharing most of a conversation is
    not continuing it."""
    server = start_server("--parallel", "2")
    client = server.client()
    system = SYSTEM + "".join(f"\nRule {i}: answer about geography only, in plain words." for i in range(30))
    topics = ["rivers", "mountains", "deserts", "islands"]
    history = {t: [{"role": "user", "content": f"Name three famous {t}. " + f"({t} quiz) " * 20}] for t in topics}
    previous = {}
    for turn in range(2):
        for topic in topics:
            reply = client.messages.create(model=SMOL, max_tokens=24, system=system, extra_body=GREEDY,
                                           messages=history[topic])
            usage = reply.usage
            if turn:  # everything up to the new question came from the cache
                assert usage.cache_read_input_tokens >= previous[topic], (topic, previous[topic], usage)
            previous[topic] = usage.input_tokens + usage.cache_read_input_tokens + usage.output_tokens - 1
            history[topic] += [{"role": "assistant", "content": reply.content[0].text},
                               {"role": "user", "content": "And three more?"}]
    state = server.health()["models"][SMOL]
    assert state["parked_tokens"] > 0 and state["parked_bytes"] > 0, state


def test_openai_reports_cached_tokens(fresh):
    oai = openai.OpenAI(base_url=fresh.url + "/v1", api_key="x", max_retries=0)
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Capital of Germany?"}]
    first = oai.chat.completions.create(model=QWEN, max_tokens=5, temperature=0, messages=messages)
    again = oai.chat.completions.create(model=QWEN, max_tokens=5, temperature=0, messages=messages)
    assert again.usage.prompt_tokens == first.usage.prompt_tokens
    assert again.usage.prompt_tokens_details.cached_tokens == again.usage.prompt_tokens - 1
    assert again.choices[0].message.content == first.choices[0].message.content


def test_billing_line_does_not_break_the_prefix_cache(fresh):
    client = fresh.client()

    def system(cch: str) -> list[dict]:
        return [{"type": "text", "text": BILLING.format(cch)},
                {"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
    first = _ask(client, "What is the capital of Portugal?", system=system("a1b2c"))
    second = _ask(client, "What is the capital of Portugal?", system=system("f9e8d"))
    assert second.usage.input_tokens == 1
    usage = first.usage
    first_total = usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens
    assert second.usage.cache_read_input_tokens == first_total - 1


CODE_WORDS = ["AMBER-41", "COBALT-77", "SAFFRON-19", "VIOLET-58"]


def test_concurrent_streams_each_get_their_own_answer(fresh):
    client = fresh.client()
    _ask(client, "warm up")  # loaded before the clock below starts
    results: dict[str, dict] = {}

    def run(word: str) -> None:
        spans, text = [], []
        with client.messages.stream(model=QWEN, max_tokens=24, extra_body=GREEDY, messages=[
                {"role": "user", "content": f"Repeat this code word exactly, three times, separated by spaces: "
                                            f"{word}"}]) as stream:
            for chunk in stream.text_stream:
                spans.append(time.monotonic())
                text.append(chunk)
        results[word] = {"text": "".join(text), "first": spans[0], "last": spans[-1]}

    threads = [threading.Thread(target=run, args=(w,)) for w in CODE_WORDS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    for word in CODE_WORDS:
        text = results[word]["text"]
        assert word in text, (word, text)
        assert not any(other in text for other in CODE_WORDS if other != word), (word, text)
    # They ran together: every stream had produced text before any stream finished.
    assert max(r["first"] for r in results.values()) < min(r["last"] for r in results.values())


def test_cancelled_stream_frees_its_slot_at_once(start_server):
    server = start_server("--parallel", "1")
    client = server.client()
    client.messages.create(model=SMOL, max_tokens=1, messages=[{"role": "user", "content": "hi"}])
    body = {"model": SMOL, "max_tokens": 4000, "stream": True, "temperature": 0.8,
            "messages": [{"role": "user", "content": "Write an extremely long story about a lighthouse."}]}
    with httpx.stream("POST", server.url + "/v1/messages", json=body, timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith("event: content_block_delta"):
                assert server.health()["models"][SMOL]["busy_slots"] == 1
                break
    deadline = time.monotonic() + 10
    while server.health()["models"][SMOL]["busy_slots"] and time.monotonic() < deadline:
        time.sleep(0.02)
    state = server.health()["models"][SMOL]
    assert state["busy_slots"] == 0 and state["active_generations"] == 0
    # The only slot serves the next request.
    reply = client.messages.create(model=SMOL, max_tokens=3, messages=[{"role": "user", "content": "Say hi"}])
    assert reply.usage.output_tokens == 3


def test_cache_memory_stays_within_its_bound(start_server):
    server = start_server("--parallel", "4", "--n-ctx", "1024")
    client = server.client()
    topics = ["rivers", "mountains", "deserts", "forests", "oceans", "islands"]
    for topic in topics:
        filler = " ".join(f"{topic}-fact-{j}" for j in range(70))  # ~350 distinct tokens per prompt
        reply = client.messages.create(model=SMOL, max_tokens=4, extra_body=GREEDY, messages=[
            {"role": "user", "content": f"Notes: {filler}. Summarise the notes about {topic}."}])
        assert reply.usage.output_tokens >= 1
        state = server.health()["models"][SMOL]
        assert state["cache_capacity"] == 1024 and state["cached_tokens"] <= 1024, state
    # Six prompts of ~350 tokens cannot all be held in 1024 cells: old ones were evicted, new ones still ran.
    assert state["cached_tokens"] < 6 * 350


def test_prompts_that_fit_the_context_alone_but_not_together_both_answer(start_server):
    """Two requests of ~60% of a shared 2k context: the second waits for the first's cells instead of failing
    at decode ("the context is full", a 500 before)."""
    server = start_server("--parallel", "4", "--n-ctx", "2048")
    client = server.client()
    prompts = [" ".join(f"{topic}-note-{j}" for j in range(180)) + f" Summarise the {topic} notes."
               for topic in ("river", "mountain")]
    sizes = [client.messages.count_tokens(model=SMOL, messages=[{"role": "user", "content": p}]).input_tokens
             for p in prompts]
    assert all(1100 < size < 2047 - 512 for size in sizes) and sum(sizes) > 2048, sizes
    replies: list = [None, None]

    def ask(i: int) -> None:
        try:
            replies[i] = client.messages.create(model=SMOL, max_tokens=16, extra_body=GREEDY,
                                                messages=[{"role": "user", "content": prompts[i]}])
        except anthropic.APIError as exc:
            replies[i] = exc

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert all(isinstance(r, anthropic.types.Message) for r in replies), replies
    assert [r.usage.input_tokens + r.usage.cache_read_input_tokens for r in replies] == sizes
