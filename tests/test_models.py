"""Model discovery, the models endpoints (paging included) and `parley models`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anthropic
import pytest

from conftest import QWEN, SMOL


@pytest.fixture(scope="module")
def places(tmp_path_factory, smol_file) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    explicit = root / "explicit" / "my-model.gguf"
    models_dir = root / "dir"
    hf = root / "hf"
    snapshot = hf / "models--acme--tiny-GGUF" / "snapshots" / "abc123"
    for folder in (explicit.parent, models_dir, snapshot):
        folder.mkdir(parents=True)
    explicit.symlink_to(smol_file)
    (models_dir / "dir-model.gguf").symlink_to(smol_file)
    (snapshot / "tiny.Q4.gguf").symlink_to(smol_file)
    (models_dir / "broken.gguf").write_bytes(b"not a gguf at all")
    return {"explicit": explicit, "models_dir": models_dir, "hf": hf}


EXPECTED = [QWEN, SMOL, "my-model", "dir-model", "acme/tiny-GGUF"]  # broken.gguf is corrupt: left out


@pytest.fixture(scope="module")
def catalogue_server(start_server, places):
    return start_server("--model", str(places["explicit"]), "--models-dir", str(places["models_dir"]),
                        hf_cache_dir=str(places["hf"]))


def test_discovery_order(catalogue_server):
    listed = catalogue_server.client().models.list(limit=100)
    assert [m.id for m in listed.data] == EXPECTED
    assert listed.has_more is False and listed.first_id == QWEN and listed.last_id == "acme/tiny-GGUF"


def test_paging(catalogue_server):
    client = catalogue_server.client()
    page = client.models.list(limit=2)
    assert [m.id for m in page.data] == EXPECTED[:2]
    assert page.has_more is True and page.first_id == QWEN and page.last_id == SMOL
    after = client.models.list(limit=2, after_id=SMOL)
    assert [m.id for m in after.data] == EXPECTED[2:4] and after.has_more is True
    before = client.models.list(limit=2, before_id="acme/tiny-GGUF")
    assert [m.id for m in before.data] == EXPECTED[2:4] and before.has_more is True
    assert [m.id for m in client.models.list(limit=2).iter_pages().__next__().data] == EXPECTED[:2]
    assert [m.id for m in client.models.list(limit=2)] == EXPECTED  # the SDK's auto-paging follows has_more
    with pytest.raises(anthropic.BadRequestError):
        client.models.list(after_id="nope")


def test_retrieve_including_slashed_ids(catalogue_server):
    client = catalogue_server.client()
    model = client.models.retrieve("acme/tiny-GGUF")
    assert model.id == "acme/tiny-GGUF" and model.type == "model"
    assert client.models.retrieve(QWEN).display_name


def test_model_info_carries_the_served_shape(catalogue_server, smol_file):
    """SDK 2.14's ModelInfo: the served context (SmolLM2 trained on 8k, below the 32k setting), capabilities
    with every key, lifecycle, the file's date; once loaded, the context is the engine's own."""
    client = catalogue_server.client()
    model = client.models.retrieve("my-model")
    assert model.max_input_tokens == model.max_tokens == 8191  # one cell of the 8k stays for the answer
    assert model.lifecycle == "active" and model.deprecated_at is None
    assert model.created_at.timestamp() == int(smol_file.stat().st_mtime)
    caps = model.capabilities
    assert caps.structured_outputs.supported and caps.pdf_input.supported and caps.batch.supported
    assert not caps.image_input.supported and not caps.thinking.supported and caps.thinking.types.disabled.supported
    assert caps.context_management.clear_tool_uses_20250919.supported
    client.messages.create(model="my-model", max_tokens=1, messages=[{"role": "user", "content": "hi"}])
    loaded = catalogue_server.health()["models"]["my-model"]["cache_capacity"]
    assert client.models.retrieve("my-model").max_input_tokens == loaded - 1
    assert client.models.retrieve(QWEN).max_input_tokens == 32767  # the setting: Qwen was trained on 32k


def _prompt_of(client, model: str, tokens: int) -> list[dict]:
    """Messages whose prompt is exactly `tokens` long, as count_tokens counts it (one token a word here)."""
    words = tokens
    for _ in range(5):
        messages = [{"role": "user", "content": "a " * words}]
        counted = client.messages.count_tokens(model=model, messages=messages).input_tokens
        if counted == tokens:
            return messages
        words += tokens - counted
    raise AssertionError(f"no prompt of exactly {tokens} tokens found (last: {counted})")


def test_the_advertised_window_is_the_refusal_threshold(catalogue_server):
    """What /v1/models says is what the server takes: a prompt of max_input_tokens is answered, one token more
    is the API's own 400 naming both numbers."""
    client = catalogue_server.client()
    limit = client.models.retrieve("my-model").max_input_tokens
    fits = client.messages.create(model="my-model", max_tokens=1, messages=_prompt_of(client, "my-model", limit))
    assert fits.usage.input_tokens + fits.usage.cache_read_input_tokens == limit
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model="my-model", max_tokens=1, messages=_prompt_of(client, "my-model", limit + 1))
    assert info.value.body["error"]["message"] == f"prompt is too long: {limit + 1} tokens > {limit} maximum"


def test_reasoning_templates_show_thinking(think_server):
    listed = {m.id: m for m in think_server.client().models.list(limit=100)}
    assert listed["smollm2-think"].capabilities.thinking.supported
    assert listed["smollm2-think"].capabilities.thinking.types.enabled.supported
    assert not listed[QWEN].capabilities.thinking.supported


def test_openai_client_reads_the_same_list(catalogue_server):
    import openai

    oai = openai.OpenAI(base_url=catalogue_server.url + "/v1", api_key="x")
    assert [m.id for m in oai.models.list()] == EXPECTED


def test_discovered_models_generate(catalogue_server):
    client = catalogue_server.client()
    for model_id in ("my-model", "dir-model", "acme/tiny-GGUF"):
        message = client.messages.create(model=model_id, max_tokens=2, messages=[{"role": "user", "content": "hi"}])
        assert message.model == model_id and message.usage.output_tokens >= 1


def test_invalid_model_file_is_skipped_and_a_404(catalogue_server):
    with pytest.raises(anthropic.NotFoundError) as info:
        catalogue_server.client().messages.create(model="broken", max_tokens=2,
                                                  messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["error"]["type"] == "not_found_error"
    assert "broken.gguf is not usable: not a GGUF file" in info.value.message
    assert catalogue_server.health()["status"] == "ok"


def test_cli_models_lists_the_same(places):
    out = subprocess.run(
        [sys.executable, "-m", "parley.cli", "models", "--model", str(places["explicit"]),
         "--models-dir", str(places["models_dir"])],
        capture_output=True, text=True, check=True, env={**os.environ, "PARLEY_HF_CACHE_DIR": str(places["hf"])},
    ).stdout
    rows = [line.split() for line in out.splitlines()[1:]]  # below the header: ID first, STATUS last
    assert [row[0] for row in rows if row[-1] in ("ok", "default")] == EXPECTED
    assert any(row[0] == "broken" and "corrupt:" in row for row in rows)


def test_rope_scaling_is_a_setting_that_lengthens_the_served_context(start_server):
    """YaRN by --rope-scaling-factor: SmolLM2 (trained on 8k) is served with 16k when asked, and the list says
    so before and after loading; without the setting parley never serves past the trained length."""
    scaled = start_server("--rope-scaling-factor", "2")
    client = scaled.client()
    assert client.models.retrieve(SMOL).max_input_tokens == 16383
    assert client.models.retrieve(QWEN).max_input_tokens == 32767  # --n-ctx (32768) is below 2 × 32k
    reply = client.messages.create(model=SMOL, max_tokens=4, messages=[{"role": "user", "content": "hi"}])
    assert reply.usage.output_tokens >= 1
    assert scaled.health()["models"][SMOL]["cache_capacity"] == 16384
    assert client.models.retrieve(SMOL).max_input_tokens == 16383
