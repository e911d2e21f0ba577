"""The core protocol suite over every engine, as far as each engine's declared features go: llama.cpp (a GGUF),
MLX (a tiny random-weight model directory, support/mlx_model.py) and vLLM (the packaged Qwen converted to a Hugging Face
directory, support/hf_model.py, in its own venv, vllm_env.py). Random weights answer noise, so checks that need a model
that behaves (a tool call under `auto`) run on the real models only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jsonschema
import openai
import pytest

from conftest import QWEN, SMOL
from support.reasoning_model import QWEN3_STYLE_TEMPLATE
from support.sse_util import read_events

MLX = "tiny-qwen2-mlx"
VLLM, VLLM_THINK = "qwen2.5-0.5b-hf", "qwen2.5-0.5b-hf-think"
HI = [{"role": "user", "content": "Say something."}]
GREEDY = {"temperature": 0}
ROOT = Path(__file__).resolve().parents[1]


def _registry_reachable() -> bool:
    probe = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d",
                            os.devnull + ".d", "six"], capture_output=True, timeout=120)
    shutil.rmtree(os.devnull + ".d", ignore_errors=True)
    return probe.returncode == 0


def with_template(source: Path, target: Path, template: str) -> Path:
    """A copy of a model directory (weights linked) with another chat template."""
    if not target.is_dir():
        target.mkdir(parents=True)
        for item in source.iterdir():
            (target / item.name).symlink_to(item.resolve())
    config = json.loads((source / "tokenizer_config.json").read_text())
    (target / "tokenizer_config.json").unlink(missing_ok=True)
    (target / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": template}))
    return target


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    """vLLM lives in its own venv (built once, cached; a few minutes the first time)."""
    from vllm_env import vllm_python as build

    try:
        return build()
    except subprocess.CalledProcessError:
        if not _registry_reachable():
            pytest.skip("vLLM tests need the package registry to build their venv, and it is unreachable")
        raise


@pytest.fixture(scope="session")
def vllm_models() -> Path:
    from support.hf_model import packaged_qwen_hf

    plain = packaged_qwen_hf()
    return with_template(plain, plain.parent / VLLM_THINK, QWEN3_STYLE_TEMPLATE).parent


@pytest.fixture(scope="session")
def vllm_server(start_server, vllm_python, vllm_models, tmp_path_factory):
    # This checkout's code, whichever checkout the cached venv was built from.
    environ = {"PYTHONPATH": str(ROOT / "src"), "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    config = tmp_path_factory.mktemp("vllm") / "models.toml"  # vLLM's own arguments, per model, unchanged
    config.write_text(f'[models."{VLLM_THINK}"]\nvllm = {{ max_model_len = 2048 }}\n')
    return start_server("--model", str(vllm_models / VLLM), "--model", str(vllm_models / VLLM_THINK),
                        "--parallel", "4", "--n-ctx", "4096", "--config", str(config), python=str(vllm_python),
                        start_timeout=300, environ=environ, ping_interval="0.5")


@pytest.fixture(params=["llamacpp", "mlx", "vllm"])
def target(request):
    """(engine, server, model) for each engine; the fixtures are built only for the engines asked for."""
    name = request.param
    if name == "llamacpp":
        return name, request.getfixturevalue("server"), SMOL
    if name == "mlx":
        return name, request.getfixturevalue("mlx_server"), MLX
    return name, request.getfixturevalue("vllm_server"), VLLM


def _features(server, model) -> list[str]:
    server.client().messages.create(model=model, max_tokens=1, messages=HI)  # loaded now
    return server.health()["models"][model]["features"]


def test_the_model_runs_on_its_engine(target):
    engine, server, model = target
    _features(server, model)
    assert server.health()["models"][model]["engine"] == engine


def test_message_shape(target):
    _, server, model = target
    message = server.client().messages.create(model=model, max_tokens=8, messages=HI, extra_body=GREEDY)
    assert message.type == "message" and message.role == "assistant" and message.model == model
    assert [b.type for b in message.content] == ["text"]
    assert message.stop_reason in ("end_turn", "max_tokens") and 1 <= message.usage.output_tokens <= 8
    assert message.usage.input_tokens + message.usage.cache_read_input_tokens > 5


def test_stream_event_order(target):
    _, server, model = target
    events = read_events(server.url + "/v1/messages", {"model": model, "max_tokens": 6, "stream": True,
                                                        "temperature": 0, "messages": HI})
    names = [n for n, _ in events if n != "ping"]
    assert names[0] == "message_start" and names[1] == "content_block_start"
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[2:-3]) <= {"content_block_delta"}
    assert all(d["index"] == 0 for n, d in events if n.startswith("content_block"))
    assert 1 <= events[-2][1]["usage"]["output_tokens"] <= 6


def _a_stop_in(text: str) -> str:
    """Three characters of `text`, not blank, that first occur past its start; for a blank answer (random
    weights, greedy), its first half and one more character."""
    return next((text[i:i + 3] for i in range(4, len(text) - 3) if text[i:i + 3].strip()
                 and text[i:i + 3] not in text[:i]), text[: len(text) // 2 + 1])


def test_stop_sequences(target):
    """A stop string taken from the model's own greedy answer ends the same answer right before it."""
    _, server, model = target
    client = server.client()
    first = client.messages.create(model=model, max_tokens=24, messages=HI, extra_body=GREEDY)
    text = "".join(b.text for b in first.content if b.type == "text")
    stop = _a_stop_in(text)
    assert stop, first
    cut = client.messages.create(model=model, max_tokens=24, messages=HI, stop_sequences=[stop], extra_body=GREEDY)
    assert cut.stop_reason == "stop_sequence" and cut.stop_sequence == stop
    assert "".join(b.text for b in cut.content if b.type == "text") == text[: text.index(stop)]


def test_count_tokens_matches_usage(target):
    _, server, model = target
    client = server.client()
    messages = [{"role": "user", "content": "How many tokens is this question, roughly?"}]
    counted = client.messages.count_tokens(model=model, messages=messages, system="Be brief.").input_tokens
    message = client.messages.create(model=model, max_tokens=2, messages=messages, system="Be brief.")
    assert counted == message.usage.input_tokens + message.usage.cache_read_input_tokens


def test_prefix_cache_is_used_and_reported(target):
    engine, server, model = target
    client = server.client()
    body = dict(model=model, max_tokens=5, system="A fixed system prompt for the cache test. " * 5,
                messages=[{"role": "user", "content": "Again, the same question."}], extra_body=GREEDY)
    first = client.messages.create(**body)
    again = client.messages.create(**body)
    total = first.usage.input_tokens + first.usage.cache_read_input_tokens
    assert again.usage.input_tokens + again.usage.cache_read_input_tokens == total
    # llama.cpp and MLX re-decode only the last prompt token; vLLM caches whole blocks (32 tokens on the CPU).
    assert total - (32 if engine == "vllm" else 1) <= again.usage.cache_read_input_tokens < total
    assert again.content[0].text == first.content[0].text


def test_openai_completion_with_logprobs(target):
    _, server, model = target
    if "logprobs" not in _features(server, model):
        pytest.skip("the engine declares no logprobs")
    oai = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    r = oai.chat.completions.create(model=model, max_tokens=6, temperature=0, logprobs=True, top_logprobs=2,
                                    messages=HI)
    content = r.choices[0].logprobs.content
    assert content and "".join(t.token for t in content) == r.choices[0].message.content
    assert all(len(t.top_logprobs) == 2 and t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob for t in content)
    assert all(t.logprob <= 0 for t in content)


def test_disconnect_stops_the_generation(target):
    _, server, model = target
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
WEATHER = {"name": "get_weather", "description": "Get the current weather in a given location",
           "input_schema": {"type": "object", "properties": {
               "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
               "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["location"]}}


def test_forced_tool_call_is_valid_even_when_sampled(target):
    """Every token of a forced call comes through the grammar: valid input, whatever the model (random weights
    included) would have written."""
    _, server, model = target
    client = server.client()
    for seed in (1, 2):
        message = client.messages.create(model=model, max_tokens=300, messages=HI, tools=[UNIT_TOOL],
                                         tool_choice={"type": "tool", "name": "set_unit",
                                                      "disable_parallel_tool_use": True},
                                         extra_body={"temperature": 1.0, "seed": seed})
        calls = [b for b in message.content if b.type == "tool_use"]
        assert len(calls) == 1 and calls[0].name == "set_unit" and message.stop_reason == "tool_use", message
        jsonschema.validate(calls[0].input, UNIT_TOOL["input_schema"])


@pytest.mark.parametrize("engine", ["llamacpp", "vllm"])
def test_tool_call_under_auto_is_valid(engine, request):
    """`tool_choice: auto` on a real model: free text allowed, and the call it makes is valid (lazy grammar)."""
    server = request.getfixturevalue("server" if engine == "llamacpp" else "vllm_server")
    model = QWEN if engine == "llamacpp" else VLLM
    message = server.client().messages.create(
        model=model, max_tokens=120, tools=[WEATHER], extra_body=GREEDY,
        messages=[{"role": "user", "content": "What's the weather like in San Francisco?"}])
    calls = [b for b in message.content if b.type == "tool_use"]
    assert message.stop_reason == "tool_use" and [c.name for c in calls] == ["get_weather"], message.content
    jsonschema.validate(calls[0].input, WEATHER["input_schema"])
    assert "San Francisco" in calls[0].input["location"]
    if "lazy_grammar" in server.health()["models"][model]["features"]:
        assert not [b for b in message.content if b.type == "text" and "<tool_call>" in b.text]


def test_json_schema_output(target):
    _, server, model = target
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer"}},
              "required": ["ok", "n"], "additionalProperties": False}
    oai = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    r = oai.chat.completions.create(model=model, max_tokens=200, seed=3, messages=HI, response_format={
        "type": "json_schema", "json_schema": {"name": "answer", "schema": schema}})
    assert r.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(r.choices[0].message.content), schema)


def test_thinking_on_vllm_streams_a_thinking_block_then_the_answer(vllm_server):
    """The reasoning template on vLLM: thinking (adaptive: no early close needed) then text, signed."""
    client = vllm_server.client()
    message = client.messages.create(model=VLLM_THINK, max_tokens=200, thinking={"type": "adaptive"},
                                     extra_body=GREEDY, messages=[{"role": "user", "content": "What is 2 + 2?"}])
    assert message.content[0].type == "thinking" and message.content[0].signature
    state = vllm_server.health()["models"][VLLM_THINK]
    assert state["engine"] == "vllm" and state["cache_capacity"] == 2048  # the config's vllm.max_model_len


def test_vllm_engine_forces_the_end_of_reasoning_at_the_budget(vllm_python, vllm_models):
    """The budget rule in the vLLM engine itself (the API's smallest budget, 1024 tokens, takes minutes at
    this machine's 7 tok/s): a 5-token budget on a prompt that opened `<think>` is followed by `</think>`."""
    out = subprocess.run([str(vllm_python), str(ROOT / "tests" / "vllm_engine_check.py"), "budget"],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT / "tests")})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "budget" in out.stdout and "FAIL" not in out.stdout


def test_vllm_engine_core_death_costs_the_requests_in_flight(vllm_server):
    """vLLM runs its engine core in a process of its own: killed, the stream in flight ends with the same
    crash error as parley's own model processes give, and the next request runs on a restarted core."""
    import psutil

    client = vllm_server.client()
    client.messages.create(model=VLLM, max_tokens=1, messages=HI)
    cores = [p for p in psutil.Process(vllm_server.proc.pid).children(recursive=True)
             if "EngineCore" in " ".join([p.name(), *p.cmdline()])]
    assert cores, [p.name() for p in psutil.Process(vllm_server.proc.pid).children(recursive=True)]
    body = {"model": VLLM, "max_tokens": 400, "stream": True, "messages": HI}
    events, killed = [], False
    with httpx.stream("POST", vllm_server.url + "/v1/messages", json=body, timeout=120) as response:
        for line in response.iter_lines():
            if line.startswith("event: content_block_delta") and not killed:
                for core in cores:
                    core.kill()
                killed = True
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    assert events[-1] == {"type": "error", "error": {
        "type": "api_error",
        "message": "the model process crashed (vLLM's engine core died) and is restarting; retry the request"}}
    deadline = time.monotonic() + 300
    while True:  # queued behind the restart, or refused while the old core is torn down: then retried
        try:
            again = client.messages.create(model=VLLM, max_tokens=4, messages=HI, extra_body=GREEDY)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)
    assert again.content[0].text and again.stop_reason in ("end_turn", "max_tokens")
    state = vllm_server.health()["models"][VLLM]
    assert state["crashes"] >= 1 and state["restarts"] == 1
