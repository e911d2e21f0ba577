"""What every benchmark script shares: free ports, and filler prompts that no cache has seen."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx

FILLER = ("The harbour town kept its records in a long ledger: ships that came in, what they carried, who "
          "paid the duty and who argued about it. Entry {i}: a schooner with {n} barrels of salt fish, "
          "a dispute over weights, settled by the harbour master before noon. ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def filler(tokens: int) -> str:
    """Text of roughly `tokens` tokens, opened by a nonce so that no cache holds any of it."""
    one = len(FILLER.split()) * 1.3
    return f"[{uuid.uuid4().hex}] " + "".join(FILLER.format(i=i, n=i * 7 % 90) for i in range(int(tokens / one)))


def wait_healthy(proc: subprocess.Popen, url: str, timeout: float, what: str) -> None:
    """Until `url`/health answers 200; raises if the process exits or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not come up in {timeout:.0f} s")


def start_parley(*args: str, timeout: float = 300, env: dict[str, str] | None = None,
                 log: Path | None = None) -> tuple[subprocess.Popen, str]:
    """`parley serve ARGS` on a free port (with `env` added to the environment, its output into `log` if
    given), once healthy: the process and its URL."""
    port = free_port()
    with open(log or os.devnull, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "parley.cli", "serve", "--port", str(port), *args],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, url, timeout, "parley")
    except RuntimeError as exc:
        stop_process(proc)
        raise RuntimeError(f"{exc}; log tail:\n{log_tail(log)}" if log else str(exc)) from None
    return proc, url


def stop_process(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, and SIGKILL if it has not exited after `timeout` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def log_tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError as exc:
        return f"(no log: {exc})"


def stream_messages(url: str, body: dict, path: str = "/v1/messages") -> Iterator[dict]:
    """POST a streaming Messages request; its SSE events as they arrive."""
    with httpx.stream("POST", url + path, json=body, timeout=None,
                      headers={"anthropic-version": "2023-06-01", "x-api-key": "bench"}) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: "):
                yield json.loads(line[6:])
