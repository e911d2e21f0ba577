"""Engines are named in one table (engines/registry.py); features are declared by each engine and checked in
one place. (That imports point down is checked file by file by scripts/import_graph.py: test_import_graph.py.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from support.reasoning_model import QWEN3_STYLE_TEMPLATE


def test_the_engine_table_drives_the_cli():
    from parley.engines.registry import ENGINES

    help_text = subprocess.run([sys.executable, "-m", "parley.cli", "serve", "--help"], capture_output=True,
                               text=True, check=True).stdout
    assert "{auto," + ",".join(ENGINES) + "}" in help_text.replace(" ", "").replace("\n", "")
    bad = subprocess.run([sys.executable, "-m", "parley.cli", "serve", "--engine", "nope"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "invalid choice: 'nope'" in bad.stderr


def test_engine_for_a_format():
    from parley.engines.registry import ENGINES, engine_for

    assert engine_for("gguf").name == "llamacpp"
    assert engine_for("hf-dir").name in ("mlx", "vllm")
    assert engine_for("hf-dir", "vllm") is ENGINES["vllm"]
    with pytest.raises(ValueError, match="the mlx engine serves hf-dir models, not gguf"):
        engine_for("gguf", "mlx")


def test_a_config_that_names_an_unknown_engine_is_refused(tmp_path):
    config = tmp_path / "models.toml"
    config.write_text('[models."smollm2-135m-instruct"]\nengine = "tensorrt"\n')
    out = subprocess.run([sys.executable, "-m", "parley.cli", "models", "--config", str(config)],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "models.\"smollm2-135m-instruct\".engine must be one of ('auto', 'llamacpp', 'mlx', 'vllm')" in out.stderr


def test_a_model_pinned_to_an_engine_for_another_format_is_listed_unavailable(tmp_path):
    config = tmp_path / "models.toml"
    config.write_text('[models."smollm2-135m-instruct"]\nengine = "mlx"\n')
    out = subprocess.run([sys.executable, "-m", "parley.cli", "models", "--config", str(config)],
                         capture_output=True, text=True, check=True).stdout
    row = next(line for line in out.splitlines() if line.startswith("smollm2-135m-instruct"))
    assert "unavailable: the mlx engine serves hf-dir models, not gguf" in row


@pytest.fixture(scope="module")
def mlx_reasoning_server(start_server, mlx_dir, tmp_path_factory):
    """The tiny MLX model with a reasoning template."""
    from test_engines import with_template

    models = tmp_path_factory.mktemp("mlx-think")
    with_template(mlx_dir, models / "tiny-think-mlx", QWEN3_STYLE_TEMPLATE)
    return start_server("--models-dir", str(models))


def test_a_thinking_budget_below_max_tokens_runs_on_mlx(mlx_reasoning_server):
    """MLX closes the reasoning itself (features.forced_reasoning_close): a budget below max_tokens is no 400.
    (A request needing what an engine lacks is a 400: test_fit_to_engine_never_hands_an_engine_what_it_lacks.)"""
    client = mlx_reasoning_server.client()
    client.messages.create(model="tiny-think-mlx", max_tokens=1, messages=[{"role": "user", "content": "Hi"}])
    state = mlx_reasoning_server.health()["models"]["tiny-think-mlx"]
    assert state["engine"] == "mlx" and "forced_reasoning_close" in state["features"]
    message = client.messages.create(model="tiny-think-mlx", max_tokens=1100,
                                     messages=[{"role": "user", "content": "Hi"}],
                                     thinking={"type": "enabled", "budget_tokens": 1024},
                                     extra_body={"temperature": 0})
    assert message.content[0].type == "thinking"  # closed by the engine at the budget, or where the turn would end
    assert message.stop_reason in ("end_turn", "max_tokens")
    # Adaptive thinking runs too.
    message = client.messages.create(model="tiny-think-mlx", max_tokens=8, messages=[{"role": "user", "content": "Hi"}],
                                     thinking={"type": "adaptive"})
    assert message.stop_reason in ("end_turn", "max_tokens")


def test_health_names_each_loaded_models_engine(server, client):
    from conftest import SMOL

    client.messages.create(model=SMOL, max_tokens=1, messages=[{"role": "user", "content": "Hi"}])
    state = server.health()["models"][SMOL]
    assert state["engine"] == "llamacpp"
    assert state["features"] == ["forced_reasoning_close", "lazy_grammar", "logprobs", "batching"]


def test_fit_to_engine_never_hands_an_engine_what_it_lacks():
    """Any engine, any request: either a 400, or a request the engine can run (a lazy grammar only dropped)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from parley.core.params import GrammarConstraint, ReasoningBudget, SamplingParams
    from parley.engines.features import EngineFeatures, fit_to_engine
    from parley.errors import InvalidRequestError

    features = st.builds(EngineFeatures, st.booleans(), st.booleans(), st.booleans(), st.booleans())
    grammars = st.none() | st.builds(GrammarConstraint, st.just("root ::= \"x\""), st.booleans(),
                                     st.just(("x",)))
    budgets = st.none() | st.builds(ReasoningBudget, st.integers(1, 5000), st.just("</think>"), st.just("<think>"),
                                    st.booleans())
    requests = st.builds(SamplingParams, st.integers(1, 5000), grammar=grammars, reasoning_budget=budgets,
                         logprobs=st.none() | st.integers(0, 20))

    @settings(max_examples=300, deadline=None)
    @given(features, requests)
    def check(offered, params):
        try:
            fitted = fit_to_engine(offered, params, "test")
        except InvalidRequestError as exc:
            assert "not supported by the test engine" in exc.message
            needs_close = params.reasoning_budget is not None and params.reasoning_budget.max_tokens < params.max_tokens
            assert (needs_close and not offered.forced_reasoning_close) or (
                params.logprobs is not None and not offered.logprobs)
            return
        assert offered.logprobs or fitted.logprobs is None
        assert offered.lazy_grammar or not (fitted.grammar and fitted.grammar.lazy)
        assert fitted.grammar == params.grammar or (params.grammar.lazy and fitted.grammar is None)
        assert fitted.reasoning_budget == params.reasoning_budget

    check()
