"""Model management: Hugging Face ids offline, `parley models`, corrupt files, aliases and per-model settings
from the config file, and the loaded-models limit (LRU) and idle expiry."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import httpx
import psutil
import pytest

from conftest import QWEN, SMOL
from parley.models import registry as registry_module
from parley.models.registry import ModelRegistry
from parley.settings import Settings
from support.fake_hub import fake_hub
from support.scripted import ScriptedEngine

HI = [{"role": "user", "content": "hi"}]
# One llama.cpp thread per server: on a 2-core machine shared with other work, two threads spin on each other.
CONFIG = f"""
[aliases]
"claude-*" = "{QWEN}"
"fast" = "{SMOL}"

[models."{SMOL}"]
n_ctx = 2048
n_threads = 1
n_batch = 256
"""


@pytest.fixture(scope="module")
def setup_dir(tmp_path_factory, smol_file) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("management")
    models_dir = root / "models"
    models_dir.mkdir()
    (models_dir / "broken.gguf").write_bytes(b"not a gguf at all")
    (models_dir / "truncated.gguf").write_bytes(smol_file.read_bytes()[:4096])  # good magic, header cut short
    (root / "parley.toml").write_text(CONFIG)
    (root / "other-smol.gguf").symlink_to(smol_file)
    return {"models_dir": models_dir, "config": root / "parley.toml", "other": root / "other-smol.gguf",
            "hf": root / "hf"}


@pytest.fixture(scope="module")
def managed(start_server, setup_dir):
    return start_server("--models-dir", str(setup_dir["models_dir"]), "--config", str(setup_dir["config"]),
                        hf_cache_dir=str(setup_dir["hf"]), n_threads="1")


def _error(response: httpx.Response, status: int, error_type: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == error_type
    return body["error"]["message"]


@pytest.mark.parametrize("model_id", ["parley-tests/no-such-model-GGUF", "parley-tests/nothing-GGUF:model.Q4.gguf"])
def test_hf_id_not_reachable_is_a_prompt_404(managed, setup_dir, model_id):
    # The client timeout bounds the wait: the hub is unreachable here and must not be retried for long.
    response = httpx.post(managed.url + "/v1/messages", timeout=15,
                          json={"model": model_id, "max_tokens": 2, "messages": HI})
    message = _error(response, 404, "not_found_error")
    repo, _, filename = model_id.partition(":")
    assert f"'{repo}'" in message, message
    assert "--models-dir" in message and "Hugging Face cache" in message, message  # places searched, named
    assert str(setup_dir["models_dir"]) not in message and str(setup_dir["hf"]) not in message  # not revealed
    if filename:
        assert filename in message


def test_hf_id_is_downloaded_when_the_hub_answers(start_server, tmp_path, smol_file, monkeypatch):
    hub = fake_hub({"acme/fake-GGUF/fake.Q4_1.gguf": smol_file})
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{hub.server_port}")
    server = start_server(hf_cache_dir=str(tmp_path / "hf"), n_threads="1")
    try:
        message = server.client().messages.create(model="acme/fake-GGUF:fake.Q4_1.gguf", max_tokens=2, messages=HI)
    finally:
        hub.shutdown()
    assert message.usage.output_tokens >= 1
    assert list(server.health()["models"]) == ["acme/fake-GGUF"]  # as the HF cache now lists it
    assert "acme/fake-GGUF" in [m.id for m in server.client().models.list(limit=100)]
    assert list((tmp_path / "hf").glob("models--acme--fake-GGUF/snapshots/*/fake.Q4_1.gguf"))


def test_cli_models_table(setup_dir):
    out = subprocess.run(
        [sys.executable, "-m", "parley.cli", "models", "--models-dir", str(setup_dir["models_dir"]),
         "--config", str(setup_dir["config"])],
        capture_output=True, text=True, check=True, timeout=60,
        env={**os.environ, "PARLEY_HF_CACHE_DIR": str(setup_dir["hf"])},
    ).stdout
    lines = out.splitlines()
    header = lines[0].split()
    assert header == ["ID", "ENGINE", "FILE", "SIZE", "ARCH", "CONTEXT", "QUANT", "TOOLS", "REASONING", "STATUS"]
    rows = {line.split()[0]: line for line in lines[1:]}
    qwen = rows[QWEN].split()
    assert qwen[1] == "llamacpp"
    assert [qwen[i] for i in (-6, -5, -4, -3, -2, -1)] == ["qwen2", "32768", "Q4_K_M", "yes", "no", "default"]
    smol = rows[SMOL].split()
    assert [smol[i] for i in (-6, -5, -4, -3, -2, -1)] == ["llama", "8192", "Q4_1", "no", "no", "ok"]
    assert "corrupt: not a GGUF file (bad magic)" in rows["broken"]
    assert "corrupt: header ends early" in rows["truncated"]
    assert "→ " + SMOL in rows["fast"] and rows["fast"].rstrip().endswith("alias")
    assert rows["claude-*"].rstrip().endswith("alias pattern")


def test_cli_models_table_follows_the_reasoning_parser_chosen(setup_dir):
    """REASONING says what a request would get: the parser named (here for every model) beats the template."""
    out = subprocess.run(
        [sys.executable, "-m", "parley.cli", "models", "--models-dir", str(setup_dir["models_dir"]),
         "--config", str(setup_dir["config"])],
        capture_output=True, text=True, check=True, timeout=60,
        env={**os.environ, "PARLEY_HF_CACHE_DIR": str(setup_dir["hf"]), "PARLEY_REASONING_PARSER": "think"},
    ).stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows[QWEN][-2] == "yes" and rows[SMOL][-2] == "yes"  # "no" by their templates (the test above)


def test_corrupt_files_are_left_out_and_exact_aliases_listed(managed):
    listed = managed.client().models.list(limit=100)
    assert [m.id for m in listed.data] == [QWEN, SMOL, "fast"]
    assert listed.data[-1].display_name == f"fast → {SMOL}"
    with pytest.raises(anthropic.NotFoundError) as info:
        managed.client().messages.create(model="truncated", max_tokens=2, messages=HI)
    assert "header ends early" in info.value.message


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK's notice about the real claude-sonnet-4-5
def test_aliases_share_their_targets_engine(managed):
    client = managed.client()
    via_pattern = client.messages.create(model="claude-sonnet-4-5", max_tokens=2, messages=HI)
    assert via_pattern.model == "claude-sonnet-4-5" and via_pattern.usage.output_tokens >= 1
    via_exact = client.messages.create(model="fast", max_tokens=2, messages=HI)
    assert via_exact.usage.output_tokens >= 1
    client.messages.create(model=SMOL, max_tokens=2, messages=HI)
    assert sorted(managed.health()["models"]) == sorted([QWEN, SMOL])  # one load per model, under its own id
    assert client.models.retrieve("claude-opus-4-1").display_name == f"claude-opus-4-1 → {QWEN}"


def test_per_model_n_ctx_from_the_config(managed):
    long_prompt = [{"role": "user", "content": "hello " * 2500}]
    response = httpx.post(managed.url + "/v1/messages", timeout=60,
                          json={"model": "fast", "max_tokens": 2, "messages": long_prompt})
    message = _error(response, 400, "invalid_request_error")
    assert re.fullmatch(r"prompt is too long: \d+ tokens > 2047 maximum", message), message


def test_least_recently_used_model_makes_room(start_server, setup_dir):
    server = start_server("--model", str(setup_dir["other"]), max_loaded_models="1", n_threads="1")
    client = server.client()
    pids = []
    for model_id in (SMOL, "other-smol", SMOL):
        client.messages.create(model=model_id, max_tokens=2, messages=HI)
        assert list(server.health()["models"]) == [model_id]
        pids.append(server.health()["models"][model_id]["pid"])
    # An unloaded model's process is stopped once it has surely been idle for the grace period (10 s).
    deadline = time.monotonic() + 30
    while any(psutil.pid_exists(pid) for pid in pids[:2]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [psutil.pid_exists(pid) for pid in pids] == [False, False, True]


class _Engine(ScriptedEngine):
    def __init__(self) -> None:
        super().__init__([b"x"])
        self.closed = False

    def close(self) -> None:
        self.closed = True


async def closed(engine: _Engine) -> None:
    for _ in range(200):
        if engine.closed:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the engine was not closed")


def test_busy_models_stay_and_idle_ones_expire(monkeypatch, setup_dir, smol_file):
    """In-process, with stand-in engines: a model with a request admitted is never unloaded."""
    monkeypatch.setattr(registry_module, "GRACE_SECONDS", 0.0)
    settings = Settings(models=[str(setup_dir["other"]), str(smol_file)], max_loaded_models=1,
                        model_ttl_seconds=0.2, hf_cache_dir=setup_dir["hf"])
    registry = ModelRegistry(settings)
    engines: dict[str, _Engine] = {}
    monkeypatch.setattr(registry, "_load", lambda entry, name, asked: engines.setdefault(name, _Engine()))

    async def scenario() -> None:
        busy = (await registry.runner("other-smol")).admit()
        also_busy = (await registry.runner(SMOL)).admit()  # the other one is busy: loaded anyway, over the limit
        registry.maintain()
        assert sorted(registry.loaded) == sorted(["other-smol", SMOL]) and not engines["other-smol"].closed
        busy.release()
        registry.maintain()  # evicted later, once idle (closed on a thread of its own)
        await closed(engines["other-smol"])
        assert list(registry.loaded) == [SMOL] and not engines[SMOL].closed
        also_busy.release()
        await asyncio.sleep(0.3)
        registry.maintain()  # idle past the TTL
        await closed(engines[SMOL])
        assert registry.loaded == {}
        registry.close()

    asyncio.run(scenario())
