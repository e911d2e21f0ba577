"""`parley pull` against a local stand-in for the Hugging Face hub (HF_ENDPOINT), then `parley models`
finding what it fetched; offline, it fails at once with a message that says why."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.fake_hub import fake_hub


@pytest.fixture(scope="module")
def hub(smol_file, tmp_path_factory):
    weights = tmp_path_factory.mktemp("weights")
    (weights / "config.json").write_text('{"model_type": "llama"}')
    (weights / "model.safetensors").write_bytes(os.urandom(4096))
    server = fake_hub({"acme/fake-GGUF/fake.Q4_1.gguf": smol_file,
                       "acme/tiny-hf/config.json": weights / "config.json",
                       "acme/tiny-hf/model.safetensors": weights / "model.safetensors",
                       "acme/readme-only/README.md": weights / "config.json"})
    yield f"http://127.0.0.1:{server.server_port}", weights
    server.shutdown()


def _parley(*args: str, endpoint: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PARLEY_HF"))}
    return subprocess.run([sys.executable, "-m", "parley.cli", *args], capture_output=True, text=True, timeout=300,
                          env={**environ, "HF_ENDPOINT": endpoint, **env})


def test_a_gguf_is_pulled_with_a_progress_bar_and_served_from_the_cache(hub, smol_file, tmp_path):
    endpoint, _ = hub
    pulled = _parley("pull", "acme/fake-GGUF", "--hf-cache-dir", str(tmp_path / "hf"), endpoint=endpoint)
    assert pulled.returncode == 0, pulled.stderr
    path = Path(pulled.stdout.splitlines()[0])
    assert path.name == "fake.Q4_1.gguf" and path.is_relative_to(tmp_path / "hf")
    assert path.read_bytes() == smol_file.read_bytes()
    assert "100%" in pulled.stderr and "fake.Q4_1.gguf" in pulled.stderr  # tqdm's bar, though not a terminal
    listed = _parley("models", endpoint=endpoint, PARLEY_HF_CACHE_DIR=str(tmp_path / "hf"))
    assert listed.returncode == 0, listed.stderr
    assert any(line.split()[0] == "acme/fake-GGUF" for line in listed.stdout.splitlines()[1:]), listed.stdout


def test_a_repo_without_gguf_is_pulled_as_a_model_directory(hub, tmp_path):
    endpoint, weights = hub
    pulled = _parley("pull", "acme/tiny-hf", "--hf-cache-dir", str(tmp_path / "hf"), endpoint=endpoint)
    assert pulled.returncode == 0, pulled.stderr
    folder = Path(pulled.stdout.splitlines()[0])
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert (folder / "model.safetensors").read_bytes() == (weights / "model.safetensors").read_bytes()


@pytest.mark.parametrize(("model", "says"), [
    ("acme/missing", "the hub has no such repo"),
    ("acme/fake-GGUF:other.gguf", "the repo has no such file"),
    ("acme/readme-only", "neither a .gguf file nor a model directory"),
    ("not-an-id", "is not a Hugging Face id"),
])
def test_what_cannot_be_pulled_is_named(hub, tmp_path, model, says):
    pulled = _parley("pull", model, "--hf-cache-dir", str(tmp_path / "hf"), endpoint=hub[0])
    assert pulled.returncode == 1 and pulled.stdout == ""
    assert pulled.stderr.startswith("parley pull: ") and says in pulled.stderr, pulled.stderr
    assert "Traceback" not in pulled.stderr


@pytest.mark.parametrize("offline", ["unreachable", "HF_HUB_OFFLINE"])
def test_offline_it_fails_at_once(tmp_path, offline):
    env = {"HF_HUB_OFFLINE": "1"} if offline == "HF_HUB_OFFLINE" else {}
    started = time.monotonic()
    # Port 9 (discard) on loopback: nothing listens, the connect is refused.
    pulled = _parley("pull", "acme/fake-GGUF", "--hf-cache-dir", str(tmp_path / "hf"),
                     endpoint="http://127.0.0.1:9", PARLEY_HUB_TIMEOUT="3", **env)
    took = time.monotonic() - started
    assert pulled.returncode == 1, pulled.stderr
    expected = "HF_HUB_OFFLINE is set" if env else "127.0.0.1:9 is unreachable"
    assert expected in pulled.stderr and "Traceback" not in pulled.stderr, pulled.stderr
    assert took < 60, took  # no retry loop with back-off (generous: the interpreter's start is most of it)
    assert not (tmp_path / "hf").exists() or not any((tmp_path / "hf").rglob("*.gguf"))
