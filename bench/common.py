"""What every benchmark script shares: free ports, starting and stopping servers, filler prompts that no cache
has seen, and reading a streamed response (SSE) with its timings."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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


def sse_events(url: str, path: str, body: dict, headers: dict[str, str] | None = None,
               timeout: float | None = None) -> Iterator[dict]:
    """POST a streaming request; its SSE `data:` payloads as they arrive (OpenAI's `[DONE]` left out)."""
    with httpx.stream("POST", url + path, json=body, timeout=timeout, headers=headers) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                yield json.loads(line[6:])


def stream_messages(url: str, body: dict, path: str = "/v1/messages") -> Iterator[dict]:
    """POST a streaming Messages request; its SSE events as they arrive."""
    yield from sse_events(url, path, body, {"anthropic-version": "2023-06-01", "x-api-key": "bench"})


def count_prompt() -> list[dict]:
    """A prompt whose answer is long and predictable: decode speed without an early end of turn."""
    return [{"role": "user", "content": f"[{uuid.uuid4().hex}] Count from 1 to 500, separated by spaces. "
                                        "Output only the numbers."}]


@dataclass
class Stream:
    """One streamed answer's timings: time to first token, first and last token times, tokens, text."""

    ttft: float = 0.0
    first: float = 0.0
    last: float = 0.0
    tokens: int = 0
    text: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)  # when the request went out

    @property
    def decode_tok_s(self) -> float:
        return (self.tokens - 1) / (self.last - self.first) if self.tokens > 1 and self.last > self.first else 0.0

    def token(self, text: str) -> None:
        """A piece of output arrived now."""
        self.last = time.perf_counter()
        if not self.first:
            self.first, self.ttft = self.last, self.last - self.started
        self.text.append(text)


def timed(events: Iterator[dict], text_of: Callable[[dict], str | None],
          tokens_of: Callable[[dict], int | None]) -> Stream:
    """Read a stream to its end: `text_of` says an event carries output, `tokens_of` the output token count."""
    out = Stream()
    for event in events:
        if (text := text_of(event)) is not None:
            out.token(text)
        if (tokens := tokens_of(event)) is not None:
            out.tokens = tokens
    return out
