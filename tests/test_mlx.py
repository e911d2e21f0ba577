"""The MLX engine through the same core: the protocol behaviour of both APIs on an MLX model directory (a
tiny random-weight Qwen2 with the real tokenizer, see mlx_model.py), next to the same checks on a GGUF model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import openai
import pytest

from conftest import SMOL
from sse_util import read_events

MLX = "tiny-qwen2-mlx"
HI = [{"role": "user", "content": "Say something."}]


@pytest.fixture(scope="module")
def mlx_dir():
    from mlx_model import build_tiny_mlx_model
    from parley.models.packaged import QWEN_CODER_05B
    from parley.settings import Settings

    cache = Settings().cache_dir
    return build_tiny_mlx_model(QWEN_CODER_05B.gguf_path(cache), cache / "test-models" / "mlx" / MLX)


@pytest.fixture(scope="module")
def mlx_server(start_server, mlx_dir):
    return start_server("--models-dir", str(mlx_dir.parent), ping_interval="0.5")


@pytest.fixture(params=["llamacpp", "mlx"])
def target(request, server, mlx_server):
    """(server, model) for each engine."""
    return (server, SMOL) if request.param == "llamacpp" else (mlx_server, MLX)


def test_mlx_model_is_discovered_and_listed(mlx_server, mlx_dir):
    ids = [m.id for m in mlx_server.client().models.list().data]
    assert MLX in ids
    out = subprocess.run([sys.executable, "-m", "parley.cli", "models", "--models-dir", str(mlx_dir.parent)],
                         capture_output=True, text=True, check=True, env=os.environ).stdout
    row = next(line.split() for line in out.splitlines() if line.startswith(MLX))
    assert row[1] == "mlx" and row[-1] == "ok" and "qwen2" in row and "yes" in row  # the template has tools


def test_message_shape(target):
    server, model = target
    message = server.client().messages.create(model=model, max_tokens=8, messages=HI, extra_body={"temperature": 0})
    assert message.type == "message" and message.role == "assistant" and message.model == model
    assert [b.type for b in message.content] == ["text"]
    assert message.stop_reason in ("end_turn", "max_tokens") and 1 <= message.usage.output_tokens <= 8
    assert message.usage.input_tokens + message.usage.cache_read_input_tokens > 5


def test_stream_event_order(target):
    server, model = target
    events = read_events(server.url + "/v1/messages", {"model": model, "max_tokens": 6, "stream": True,
                                                        "temperature": 0, "messages": HI})
    names = [n for n, _ in events if n != "ping"]
    assert names[0] == "message_start" and names[1] == "content_block_start"
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[2:-3]) <= {"content_block_delta"}
    assert all(d["index"] == 0 for n, d in events if n.startswith("content_block"))
    usage = events[-2][1]["usage"]
    assert 1 <= usage["output_tokens"] <= 6


def test_prefix_cache_is_used_and_reported(target):
    server, model = target
    client = server.client()
    body = dict(model=model, max_tokens=5, system="A fixed system prompt for the cache test. " * 5,
                messages=[{"role": "user", "content": "Again, the same question."}], extra_body={"temperature": 0})
    first = client.messages.create(**body)
    again = client.messages.create(**body)
    total = first.usage.input_tokens + first.usage.cache_read_input_tokens
    assert again.usage.cache_read_input_tokens == total - 1 and again.usage.input_tokens == 1
    # Both engines decode the last prompt token alone, cached or not, so greedy answers match.
    assert again.content[0].text == first.content[0].text


def test_openai_completion_with_logprobs(target):
    server, model = target
    oai = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    r = oai.chat.completions.create(model=model, max_tokens=6, temperature=0, logprobs=True, top_logprobs=2,
                                    messages=HI)
    content = r.choices[0].logprobs.content
    assert content and "".join(t.token for t in content) == r.choices[0].message.content
    assert all(len(t.top_logprobs) == 2 and t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob for t in content)


def test_disconnect_stops_the_generation(target):
    server, model = target
    server.client().messages.create(model=model, max_tokens=1, messages=HI)
    body = {"model": model, "max_tokens": 3000, "stream": True, "temperature": 1.0, "messages": HI}
    with httpx.stream("POST", server.url + "/v1/messages", json=body, timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith("event: content_block_delta"):
                break
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = server.health()["models"][model]
        if state["active_generations"] == 0 and state["admitted"] == 0:
            break
        time.sleep(0.05)
    before = server.health()["models"][model]["tokens_generated"]
    time.sleep(0.5)
    assert state["active_generations"] == 0 and server.health()["models"][model]["tokens_generated"] == before


UNIT_TOOL = {"name": "set_unit", "description": "Set the unit",
             "input_schema": {"type": "object", "properties": {"unit": {"type": "string", "enum": ["c", "f"]},
                                                               "count": {"type": "integer"}},
                              "required": ["unit", "count"], "additionalProperties": False}}


def test_grammar_forces_a_valid_call_even_from_noise(mlx_server):
    """Random weights, forced tool choice: every token comes through the grammar, so the call is well-formed
    and its input valid against the schema (the same guarantee as on llama.cpp)."""
    import jsonschema

    client = mlx_server.client()
    for seed in (1, 2):
        message = client.messages.create(model=MLX, max_tokens=300, messages=HI, tools=[UNIT_TOOL],
                                         tool_choice={"type": "tool", "name": "set_unit",
                                                      "disable_parallel_tool_use": True},
                                         extra_body={"temperature": 1.0, "seed": seed})
        calls = [b for b in message.content if b.type == "tool_use"]
        assert len(calls) == 1 and calls[0].name == "set_unit" and message.stop_reason == "tool_use", message
        jsonschema.validate(calls[0].input, UNIT_TOOL["input_schema"])
    auto = client.messages.create(model=MLX, max_tokens=5, messages=HI, tools=[UNIT_TOOL])
    assert auto.type == "message"  # auto: offered, parsed leniently (no lazy grammar on MLX)


def test_json_schema_output_on_mlx(mlx_server):
    import jsonschema

    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer"}},
              "required": ["ok", "n"], "additionalProperties": False}
    oai = openai.OpenAI(base_url=mlx_server.url + "/v1", api_key="x", max_retries=0)
    r = oai.chat.completions.create(model=MLX, max_tokens=200, seed=3, messages=HI, response_format={
        "type": "json_schema", "json_schema": {"name": "answer", "schema": schema}})
    jsonschema.validate(json.loads(r.choices[0].message.content), schema)


def test_without_mlx_the_model_is_listed_unavailable(start_server, mlx_dir, tmp_path):
    # A package dir shadowing mlx_lm with one that fails to import stands in for an install without the extra.
    (tmp_path / "mlx_lm").mkdir()
    (tmp_path / "mlx_lm" / "__init__.py").write_text("raise ImportError('no mlx_lm here', name='mlx_lm')\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run([sys.executable, "-m", "parley.cli", "models", "--models-dir", str(mlx_dir.parent)],
                         capture_output=True, text=True, check=True, env=env).stdout
    row = next(line for line in out.splitlines() if line.startswith(MLX))
    assert "unavailable: the mlx engine is not installed" in row and "parley[mlx]" in row
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = env["PYTHONPATH"]
    try:
        server = start_server("--models-dir", str(mlx_dir.parent))
    finally:
        if previous is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = previous
    response = httpx.post(server.url + "/v1/messages", json={"model": MLX, "max_tokens": 2, "messages": HI})
    assert response.status_code == 404 and "parley[mlx]" in response.json()["error"]["message"]
    assert MLX not in [m.id for m in server.client().models.list().data]


@pytest.fixture(scope="module")
def real_mlx_server(start_server):
    """Qwen2.5-Coder-0.5B, converted once from the packaged GGUF with mlx-lm's converter (see mlx_model.py)."""
    from mlx_model import convert_packaged_qwen
    from parley.models.packaged import QWEN_CODER_05B
    from parley.settings import Settings

    cache = Settings().cache_dir
    model_dir = convert_packaged_qwen(QWEN_CODER_05B.gguf_path(cache), cache / "test-models" / "mlx-real")
    return start_server("--models-dir", str(model_dir.parent))


def test_a_real_converted_model_answers_on_both_apis(real_mlx_server):
    model = "qwen2.5-coder-0.5b-instruct-mlx"
    question = [{"role": "user", "content": "What is the capital of France? Answer with one word."}]
    message = real_mlx_server.client().messages.create(model=model, max_tokens=5, messages=question,
                                                       extra_body={"temperature": 0})
    assert "Paris" in message.content[0].text
    oai = openai.OpenAI(base_url=real_mlx_server.url + "/v1", api_key="x", max_retries=0)
    again = oai.chat.completions.create(model=model, max_tokens=5, temperature=0, messages=question)
    assert "Paris" in again.choices[0].message.content
    assert again.usage.prompt_tokens_details.cached_tokens == again.usage.prompt_tokens - 1  # the prefix cache


def test_lazy_grammar_engages_at_the_trigger(mlx_dir):
    """`tool_choice: auto` on MLX: free text passes unmasked; once the output ends in `<tool_call>` the
    grammar masks the logits (fed the text since the trigger), and only a valid call can follow."""
    import mlx.core as mx
    import numpy as np

    from parley.core.messages import ToolSpec
    from parley.engines.mlx import MlxEngine
    from parley.engines.mlx.grammar import GrammarProcessor
    from parley.grammar.tool_grammar import lazy_grammar
    from parley.parsers.tool_calls import HERMES

    engine = MlxEngine(mlx_dir, n_ctx=512)
    try:
        grammar = lazy_grammar([ToolSpec("set_unit", "", UNIT_TOOL["input_schema"])], (HERMES,), parallel=False)
        processor = GrammarProcessor(engine._grammar_tokenizer(), grammar, engine.token_bytes, engine.tokenize)
        vocab = engine._model.model.embed_tokens.weight.shape[0]
        logits = mx.zeros((1, vocab))
        history: list[int] = []
        masked = []
        for token in engine.tokenize("Let me set it.\n<tool_call>\n"):
            history.append(token)
            out = processor(mx.array(history), logits)
            masked.append(int(np.isinf(np.array(out)).sum()))
        assert masked[0] == 0 and masked[-1] > vocab - 1000  # free text first; then almost everything is masked
        allowed = np.flatnonzero(~np.isinf(np.array(out[0])))
        assert all(engine.token_bytes(int(t)).lstrip().startswith(b"{") or not engine.token_bytes(int(t)).strip()
                   for t in allowed)  # after the opener: whitespace or the call object's "{"
    finally:
        engine.close()


def test_mlx_repos_in_the_hf_cache_are_listed(mlx_dir, tmp_path):
    """As the upstream server lists `mlx-community/*` models: a snapshot holding a whole MLX model."""
    snapshot = tmp_path / "hub" / "models--mlx-community--tiny-qwen2-4bit" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    for item in mlx_dir.iterdir():
        (snapshot / item.name).symlink_to(item)
    out = subprocess.run([sys.executable, "-m", "parley.cli", "models"], capture_output=True, text=True, check=True,
                         env={**os.environ, "PARLEY_HF_CACHE_DIR": str(tmp_path / "hub")}).stdout
    row = next(line.split() for line in out.splitlines() if line.startswith("mlx-community/tiny-qwen2-4bit"))
    assert row[1] == "mlx" and row[-1] == "ok"
