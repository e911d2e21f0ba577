"""Pydantic AI's `OpenAIResponsesModel` (the Responses API) against a real parley: a text answer and a typed
output, which Pydantic AI gets through a tool call of its own (`final_result`)."""

from __future__ import annotations

import pydantic
import pytest
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIResponsesModel, OpenAIResponsesModelSettings
from pydantic_ai.providers.openai import OpenAIProvider

from conftest import QWEN

GREEDY = OpenAIResponsesModelSettings(temperature=0, max_tokens=60)


class City(pydantic.BaseModel):
    name: str
    country: str


@pytest.fixture(scope="module")
def model(server) -> OpenAIResponsesModel:
    return OpenAIResponsesModel(QWEN, provider=OpenAIProvider(base_url=server.url + "/v1", api_key="not-needed"))


def test_text_answer(model, server):
    result = Agent(model, model_settings=GREEDY).run_sync("Say hello in one word.")
    assert isinstance(result.output, str) and result.output.strip()
    usage = result.usage  # a property since pydantic-ai 2.78 (calling it is deprecated)
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert server.health()["status"] == "ok"


def test_typed_output_through_a_tool_call(model):
    result = Agent(model, output_type=City, model_settings=GREEDY).run_sync("Describe Paris.")
    assert isinstance(result.output, City) and result.output.name
