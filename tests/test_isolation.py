"""A native crash costs the requests in flight, not the server: each model runs in a supervised child process.

Faults are real: the test-only `fault_injection` setting makes the child read address 0 (SIGSEGV) or call
abort() at a chosen token of a marked request, or the test SIGKILLs the child by the pid /health gives.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from conftest import SMOL, Server

URL = "/v1/messages"
CRASHED = "the model process crashed"


def body(text: str, max_tokens: int = 40, stream: bool = False) -> dict:
    return {"model": SMOL, "max_tokens": max_tokens, "stream": stream, "temperature": 0,
            "messages": [{"role": "user", "content": text}]}


def model_state(server: Server) -> dict:
    return server.health()["models"][SMOL]


class StreamReader(threading.Thread):
    """Reads one SSE stream in the background; `first_delta` is set once text has arrived."""

    def __init__(self, server: Server, request: dict) -> None:
        super().__init__(daemon=True)
        self.url, self.request = server.url + URL, request
        self.events: list[tuple[str, dict]] = []
        self.first_delta = threading.Event()

    def run(self) -> None:
        with httpx.stream("POST", self.url, json=self.request, timeout=120) as response:
            assert response.status_code == 200
            name = None
            for line in response.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    self.events.append((name, json.loads(line[6:])))
                    if name == "content_block_delta":
                        self.first_delta.set()
        self.first_delta.set()

    def names(self) -> list[str]:
        return [n for n, _ in self.events if n != "ping"]


def assert_crash_event(reader: StreamReader) -> None:
    names = reader.names()
    assert names[0] == "message_start" and "content_block_delta" in names, names
    assert names[-1] == "error" and "message_stop" not in names, names  # the error event ends the stream
    error = reader.events[-1][1]
    assert error["type"] == "error" and error["error"]["type"] == "api_error", error
    assert CRASHED in error["error"]["message"] and "restarting" in error["error"]["message"], error


def wait_restarted(server: Server, restarts: int, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = model_state(server)
        if state["restarts"] >= restarts and state["pid"]:
            return state
        time.sleep(0.05)
    raise AssertionError(f"no restart within {timeout} s: {model_state(server)}")


@pytest.fixture(scope="module")
def faulty(start_server) -> Server:
    server = start_server("--parallel", "2", fault_injection="1")
    assert httpx.post(server.url + URL, json=body("Hi", 4), timeout=120).status_code == 200  # loaded
    return server


def test_segfault_ends_every_stream_in_flight_and_the_next_request_succeeds(faulty):
    before = model_state(faulty)
    assert psutil.Process(before["pid"]).ppid() == faulty.proc.pid  # the model runs in a child of the server
    bystander = StreamReader(faulty, body("Write a long story about a lighthouse keeper.", 1000, stream=True))
    bystander.start()
    assert bystander.first_delta.wait(60)
    culprit = StreamReader(faulty, body("Tell me about the sea. parley-fault:segv@6", 300, stream=True))
    culprit.start()
    culprit.join(60)
    bystander.join(60)
    assert_crash_event(culprit)
    assert_crash_event(bystander)
    assert "SIGSEGV" in culprit.events[-1][1]["error"]["message"]
    started = time.monotonic()
    answer = httpx.post(faulty.url + URL, json=body("Say hello."), timeout=60)
    assert answer.status_code == 200 and answer.json()["content"][0]["text"], answer.text
    assert time.monotonic() - started < 10
    after = model_state(faulty)
    assert after["restarts"] == before["restarts"] + 1 and after["crashes"] == before["crashes"] + 1
    assert after["pid"] != before["pid"] and not psutil.pid_exists(before["pid"])
    metrics = httpx.get(faulty.url + "/metrics").text
    assert f'parley_model_process_restarts_total{{model="{SMOL}"}} {float(after["restarts"])}' in metrics


def test_abort_is_a_500_in_the_envelope_for_a_non_streaming_request(faulty):
    before = model_state(faulty)
    response = httpx.post(faulty.url + URL, json=body("Hello there. parley-fault:abort@3"), timeout=60)
    assert response.status_code == 500, response.text
    assert response.json()["type"] == "error" and response.json()["error"]["type"] == "api_error"
    assert CRASHED in response.json()["error"]["message"] and "SIGABRT" in response.json()["error"]["message"]
    assert response.headers["request-id"]
    wait_restarted(faulty, before["restarts"] + 1)
    assert httpx.post(faulty.url + URL, json=body("Say hello."), timeout=60).status_code == 200


def test_sigkill_from_outside_and_the_openai_route(faulty):
    before = model_state(faulty)
    reader = StreamReader(faulty, body("Write a long story about a lighthouse keeper.", 1000, stream=True))
    reader.start()
    assert reader.first_delta.wait(60)
    os.kill(before["pid"], signal.SIGKILL)
    reader.join(30)
    assert_crash_event(reader)
    assert "SIGKILL" in reader.events[-1][1]["error"]["message"]
    wait_restarted(faulty, before["restarts"] + 1)
    # The OpenAI route maps the same failure to its own envelope.
    pid = model_state(faulty)["pid"]
    chat = {"model": SMOL, "max_tokens": 300, "messages": [{"role": "user", "content": "Write a long poem."}]}
    killer = threading.Timer(0.5, os.kill, (pid, signal.SIGKILL))
    killer.start()
    response = httpx.post(faulty.url + "/v1/chat/completions", json=chat, timeout=60)
    killer.join()
    assert response.status_code == 500 and response.json()["error"]["type"] == "api_error", response.text
    assert CRASHED in response.json()["error"]["message"]
    wait_restarted(faulty, before["restarts"] + 2)


def test_a_queued_request_waits_for_the_restart_and_then_runs(start_server):
    server = start_server("--parallel", "1", fault_injection="1")
    culprit = StreamReader(server, body("Tell me about ships. parley-fault:segv@60", 300, stream=True))
    culprit.start()
    assert culprit.first_delta.wait(120)
    assert model_state(server)["busy_slots"] == 1
    response = httpx.post(server.url + URL, json=body("Say hello.", 16), timeout=60)  # queued behind the culprit
    culprit.join(30)
    assert_crash_event(culprit)
    assert response.status_code == 200 and response.json()["usage"]["output_tokens"] >= 1, response.text
    assert model_state(server)["restarts"] == 1


def wait_admitted(server: Server, count: int) -> None:
    deadline = time.monotonic() + 30
    while model_state(server)["admitted"] < count:
        assert time.monotonic() < deadline, model_state(server)
        time.sleep(0.02)


def test_a_request_queued_through_two_crashes_is_not_taken_for_their_cause(start_server):
    server = start_server("--parallel", "1", fault_injection="1")
    first = StreamReader(server, body("Tell me about ships. parley-fault:segv@60", 300, stream=True))
    first.start()
    assert first.first_delta.wait(120)
    second = StreamReader(server, body("Tell me about boats. parley-fault:segv@60", 300, stream=True))
    second.start()  # queued behind the first; runs (and crashes) on the first restart
    wait_admitted(server, 2)
    waiting: list[httpx.Response] = []
    third = threading.Thread(target=lambda: waiting.append(
        httpx.post(server.url + URL, json=body("Say hello.", 16), timeout=120)))
    third.start()  # queued behind both: in flight, not running, in both crashes
    first.join(60)
    second.join(60)
    third.join(60)
    assert_crash_event(first)
    assert_crash_event(second)
    assert waiting[0].status_code == 200, waiting[0].text
    assert model_state(server)["crashes"] == 2


def test_a_request_that_crashed_the_model_twice_is_refused_the_third_time(faulty):
    poison = body("What is two plus two? parley-fault:segv@1")
    for _ in range(2):
        before = model_state(faulty)
        response = httpx.post(faulty.url + URL, json=poison, timeout=60)
        assert response.status_code == 500 and CRASHED in response.json()["error"]["message"], response.text
        wait_restarted(faulty, before["restarts"] + 1)
    before = model_state(faulty)
    refused = httpx.post(faulty.url + URL, json=poison, timeout=60)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["type"] == "invalid_request_error"
    assert "poison request" in refused.json()["error"]["message"], refused.text
    # Refused before it reached the model: no crash, no restart; the same words in another request still run.
    assert model_state(faulty)["crashes"] == before["crashes"]
    assert httpx.post(faulty.url + URL, json=body("What is two plus two?"), timeout=60).status_code == 200
    log = faulty.log_text()
    assert "refused a request" in log and refused.headers["request-id"] in log


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads a thread's context switches from /proc")
def test_tokens_coming_back_do_not_wake_the_childs_command_reader(faulty):
    """The child reads commands on its main thread. On one two-way socket pair, each message coming back woke
    that reader for nothing: a context switch per token, on a core the decode was using."""
    pid = model_state(faulty)["pid"]

    def wake_ups() -> int:
        status = Path(f"/proc/{pid}/task/{pid}/status").read_text()
        return int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", status, re.M).group(1))

    before = wake_ups()
    # Not the bystanders' prompt: a request that was running during two crashes is refused as a poison request.
    response = httpx.post(faulty.url + URL, json=body("Write a long story about a fisherman and the sea.", 120),
                          timeout=120)
    assert response.status_code == 200, response.text
    tokens = response.json()["usage"]["output_tokens"]
    assert tokens >= 60, response.text
    assert wake_ups() - before < 20, f"{wake_ups() - before} wake-ups of the command reader for {tokens} tokens"


def test_count_tokens_does_not_need_the_model_process(faulty):
    pid = model_state(faulty)["pid"]
    os.kill(pid, signal.SIGSTOP)  # a model process that answers nothing
    try:
        response = httpx.post(faulty.url + "/v1/messages/count_tokens", timeout=5,
                              json={"model": SMOL, "messages": [{"role": "user", "content": "How many tokens?"}]})
        assert response.status_code == 200 and response.json()["input_tokens"] > 3
        assert httpx.get(faulty.url + "/health", timeout=5).status_code == 200
    finally:
        os.kill(pid, signal.SIGCONT)


def test_memory_ceiling_replaces_the_process_between_requests(start_server):
    server = start_server("--max-model-rss-mb", "1")
    first = httpx.post(server.url + URL, json=body("Say hello.", 16), timeout=120)
    assert first.status_code == 200
    state = wait_restarted(server, 1)
    second = httpx.post(server.url + URL, json=body("Say goodbye.", 16), timeout=60)
    assert second.status_code == 200 and second.json()["content"][0]["text"]
    state = model_state(server)
    assert state["restarts"] >= 2 and state["crashes"] == 0  # replaced, never crashed
    assert "replacing it once its requests end" in server.log_text()


@pytest.mark.parametrize("how", ["terminate", "kill"])
def test_no_model_process_outlives_the_server(start_server, how):
    server = start_server()
    assert httpx.post(server.url + URL, json=body("Hi", 4), timeout=120).status_code == 200
    pid = model_state(server)["pid"]
    getattr(server.proc, how)()
    server.proc.wait(30)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and psutil.pid_exists(pid):
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_an_mlx_model_runs_in_its_own_process_too(start_server):
    from parley.models.packaged import QWEN_CODER_05B
    from parley.settings import Settings
    from support.mlx_model import build_tiny_mlx_model

    cache = Settings().cache_dir
    model_dir = build_tiny_mlx_model(QWEN_CODER_05B.gguf_path(cache), cache / "test-models" / "mlx" / "tiny-qwen2-mlx")
    server = start_server("--models-dir", str(model_dir.parent), fault_injection="1")
    mlx = {"model": "tiny-qwen2-mlx", "max_tokens": 8, "temperature": 0}
    hello = {**mlx, "messages": [{"role": "user", "content": "Say something."}]}
    assert httpx.post(server.url + URL, json=hello, timeout=120).status_code == 200
    state = server.health()["models"]["tiny-qwen2-mlx"]
    assert psutil.Process(state["pid"]).ppid() == server.proc.pid
    crash = httpx.post(server.url + URL, timeout=60,
                       json={**mlx, "messages": [{"role": "user", "content": "Hi parley-fault:abort@2"}]})
    assert crash.status_code == 500 and CRASHED in crash.json()["error"]["message"], crash.text
    assert httpx.post(server.url + URL, json=hello, timeout=60).status_code == 200
    assert server.health()["models"]["tiny-qwen2-mlx"]["restarts"] == 1


def test_a_model_that_no_longer_loads_fails_its_requests_and_is_retried_later(start_server, tmp_path):
    import shutil

    from parley.models.packaged import SMOLLM2_135M
    from parley.settings import Settings

    models = tmp_path / "models"
    models.mkdir()
    gguf = models / "tiny.gguf"
    shutil.copy(SMOLLM2_135M.gguf_path(Settings().cache_dir), gguf)
    server = start_server("--models-dir", str(models))
    tiny = {"model": "tiny", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]}
    assert httpx.post(server.url + URL, json=tiny, timeout=120).status_code == 200
    pid = server.health()["models"]["tiny"]["pid"]
    gguf.rename(models / "away")  # the file a restart would load is gone
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.health()["models"]["tiny"]["crashes"] == 0:  # seen: no request can go to the dead process
        assert time.monotonic() < deadline
        time.sleep(0.02)
    failed = httpx.post(server.url + URL, json=tiny, timeout=60)
    assert failed.status_code == 500 and failed.json()["error"]["type"] == "api_error", failed.text
    assert "could not be restarted" in failed.json()["error"]["message"], failed.text
    (models / "away").rename(gguf)
    again = httpx.post(server.url + URL, json=tiny, timeout=60)  # the next request tries again
    assert again.status_code == 200, again.text
    assert server.health()["models"]["tiny"]["restarts"] == 1
