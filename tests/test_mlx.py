"""What is MLX's own: discovery of MLX directories, the install check, a real converted model, the lazy grammar's
logits processor. The protocol suite over every engine, MLX included, is test_engines.py."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import openai
import pytest

MLX = "tiny-qwen2-mlx"
HI = [{"role": "user", "content": "Say something."}]


def test_mlx_model_is_discovered_and_listed(mlx_server, mlx_dir):
    ids = [m.id for m in mlx_server.client().models.list().data]
    assert MLX in ids
    out = subprocess.run([sys.executable, "-m", "parley.cli", "models", "--models-dir", str(mlx_dir.parent)],
                         capture_output=True, text=True, check=True, env=os.environ).stdout
    row = next(line.split() for line in out.splitlines() if line.startswith(MLX))
    assert row[1] == "mlx" and row[-1] == "ok" and "qwen2" in row and "yes" in row  # the template has tools


UNIT_TOOL = {"name": "set_unit", "description": "Set the unit",
             "input_schema": {"type": "object", "properties": {"unit": {"type": "string", "enum": ["c", "f"]},
                                                               "count": {"type": "integer"}},
                              "required": ["unit", "count"], "additionalProperties": False}}


def test_without_mlx_the_model_is_listed_unavailable(start_server, mlx_dir, tmp_path):
    # A package dir shadowing mlx_lm with one that fails to import stands in for an install without the extra.
    (tmp_path / "mlx_lm").mkdir()
    (tmp_path / "mlx_lm" / "__init__.py").write_text("raise ImportError('no mlx_lm here', name='mlx_lm')\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run([sys.executable, "-m", "parley.cli", "models", "--models-dir", str(mlx_dir.parent)],
                         capture_output=True, text=True, check=True, env=env).stdout
    row = next(line for line in out.splitlines() if line.startswith(MLX))
    assert "unavailable: the MLX engine is not installed" in row and "parley[mlx]" in row
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
def real_mlx_dir():
    """Qwen2.5-Coder-0.5B, converted once from the packaged GGUF with mlx-lm's converter (see support/mlx_model.py)."""
    from parley.models.packaged import QWEN_CODER_05B
    from parley.settings import Settings
    from support.mlx_model import convert_packaged_qwen

    cache = Settings().cache_dir
    return convert_packaged_qwen(QWEN_CODER_05B.gguf_path(cache), cache / "test-models" / "mlx-real")


@pytest.fixture(scope="module")
def real_mlx_server(start_server, real_mlx_dir):
    return start_server("--models-dir", str(real_mlx_dir.parent))


@pytest.fixture(scope="module")
def real_mlx_engine(real_mlx_dir):
    from parley.engines.mlx import MlxEngine

    engine = MlxEngine(real_mlx_dir, n_ctx=2048)
    yield engine
    engine.close()


def _prompt(engine, user: str, prefill: str) -> list[int]:
    from parley.core.messages import ChatMessage, Conversation

    text = engine.chat_template.render(Conversation([ChatMessage("user", user), ChatMessage("assistant", prefill)]))
    return engine.tokenize(text)


def _greedy(engine, prompt: list[int], max_tokens: int, budget=None) -> list[int]:
    from parley.core.params import SamplingParams
    from parley.engines.sync import generate

    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, reasoning_budget=budget)
    return [item.token for item in generate(engine, prompt, params)]


CLOSE = "\n</think>\n\n"


def test_the_thinking_budget_closes_the_reasoning_and_the_answer_goes_on(real_mlx_engine):
    """At `budget_tokens` the engine writes the end of the reasoning and a new step generator goes on from it,
    over the same cache: what follows is what the model says after prompt + reasoning + close."""
    from parley.core.params import ReasoningBudget

    engine = real_mlx_engine
    prompt = _prompt(engine, "Why is the sky blue?", "<think>\n")
    budget = ReasoningBudget(max_tokens=5, close_text=CLOSE, open_text="<think>", starts_open=True)
    out = _greedy(engine, prompt, 20, budget)
    close = engine.tokenize(CLOSE)
    written = 5 + len(close)
    assert out[5:written] == close and len(out) > written  # closed at 5, then the answer
    assert out[:5] == _greedy(engine, prompt, 5)  # the reasoning as sampled
    # The answer continues the written close: what a prompt holding all of it gives.
    assert out[written:] == _greedy(engine, prompt + out[:written], len(out) - written)


def test_a_turn_that_would_end_inside_its_reasoning_closes_it_instead(real_mlx_engine):
    from parley.core.params import ReasoningBudget

    engine = real_mlx_engine
    prompt = _prompt(engine, "Reply with just OK.", "OK.")
    plain = _greedy(engine, prompt, 5)
    assert engine.is_end_of_generation(plain[0])  # without a budget the turn ends at once
    budget = ReasoningBudget(max_tokens=50, close_text=CLOSE, open_text="<think>", starts_open=True)
    out = _greedy(engine, prompt, 12, budget)
    assert out[:len(engine.tokenize(CLOSE))] == engine.tokenize(CLOSE)


def _cached_and_tokens(engine, prompt: list[int], max_tokens: int) -> tuple[int, list[int]]:
    import queue

    from parley.core.params import SamplingParams
    from parley.engines.base import Done, Started

    items: queue.SimpleQueue = queue.SimpleQueue()
    engine.submit(prompt, SamplingParams(max_tokens=max_tokens, temperature=0.0), items.put)
    cached, tokens = -1, []
    while not isinstance(item := items.get(timeout=300), Done):
        assert not isinstance(item, BaseException), item
        if isinstance(item, Started):
            cached = item.cached_tokens
        else:
            tokens.append(item.token)
    return cached, tokens


def test_conversations_taking_turns_each_continue_from_their_own_cache(real_mlx_engine):
    """An agent and its side requests on one MLX model: each conversation's next turn reads its whole previous
    turn from the kept caches (mlx-lm's LRUPromptCache), not just the prefix the two share."""
    from parley.core.messages import ChatMessage, Conversation

    engine = real_mlx_engine
    shared = "You are a careful assistant. " * 40  # a system prompt both conversations share

    def render(user: str) -> list[int]:
        return engine.tokenize(engine.chat_template.render(Conversation([ChatMessage("user", user)], system=shared)))

    first = {name: render(f"Conversation {name}: " + f"tell me about {name}. " * 30) for name in ("ships", "maps")}
    answers = {name: _cached_and_tokens(engine, prompt, 4)[1] for name, prompt in first.items()}
    for name, prompt in first.items():  # each next turn: its previous turn, then more
        held = prompt + answers[name]
        cached, _ = _cached_and_tokens(engine, held + engine.tokenize("\nAnd more, please."), 2)
        assert cached >= len(held) - 1, (name, cached, len(held))  # the old single cache: only `shared`'s tokens
    assert engine.stats()["kept_conversations"] >= 2 and engine.stats()["parked_bytes"] > 0


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
