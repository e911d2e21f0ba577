"""Who may use the server, and what a response may reveal: API keys, CORS, binding, paths and secrets."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from conftest import SMOL

KEY = "sk-parley-test-key-1"
OTHER = "sk-parley-test-key-2"
BODY = {"model": SMOL, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def locked(start_server, tmp_path_factory):
    key_file = tmp_path_factory.mktemp("keys") / "keys.txt"
    key_file.write_text(f"\n{OTHER}\n")
    return start_server("--api-key", KEY, "--api-key-file", str(key_file))


def test_anthropic_key_header_and_bearer_are_accepted(locked):
    message = locked.client(api_key=KEY).messages.create(**BODY)
    assert message.usage.output_tokens >= 1
    bearer = httpx.post(locked.url + "/v1/messages", json=BODY, headers={"authorization": f"Bearer {OTHER}"})
    assert bearer.status_code == 200  # the key from the file works too


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}, {"authorization": "Bearer wrong"},
                                     {"authorization": f"Basic {KEY}"}, {"x-api-key": KEY[:-1]}])
def test_missing_or_wrong_key_is_401_in_the_envelope(locked, headers):
    response = httpx.post(locked.url + "/v1/messages", json=BODY, headers=headers)
    assert response.status_code == 401 and response.headers["request-id"].startswith("req_")
    assert response.json() == {"type": "error", "error": {"type": "authentication_error",
                                                          "message": response.json()["error"]["message"]},
                               "request_id": response.headers["request-id"]}
    assert KEY not in response.text and OTHER not in response.text


def test_sdks_see_authentication_errors(locked):
    with pytest.raises(anthropic.AuthenticationError) as info:
        locked.client(api_key="wrong").messages.create(**BODY)
    assert info.value.status_code == 401 and info.value.body["error"]["type"] == "authentication_error"
    oai = openai.OpenAI(base_url=locked.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as oinfo:
        oai.chat.completions.create(model=SMOL, max_tokens=2, messages=[{"role": "user", "content": "hi"}])
    assert oinfo.value.body["type"] == "authentication_error"  # the OpenAI envelope on OpenAI routes
    ok = openai.OpenAI(base_url=locked.url + "/v1", api_key=KEY, max_retries=0)
    assert ok.models.list().data


def test_health_stays_open_and_models_do_not(locked):
    assert httpx.get(locked.url + "/health").status_code == 200
    assert httpx.get(locked.url + "/v1/models").status_code == 401
    assert httpx.get(locked.url + "/metrics").status_code == 401


def test_cors_is_off_unless_configured(server, start_server):
    preflight = {"origin": "https://app.example", "access-control-request-method": "POST",
                 "access-control-request-headers": "content-type,x-api-key"}
    response = httpx.options(server.url + "/v1/messages", headers=preflight)
    assert "access-control-allow-origin" not in response.headers
    plain = httpx.get(server.url + "/v1/models", headers={"origin": "https://app.example"})
    assert "access-control-allow-origin" not in plain.headers
    allowed = start_server("--cors-origin", "https://app.example", "--api-key", KEY)
    response = httpx.options(allowed.url + "/v1/messages", headers=preflight)  # a preflight carries no key
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    other = httpx.options(allowed.url + "/v1/messages", headers={**preflight, "origin": "https://evil.example"})
    assert other.headers.get("access-control-allow-origin") != "https://evil.example"


def test_binding_beyond_loopback_without_a_key_warns(start_server, tmp_path):
    exposed = start_server("--host", "0.0.0.0")
    assert httpx.get(exposed.url + "/health").status_code == 200
    log = exposed._log.name
    exposed.stop()
    assert "without an API key" in open(log).read()


@pytest.mark.parametrize("model", ["/etc/passwd", "../../../../etc/passwd", "~/.ssh/id_rsa",
                                   "file:///etc/hostname", "/proc/self/environ"])
def test_a_model_name_cannot_reach_other_files(server, model):
    response = httpx.post(server.url + "/v1/messages", json={**BODY, "model": model})
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found_error"
    assert "root:" not in response.text and "PATH=" not in response.text


def test_errors_reveal_no_internals(server):
    bad = httpx.post(server.url + "/v1/messages", content=b'{"model": ', headers={"content-type": "application/json"})
    assert bad.status_code == 400
    for response in (bad, httpx.get(server.url + "/nope")):
        assert "Traceback" not in response.text and "site-packages" not in response.text
        assert "/root" not in response.text and ".py" not in response.text
