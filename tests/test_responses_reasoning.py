"""Reasoning on the Responses API, with a model whose chat template reasons (support/reasoning_model.py): the raw
reasoning as a `reasoning` item, its effort as a budget, and sealed reasoning round-tripped by a stateless client
(`store: false`, `include: ["reasoning.encrypted_content"]`, as Codex sends it)."""

from __future__ import annotations

import openai
import pydantic
import pytest
from openai.types.responses import ResponseStreamEvent

THINKER = "smollm2-think"
EVENT = pydantic.TypeAdapter(ResponseStreamEvent)
SEALED = {"store": False, "include": ["reasoning.encrypted_content"], "temperature": 0}


@pytest.fixture(scope="module")
def oai(think_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=think_server.url + "/v1", api_key="not-needed", max_retries=0)


@pytest.fixture(scope="module")
def reasoned(oai) -> list:
    """One streamed response whose reasoning is cut at the `minimal` effort's budget (256 tokens)."""
    stream = oai.responses.create(model=THINKER, input="Is 91 a prime number?", max_output_tokens=400,
                                  reasoning={"effort": "minimal"}, stream=True, **SEALED)
    return [EVENT.validate_python(e.model_dump()) for e in stream]


def test_reasoning_streams_as_a_reasoning_item_before_the_answer(reasoned):
    kinds = [e.type for e in reasoned]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert [e.sequence_number for e in reasoned] == list(range(len(reasoned)))
    first = next(e for e in reasoned if e.type == "response.output_item.added")
    assert first.item.type == "reasoning" and first.output_index == 0
    deltas = "".join(e.delta for e in reasoned if e.type == "response.reasoning_text.delta")
    done = next(e for e in reasoned if e.type == "response.reasoning_text.done")
    assert deltas and done.text == deltas
    final = reasoned[-1].response
    assert reasoned[-1].type in ("response.completed", "response.incomplete")
    item = final.output[0]
    assert item.type == "reasoning" and item.content[0].text == deltas and item.encrypted_content
    # The budget closed the reasoning: what follows is the answer, a message item.
    assert 0 < final.usage.output_tokens_details.reasoning_tokens <= 256 + 8
    assert any(o.type == "message" for o in final.output[1:])


def test_sealed_reasoning_goes_back_and_a_tampered_one_is_refused(oai, reasoned):
    final = reasoned[-1].response
    history = [{"role": "user", "content": "Is 91 a prime number?"},
               *[o.model_dump(exclude_none=True) for o in final.output]]
    follow = oai.responses.create(model=THINKER, input=[*history, {"role": "user", "content": "Why?"}],
                                  max_output_tokens=20, reasoning={"effort": "none"}, **SEALED)
    assert follow.status in ("completed", "incomplete")
    assert all(o.type != "reasoning" for o in follow.output)  # effort none: no reasoning
    sealed = history[1]["encrypted_content"]
    history[1]["encrypted_content"] = sealed[:-8] + ("A" * 8 if not sealed.endswith("A" * 8) else "B" * 8)
    with pytest.raises(openai.BadRequestError) as info:
        oai.responses.create(model=THINKER, input=history + [{"role": "user", "content": "Why?"}],
                             max_output_tokens=5, **SEALED)
    assert "input.1.encrypted_content" in info.value.message
