"""The web playground at `/` in a real headless Chromium (Debian's), against real `parley serve` processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import QWEN, SMOL

CHROMIUM = Path("/usr/bin/chromium")
# What this sandbox needs: no GPU, no sandbox, and no background calls to Google (refused, noisily).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
UNREACHABLE = re.compile(r"Could not resolve|Temporary failure resolving|Failed to fetch|Unable to connect|"
                         r"Network is unreachable|Connection refused|Could not connect|Connection timed out")
WEATHER_TOOL = {"name": "get_weather", "description": "Get the current weather in a given location.",
                "input_schema": {"type": "object", "properties": {"location": {
                    "type": "string", "description": "The city, e.g. Paris"}}, "required": ["location"]}}
LAST_ANSWER = "[data-testid=assistant-message] >> nth=-1"
LONG = "Write an extremely long story about a lighthouse."  # SmolLM2 at temperature 0 runs past 600 tokens


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["apt-get", *args], capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's Chromium, installed with apt-get when missing; skipped only when the registry is unreachable."""
    if CHROMIUM.exists():
        return CHROMIUM
    if shutil.which("apt-get") is None:
        pytest.fail("/usr/bin/chromium is missing and there is no apt-get to install Debian's chromium")
    result = _apt("install", "-y", "chromium")
    output = result.stdout + result.stderr
    if result.returncode != 0:  # perhaps stale package lists
        update = _apt("update")
        result = _apt("install", "-y", "chromium")
        output += update.stdout + update.stderr + result.stdout + result.stderr
    if result.returncode != 0 or not CHROMIUM.exists():
        if reason := UNREACHABLE.search(output):
            pytest.skip(f"Debian's chromium cannot be installed: the package registry is unreachable "
                        f"({reason.group(0)})")
        pytest.fail(f"apt-get install -y chromium failed (rc {result.returncode}): {output[-2000:]}")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium: Path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        yield browser  # each default launch runs on a fresh temporary profile (user-data-dir)
        browser.close()


@pytest.fixture(scope="module")
def shots() -> Path:
    """The run's screenshots, kept as artefacts (git-ignored) until the next run replaces them."""
    root = Path(os.environ.get("PARLEY_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))
    folder = root / "playground"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def page(browser, shots, request) -> Iterator:
    """A fresh browser context (its own localStorage); JavaScript errors in the page fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.shots = []  # type: ignore[attr-defined]

    def shot(name: str) -> Path:
        path = shots / f"{request.node.name}-{len(page.shots) + 1:02d}-{name}.png"
        page.screenshot(path=str(path))
        page.shots.append(path)
        print(f"screenshot: {path}")
        return path

    page.shot = shot  # type: ignore[attr-defined]
    yield page
    context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")


def _configure(page, model: str | None, max_tokens: int, temperature: float = 0, tools: str = "") -> None:
    if model is not None:
        page.select_option("#model", model)
    page.fill("#max-tokens", str(max_tokens))
    page.fill("#temperature", str(temperature))
    page.fill("#tools", tools)


def _send(page, text: str) -> None:
    page.fill("#prompt", text)
    page.click("#send")


def _wait_done(page, timeout: float = 120_000) -> None:
    page.wait_for_selector("body[data-busy=false] #status[data-state=ready]", timeout=timeout)


def _answer_length(page) -> tuple[int, bool]:
    return page.evaluate("""() => {
        const answers = document.querySelectorAll('[data-testid=assistant-message]');
        const last = answers[answers.length - 1];
        const text = last ? last.querySelector('[data-testid=answer-text]') : null;
        return [text ? text.textContent.length : 0, document.body.dataset.busy === 'true'];
    }""")


def test_page_loads_at_root_and_playground_with_the_models(server, page):
    for path in ("/", "/playground"):
        response = httpx.get(server.url + path)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        assert response.headers["cache-control"] == "no-cache"
        assert 'id="prompt"' in response.text
    for asset, kind in (("playground.js", "javascript"), ("playground.css", "text/css")):
        response = httpx.get(f"{server.url}/playground/{asset}")
        assert response.status_code == 200 and kind in response.headers["content-type"], asset
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", httpx.get(server.url + "/").text)  # nothing remote

    listed = {m["id"] for m in httpx.get(server.url + "/v1/models", params={"limit": 1000}).json()["data"]}
    default = server.health()["default_model"]
    for path in ("/", "/playground"):
        _open(page, server.url + path)
        options = set(page.eval_on_selector_all("#model option", "options => options.map(o => o.value)"))
        assert options == listed and {QWEN, SMOL} <= options
        assert page.input_value("#model") == default
        assert page.is_hidden("[data-testid=error]")
        assert page.title() == "parley playground"
    page.shot("loaded")


def test_answer_streams_in_steps_with_usage_and_speed(server, page):
    _open(page, server.url + "/")
    _configure(page, SMOL, max_tokens=48)
    generated = server.health()["models"].get(SMOL, {}).get("tokens_generated", 0)
    with page.expect_request("**/v1/messages") as sent:
        _send(page, "Write a short poem about the sea.")
    body = sent.value.post_data_json
    assert body["stream"] is True and body["temperature"] == 0 and body["max_tokens"] == 48
    lengths: list[int] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        length, busy = _answer_length(page)
        if length and (not lengths or length != lengths[-1]):
            lengths.append(length)
            if len(lengths) == 3:
                page.shot("streaming")  # once, mid-answer
        if not busy:
            break
        time.sleep(0.02)
    _wait_done(page)
    final = _answer_length(page)[0]
    assert lengths and lengths[-1] == final and final > 0
    intermediate = [n for n in lengths[:-1] if 0 < n < final]
    assert len(intermediate) >= 2, f"the answer did not grow in steps: {lengths}"
    assert lengths == sorted(lengths)  # text is only ever appended

    answer = page.locator(LAST_ANSWER)
    assert answer.locator("[data-testid=answer-text]").inner_text().strip()
    usage_in = int(re.fullmatch(r"(\d+) in", answer.locator("[data-testid=usage-input]").inner_text())[1])
    usage_out = int(re.fullmatch(r"(\d+) out", answer.locator("[data-testid=usage-output]").inner_text())[1])
    rate = float(re.fullmatch(r"([\d.]+) tok/s", answer.locator("[data-testid=tps]").inner_text())[1])
    cached = answer.locator("[data-testid=usage-cache-read]")
    usage_cached = int(re.fullmatch(r"(\d+) cached", cached.inner_text())[1]) if cached.count() else 0
    counted = httpx.post(server.url + "/v1/messages/count_tokens",
                         json={"model": SMOL, "messages": body["messages"]}).json()["input_tokens"]
    assert usage_in + usage_cached == counted  # the prompt, as the server counts it
    assert 0 < usage_out <= 48 and rate > 0
    assert server.health()["models"][SMOL]["tokens_generated"] - generated == usage_out
    assert answer.locator("[data-testid=stop-reason]").inner_text() in ("stop: end_turn", "stop: max_tokens")
    assert page.is_hidden("[data-testid=error]")
    page.shot("answered")


def test_tool_use_block_renders_name_and_input_then_takes_a_tool_result(server, page):
    _open(page, server.url + "/")
    _configure(page, QWEN, max_tokens=80, tools=json.dumps([WEATHER_TOOL], indent=2))
    _send(page, "What's the weather in Paris? Use the tool.")
    _wait_done(page)
    answer = page.locator(LAST_ANSWER)
    tool = answer.locator("[data-testid=tool-use]")
    assert tool.count() == 1, answer.inner_text()
    assert tool.locator("[data-testid=tool-name]").inner_text() == "get_weather"
    assert tool.locator("[data-testid=tool-id]").inner_text().startswith("toolu_")
    arguments = json.loads(tool.locator("[data-testid=tool-input]").inner_text())
    assert "paris" in arguments["location"].lower()
    assert answer.locator("[data-testid=stop-reason]").inner_text() == "stop: tool_use"
    assert page.is_visible("[data-testid=tool-result-hint]")
    tool_id = tool.locator("[data-testid=tool-id]").inner_text()
    page.shot("tool-use")

    # The next message goes back as the tool_result of that call, after the assistant's tool_use turn.
    with page.expect_request("**/v1/messages") as sent:
        _send(page, '{"temperature": 18, "unit": "celsius", "sky": "sunny"}')
    messages = sent.value.post_data_json["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"][-1] == {"type": "tool_use", "id": tool_id, "name": "get_weather",
                                          "input": arguments}
    assert messages[2]["content"] == [{"type": "tool_result", "tool_use_id": tool_id,
                                       "content": '{"temperature": 18, "unit": "celsius", "sky": "sunny"}'}]
    _wait_done(page)
    assert page.is_hidden("[data-testid=error]"), page.inner_text("[data-testid=error]")
    assert page.locator("[data-testid=tool-result]").count() == 1
    # The server took the tool_result; what the tiny model makes of it (often another call) is its own affair.
    second = page.locator(LAST_ANSWER)
    assert second.locator("[data-testid=blocks] > *").count() >= 1
    assert second.locator("[data-testid=stop-reason]").inner_text() in ("stop: end_turn", "stop: tool_use",
                                                                       "stop: max_tokens")
    page.shot("tool-result")


def test_invalid_tools_json_shows_an_error_and_is_not_sent(server, page):
    _open(page, server.url + "/")
    _configure(page, SMOL, max_tokens=8, tools='[{"name": "get_weather",')
    assert page.is_visible("[data-testid=tools-error]")
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.url) if "/v1/messages" in r.url else None)
    _send(page, "hi")
    assert "Tools: invalid JSON" in page.inner_text("[data-testid=error-text]")
    page.wait_for_timeout(500)
    assert posted == [] and page.locator("[data-testid=assistant-message]").count() == 0
    assert page.input_value("#prompt") == "hi"


def test_stop_aborts_a_long_generation_and_the_server_goes_idle(server, page):
    _open(page, server.url + "/")
    _configure(page, SMOL, max_tokens=8)
    _send(page, "hi")  # the model is loaded and warm before timing anything
    _wait_done(page)
    before = server.wait_idle(SMOL, timeout=30)["tokens_generated"]
    page.fill("#max-tokens", "2000")

    _send(page, LONG)
    page.wait_for_function("""() => {
        const answers = document.querySelectorAll('[data-testid=assistant-message] [data-testid=answer-text]');
        return answers.length && answers[answers.length - 1].textContent.length > 40;
    }""")
    assert page.is_enabled("#stop") and page.is_disabled("#send")
    page.click("#stop")
    _wait_done(page, timeout=5_000)
    stopped_at = _answer_length(page)[0]
    page.shot("stopped")
    assert page.is_enabled("#send") and page.is_disabled("#stop")
    assert page.locator(LAST_ANSWER).locator("[data-testid=stopped]").is_visible()
    state = server.wait_idle(SMOL, timeout=5)  # Stop's abort reaches the server at once
    time.sleep(1.0)
    assert _answer_length(page)[0] == stopped_at  # nothing more arrives
    assert server.health()["models"][SMOL]["tokens_generated"] == state["tokens_generated"]  # nothing runs on
    assert state["tokens_generated"] - before < 500  # far from the 2000 asked for

    # Ready again: the next turn runs, with the stopped answer's text in the history.
    page.fill("#max-tokens", "8")
    with page.expect_request("**/v1/messages") as sent:
        _send(page, "Thanks, that's enough.")
    messages = sent.value.post_data_json["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[3]["content"][0]["text"] == page.locator(
        "[data-testid=assistant-message] >> nth=1").locator("[data-testid=answer-text]").inner_text()
    _wait_done(page)
    assert page.is_hidden("[data-testid=error]")
    assert page.locator(LAST_ANSWER).locator("[data-testid=stop-reason]").is_visible()


def test_api_key_from_the_field_is_kept_in_local_storage(start_server, page):
    locked = start_server("--api-key", "k1")
    for path in ("/", "/playground", "/playground/playground.js", "/playground/playground.css"):
        assert httpx.get(locked.url + path).status_code == 200, path  # the page needs no key
    assert httpx.get(locked.url + "/v1/models").status_code == 401

    _open(page, locked.url + "/")
    assert page.input_value("#api-key") == ""
    assert "API key required" in page.inner_text("[data-testid=server-info]")
    assert "authentication_error" in page.inner_text("[data-testid=error-text]")  # listing the models needed it
    assert page.input_value("#model") == locked.health()["default_model"]  # /health told the default
    page.click("#error-close")
    _configure(page, None, max_tokens=8)  # without a key, only the default model is known
    _send(page, "Say hi")
    _wait_done(page)
    error = page.inner_text("[data-testid=error-text]")
    assert "authentication_error" in error and "x-api-key" in error
    assert "authentication_error" in page.locator(LAST_ANSWER).locator("[data-testid=message-error]").inner_text()
    assert page.input_value("#prompt") == "Say hi"  # back in the box, to send again
    page.shot("auth-error")

    page.fill("#api-key", "k1")
    page.wait_for_selector("#model[data-loaded=true]")
    assert page.is_hidden("[data-testid=error]")
    page.select_option("#model", SMOL)
    with page.expect_request("**/v1/messages") as sent:
        page.click("#send")
    assert sent.value.headers["x-api-key"] == "k1"
    _wait_done(page)
    assert page.is_hidden("[data-testid=error]")
    assert page.locator(LAST_ANSWER).locator("[data-testid=answer-text]").inner_text().strip()
    assert page.locator(LAST_ANSWER).locator("[data-testid=usage-output]").is_visible()
    page.shot("auth-ok")

    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.input_value("#api-key") == "k1"
    assert page.evaluate("() => Object.values(localStorage)") == ["k1"]
    page.wait_for_selector("#model[data-loaded=true]")
    assert page.is_hidden("[data-testid=error]")


def test_an_error_event_mid_stream_is_shown(start_server, page):
    hasty = start_server(request_timeout="4")  # a long answer runs into the server's time limit mid-stream
    for _ in range(10):  # the first request also loads the model, which on a busy machine takes longer than 4 s
        warm = httpx.post(hasty.url + "/v1/messages", timeout=60,
                          json={"model": SMOL, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]})
        if warm.status_code == 200:
            break
    assert warm.status_code == 200, warm.text
    _open(page, hasty.url + "/")
    _configure(page, SMOL, max_tokens=2000)
    with page.expect_response("**/v1/messages") as sent:
        _send(page, LONG)
    assert sent.value.status == 200  # the stream had begun: the error can only come as an SSE event
    _wait_done(page, timeout=30_000)
    answer = page.locator(LAST_ANSWER)
    seen = answer.inner_text()
    assert answer.locator("[data-testid=blocks]").inner_text().strip(), seen  # text streamed before it
    errors = answer.locator("[data-testid=message-error]")
    assert errors.count() == 1 and "timeout_error" in errors.inner_text(), seen
    assert "timeout_error" in page.inner_text("[data-testid=error-text]")
    assert page.is_enabled("#send") and page.input_value("#prompt") == LONG
    page.shot("stream-error")


def test_export_gives_a_request_body_that_reproduces_the_conversation(server, page, tmp_path):
    _open(page, server.url + "/")
    _configure(page, SMOL, max_tokens=12)
    page.fill("#system", "You are terse.")
    _send(page, "Name a colour.")
    _wait_done(page)
    first = page.locator(LAST_ANSWER).locator("[data-testid=answer-text]").inner_text()
    _send(page, "Name another one.")
    _wait_done(page)
    page.click("#export")
    body = json.loads(page.input_value("#export-json"))
    page.shot("export")
    assert body["model"] == SMOL and body["max_tokens"] == 12 and body["temperature"] == 0
    assert body["system"] == "You are terse." and "stream" not in body
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [{"type": "text", "text": first}]

    response = httpx.post(server.url + "/v1/messages", json=body, timeout=120)
    assert response.status_code == 200, response.text
    last = page.locator(LAST_ANSWER).locator("[data-testid=answer-text]").inner_text()
    assert response.json()["content"][0]["text"] == last  # temperature 0: the same answer again

    with page.expect_download() as download:
        page.click("#download")
    saved = tmp_path / "export.json"
    download.value.save_as(saved)
    assert download.value.suggested_filename == "parley-request.json"
    assert json.loads(saved.read_text()) == body


def test_thinking_streams_into_a_collapsible_block(think_server, page):
    model = "smollm2-think"
    _open(page, think_server.url + "/")
    _configure(page, model, max_tokens=1400)
    page.check("#thinking")
    assert page.is_enabled("#thinking-budget")
    page.fill("#thinking-budget", "1024")
    # Seen by the page itself, as each delta lands: a short thinking can end (and fold) before a poll looks.
    page.evaluate("""() => {
        window.thinkingSeenOpen = false;
        new MutationObserver(() => {
            const text = document.querySelector('[data-testid=thinking-text]');
            if (text && text.textContent.trim() && text.closest('details').open) window.thinkingSeenOpen = true;
        }).observe(document.body, {childList: true, subtree: true, characterData: true});
    }""")
    with page.expect_request("**/v1/messages") as sent:
        _send(page, "Is 97 a prime number?")
    assert sent.value.post_data_json["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    block = page.locator(LAST_ANSWER).locator("details[data-testid=thinking-block]")
    page.wait_for_function("""() => {
        const text = document.querySelector('[data-testid=thinking-text]');
        return text && text.textContent.trim().length > 20;
    }""")
    assert page.evaluate("window.thinkingSeenOpen")  # open while it streams
    page.shot("thinking")
    page.click("#stop")
    _wait_done(page, timeout=5_000)
    was_open = block.get_attribute("open") is not None
    block.locator("summary").click()  # collapsible
    assert (block.get_attribute("open") is not None) != was_open
