"""Finding a parley server for the client commands, or starting one in the background; the agents that
`parley launch` runs against it, and where they are installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..settings import Settings

START_TIMEOUT = 120.0  # seconds: the server answers /health before any model loads


class ServerError(Exception):
    """No usable parley at the URL: the message says what was found instead."""


@dataclass
class Found:
    url: str
    health: dict[str, Any]
    started_pid: int | None = None  # set when this command started the server
    log: Path | None = None


# Room for one turn of work (a tool result and an answer) between an agent's first request and its compaction.
WORKING_ROOM = 4096


@dataclass(frozen=True)
class Agent:
    """An agent `parley launch` runs: what it is called, how it is installed and found, and the size of its
    first request (which the served context must hold)."""

    name: str  # in messages: "Claude Code"
    command: str  # its executable: "claude"
    package: str  # its npm package, for the install hint
    prompt_tokens: int  # its first request, counted by parley with the packaged Qwen's tokenizer
    # The conversation size (tokens) at which the agent, as `parley launch` configures it for a window of this
    # many tokens, compacts its history.
    compacts_at: Callable[[int], int]
    places: tuple[str, ...] = ()  # where its own installer puts it, under the home directory

    def window_needed(self) -> int:
        """The smallest window in which the agent compacts only after its first request and a turn of work
        (WORKING_ROOM tokens) fit: below it, it compacts on every turn or is refused."""
        low, high = self.prompt_tokens, 1 << 22
        while low < high:  # compacts_at grows with the window
            middle = (low + high) // 2
            low, high = (middle + 1, high) if self.compacts_at(middle) < self.prompt_tokens + WORKING_ROOM \
                else (low, middle)
        return low

    def binary(self) -> Path | None:
        """The agent on PATH, else in npm's global prefix, else where its own installer puts it."""
        if found := shutil.which(self.command):
            return Path(found)
        places = [Path.home() / place for place in self.places]
        if prefix := _npm_global_prefix():
            places.insert(0, prefix / "bin" / self.command)
        return next((p for p in places if p.is_file() and os.access(p, os.X_OK)), None)


@dataclass
class Target:
    """The server an agent is launched against, and the model it will use there."""

    server: Found
    token: str | None  # the server's API key, if it needs one
    model: str
    info: dict[str, Any]  # the model's `GET /v1/models` entry

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def context(self) -> int:
        """The longest prompt the server takes for the model (`max_input_tokens`: its context less the one
        token an answer needs), 0 when the server does not say."""
        return int(self.info.get("max_input_tokens") or 0)


def _npm_global_prefix() -> Path | None:
    if (npm := shutil.which("npm")) is None:
        return None
    try:
        prefix = subprocess.run([npm, "prefix", "-g"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return Path(prefix) if prefix else None


def default_url(settings: Settings) -> str:
    return os.environ.get("PARLEY_URL") or f"http://{settings.host}:{settings.port}"


def probe(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The server's /health when a parley answers at `url`; None when nothing listens there."""
    try:
        response = httpx.get(url.rstrip("/") + "/health", timeout=timeout)
    except httpx.ConnectError:
        return None
    except httpx.HTTPError as exc:
        raise ServerError(f"{url} did not answer /health: {exc}") from exc
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict) or body.get("server") != "parley":
        raise ServerError(f"something other than parley is listening at {url} (GET /health → "
                          f"{response.status_code})")
    return body


def find_or_start(url: str, settings: Settings) -> Found:
    """The parley at `url`, or, if nothing listens there and it is this machine, a `parley serve` started in
    its own session (so it outlives this command and the terminal's signals) on that host and port."""
    if (health := probe(url)) is not None:
        return Found(url, health)
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ServerError(f"no server answers at {url}, and parley starts one only on this machine")
    log = settings.data_dir / "logs" / "serve.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    port = parts.port or settings.port
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "parley.cli", "serve", "--host", parts.hostname,
                                 "--port", str(port)], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"parley serve exited with status {proc.returncode}; see {log}")
        if (health := probe(url)) is not None:
            return Found(url, health, proc.pid, log)
        time.sleep(0.3)
    proc.terminate()
    raise ServerError(f"parley serve did not answer at {url} within {START_TIMEOUT:.0f} s; see {log}")


def list_models(url: str, api_key: str | None) -> list[dict[str, Any]]:
    """Every model the server lists (all pages of `GET /v1/models`)."""
    headers = {"x-api-key": api_key} if api_key else {}
    models: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 1000}
    while True:
        response = httpx.get(url.rstrip("/") + "/v1/models", params=params, headers=headers, timeout=10)
        if response.status_code != 200:
            raise ServerError(f"GET {url}/v1/models → {response.status_code}: {_message(response)}")
        page = response.json()
        models += page["data"]
        if not page.get("has_more"):
            return models
        params["after_id"] = page["last_id"]


def _message(response: httpx.Response) -> str:
    try:
        return response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return response.text[:200]
