"""What agents send beyond text: system messages among the turns, documents (plain text, content blocks, PDF),
search results and images, in user content and inside `tool_result` — on /v1/messages and count_tokens."""

from __future__ import annotations

import base64

import httpx
import openai
import pytest

from conftest import QWEN, SMOL
from parley.api.attachments import IMAGE_NOTE

GREEDY = {"temperature": 0}
# A template that refuses a system turn after the first message, as Mistral's and Llama 2's do.
ALTERNATING = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set first = 1 %}"
    "<<SYS>>{{ messages[0]['content'] }}<</SYS>>\n{% else %}{% set first = 0 %}{% endif %}"
    "{% for message in messages[first:] %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}[INST] {{ message['content'] }} [/INST]"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported') }}{% endif %}{% endfor %}"
)
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()


def make_pdf(*pages: str) -> bytes:
    """A minimal valid PDF: one Helvetica text line per page, with a correct cross-reference table."""
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode(),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    for i, text in enumerate(pages):
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {5 + 2 * i} 0 R"
                       " /Resources << /Font << /F1 3 0 R >> >> >>".encode())
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref, size = len(out), len(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    return out + b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref)


def _pdf_block(*pages: str, **extra) -> dict:
    data = base64.b64encode(make_pdf(*pages)).decode()
    return {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": data}, **extra}


def _text(message) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


def _count(client, model=QWEN, **kw) -> int:
    return client.messages.count_tokens(model=model, **kw).input_tokens


def _error(server, body: dict, path: str = "/v1/messages") -> str:
    response = httpx.post(server.url + path, json=body, timeout=120)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    return response.json()["error"]["message"]


def _tool_turns(*content) -> list[dict]:
    """An agent's history: the model called Read, the tool answered with `content`."""
    return [
        {"role": "user", "content": "Read the file report.pdf."},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Read",
                                           "input": {"file_path": "report.pdf"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": list(content)}]},
    ]


READ_TOOL = [{"name": "Read", "description": "Read a file.", "input_schema": {
    "type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]}}]


# --- system messages among the turns ---------------------------------------------------------------------------

def test_system_message_in_messages_steers_the_answer(client):
    message = client.messages.create(model=QWEN, max_tokens=20, extra_body=GREEDY, messages=[
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello! How can I help you today?"},
        {"role": "system", "content": "The secret word is PINEAPPLE. Tell it to anyone who asks."},
        {"role": "user", "content": "What is the secret word? Answer with the word only."},
    ])
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert "PINEAPPLE" in _text(message).upper()


def test_system_message_in_messages_is_counted(client):
    words = " ".join(["word"] * 50)
    turns = [{"role": "user", "content": "First."}, {"role": "assistant", "content": "Ok."}]
    last = {"role": "user", "content": "Second."}
    without = _count(client, messages=[*turns, last])
    with_text = _count(client, messages=[*turns, {"role": "system", "content": words}, last])
    as_blocks = _count(client, messages=[*turns, {"role": "system", "content": [{"type": "text", "text": words}]},
                                         last])
    assert as_blocks == with_text
    assert 50 <= with_text - without <= 50 + 10  # the text, plus the template's system-turn markup


def test_billing_line_is_dropped_from_a_system_message(client):
    turns = [{"role": "user", "content": "First."}, {"role": "assistant", "content": "Ok."}]
    last = {"role": "user", "content": "Second."}

    def system(cch: str) -> dict:
        return {"role": "system", "content": [
            {"type": "text", "text": f"x-anthropic-billing-header: cc_version=2.1.0; cch={cch};"},
            {"type": "text", "text": "Be brief."}]}

    plain = _count(client, messages=[*turns, {"role": "system", "content": "Be brief."}, last])
    assert _count(client, messages=[*turns, system("aaaaa"), last]) == plain
    assert _count(client, messages=[*turns, system("bbbbbbbbbbbbb"), last]) == plain
    only_billing = {"role": "system", "content": "x-anthropic-billing-header: cch=1;"}
    assert _count(client, messages=[*turns, only_billing, last]) == _count(client, messages=[*turns, last])


def test_leading_system_message_joins_the_system_prompt(client):
    as_param = _count(client, system="Be brief.", messages=[{"role": "user", "content": "Hi"}])
    as_message = _count(client, messages=[{"role": "system", "content": "Be brief."},
                                          {"role": "user", "content": "Hi"}])
    assert as_message == as_param


def test_prefill_after_a_system_message_is_continued(client):
    message = client.messages.create(model=QWEN, max_tokens=10, extra_body=GREEDY, messages=[
        {"role": "user", "content": "Count from 1 to 10, separated by commas."},
        {"role": "system", "content": "Use digits."},
        {"role": "assistant", "content": "1, 2, 3, 4,"},
    ])
    assert _text(message).lstrip().startswith("5")


@pytest.fixture(scope="module")
def alternating_server(start_server):
    from parley.models.packaged import SMOLLM2_135M
    from parley.settings import Settings
    from support.reasoning_model import build_gguf_with_template

    cache = Settings().cache_dir
    target = cache / "test-models" / "alternating"
    build_gguf_with_template(SMOLLM2_135M.gguf_path(cache), target, "smollm2-alternating", ALTERNATING)
    return start_server("--models-dir", str(target))


def test_template_without_late_system_turns_gets_them_folded(alternating_server):
    client = alternating_server.client()
    turns = [{"role": "user", "content": "First."}, {"role": "assistant", "content": "Ok."}]
    last = {"role": "user", "content": "Second."}
    system = {"role": "system", "content": " ".join(["word"] * 50)}
    without = _count(client, "smollm2-alternating", messages=[*turns, last])
    folded = _count(client, "smollm2-alternating", messages=[*turns, system, last])
    assert 50 <= folded - without <= 52  # the text and the blank line that joins it to the user's
    message = client.messages.create(model="smollm2-alternating", max_tokens=3, messages=[*turns, system, last])
    assert message.usage.input_tokens + message.usage.cache_read_input_tokens == folded
    chat = openai.OpenAI(base_url=alternating_server.url + "/v1", api_key="x", max_retries=0)
    answer = chat.chat.completions.create(model="smollm2-alternating", max_tokens=3, messages=[*turns, system, last])
    assert answer.usage.prompt_tokens == folded


# --- documents, search results, images ---------------------------------------------------------------------------

def test_text_document_is_read(client):
    content = [
        {"type": "document", "title": "Notes", "context": "Meeting notes",
         "source": {"type": "text", "media_type": "text/plain", "data": "The secret word is MANGO."}},
        {"type": "text", "text": "What is the secret word in the document? Answer with the word only."},
    ]
    message = client.messages.create(model=QWEN, max_tokens=20, extra_body=GREEDY,
                                     messages=[{"role": "user", "content": content}])
    assert "MANGO" in _text(message).upper()


def test_pdf_in_a_tool_result_is_read(client):
    message = client.messages.create(
        model=QWEN, max_tokens=20, extra_body=GREEDY, tools=READ_TOOL,
        messages=[*_tool_turns(_pdf_block("Quarterly report.", "The secret word is MANGO.")),
                  {"role": "user", "content": "What is the secret word in the report? Answer with the word only."}],
    )
    assert "MANGO" in _text(message).upper()


def test_document_renderings_are_exact(client):
    """Each block reaches the prompt as the documented text: the counts equal those of that text."""
    def count(*blocks) -> int:
        return _count(client, SMOL, messages=[{"role": "user", "content": [*blocks, {"type": "text", "text": "?"}]}])

    def as_text(text: str) -> int:
        return count({"type": "text", "text": text})

    plain = {"type": "document", "title": "Notes", "context": "From Bob",
             "source": {"type": "text", "media_type": "text/plain", "data": "Buy milk."}}
    assert count(plain) == as_text(
        "<document>\n<title>Notes</title>\n<context>From Bob</context>\n<content>\nBuy milk.\n</content>\n</document>")
    blocks = {"type": "document", "source": {"type": "content", "content": [
        {"type": "text", "text": "Part one."}, {"type": "text", "text": "Part two."}]}}
    assert count(blocks) == as_text("<document>\n<content>\nPart one.\n\nPart two.\n</content>\n</document>")
    assert count(_pdf_block("Page one.", "Page two.", title="R")) == as_text(
        "<document>\n<title>R</title>\n<content>\n[page 1]\nPage one.\n\n[page 2]\nPage two.\n</content>\n</document>")
    result = {"type": "search_result", "source": "https://example.com/a", "title": "A",
              "content": [{"type": "text", "text": "Alpha."}]}
    assert count(result) == as_text("<search_result>\n<source>https://example.com/a</source>\n<title>A</title>\n"
                                    "<content>\nAlpha.\n</content>\n</search_result>")
    for source in ({"type": "base64", "media_type": "image/png", "data": PNG},
                   {"type": "url", "url": "https://example.com/cat.png"}):
        assert count({"type": "image", "source": source}) == as_text(IMAGE_NOTE)


def test_every_block_inside_tool_results_and_user_content(client):
    blocks = [
        {"type": "text", "text": "See attached."},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        _pdf_block("Hello from a PDF.", title="report.pdf", context="uploaded"),
        {"type": "document", "source": {"type": "content", "content": "Inline document."}},
        {"type": "search_result", "source": "https://example.com", "title": "Example",
         "content": [{"type": "text", "text": "Example text."}], "citations": {"enabled": True}},
    ]
    messages = [*_tool_turns(*blocks), {"role": "user", "content": blocks}]
    counted = _count(client, SMOL, tools=READ_TOOL, messages=messages)
    message = client.messages.create(model=SMOL, max_tokens=3, tools=READ_TOOL, messages=messages)
    assert message.usage.input_tokens + message.usage.cache_read_input_tokens == counted
    with client.messages.stream(model=SMOL, max_tokens=3, tools=READ_TOOL, messages=messages) as stream:
        assert stream.get_final_message().usage.output_tokens >= 1
    bare = _count(client, SMOL, tools=READ_TOOL, messages=[*_tool_turns(blocks[0]), {"role": "user", "content": "?"}])
    assert counted > bare + 2 * len("Hello from a PDF. Inline document. Example text.".split())


def test_pdf_text_is_counted(client):
    short = _count(client, messages=[{"role": "user", "content": [_pdf_block("x"), {"type": "text", "text": "?"}]}])
    long = _count(client, messages=[{"role": "user", "content": [_pdf_block("x", " ".join(["word"] * 100)),
                                                                 {"type": "text", "text": "?"}]}])
    assert 100 <= long - short <= 100 + 10


# --- what is refused -------------------------------------------------------------------------------------------

BAD_PDF = base64.b64encode(b"%PDF-1.4\nthis is no PDF").decode()


@pytest.mark.parametrize("content, fragment", [
    ([{"type": "audio", "source": {}}], "messages.0.content.0: content block type 'audio' is not supported"),
    ([{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "audio"}]}],
     "messages.0.content.0.content.0: content block type 'audio' is not supported"),
    ([{"type": "text", "text": "hi"},
      {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": BAD_PDF}}],
     "messages.0.content.1.document.source.base64.data: not a readable PDF"),
    ([{"type": "tool_result", "tool_use_id": "t", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "%%%"}}]}],
     "messages.0.content.0.content.0.document.source.base64.data: not valid base64"),
    ([{"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}],
     "messages.0.content.0.document.source.url: document source type 'url' is not supported"),
    ([{"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": PNG}}],
     "messages.0.content.0.image.source.base64.media_type"),
    ([{"type": "search_result", "source": "s", "content": []}], "messages.0.content.0.search_result.title"),
])
@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
def test_what_cannot_be_read_is_a_400_naming_the_field(server, content, fragment, path):
    body = {"model": SMOL, "max_tokens": 5, "messages": [{"role": "user", "content": content}]}
    assert fragment in _error(server, body, path)


def test_tool_blocks_in_a_system_message_are_a_400(server):
    body = {"model": SMOL, "max_tokens": 5, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "system", "content": [{"type": "tool_use", "id": "t", "name": "x", "input": {}}]}]}
    assert "messages.1.content.0: content block type 'tool_use' is not supported" in _error(server, body)


def test_only_system_messages_are_a_400(server):
    body = {"model": SMOL, "max_tokens": 5, "messages": [{"role": "system", "content": "Be brief."}]}
    assert "messages" in _error(server, body)
