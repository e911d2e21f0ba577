"""Chat template rendering: Hugging Face helpers, prefill, and the sandbox."""

from __future__ import annotations

import pytest

from parley.chat.messages import ChatMessage, Conversation
from parley.chat.template import ChatTemplate
from parley.errors import InvalidRequestError

HELPERS = (
    "{{ bos_token }}{% if messages[0]['role'] != 'user' %}{{ raise_exception('first must be user') }}{% endif %}"
    "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{{ eos_token }}{% endfor %}"
    "{{ {'k': 'ü'} | tojson }}{{ strftime_now('%Y') | length }}"
    "{% if add_generation_prompt %}[assistant]{% endif %}"
)


def test_hugging_face_helpers():
    template = ChatTemplate(HELPERS, bos_token="<s>", eos_token="</s>")
    text = template.render(Conversation([ChatMessage("user", "hi")]))
    assert text == '<s>[user]hi</s>{"k": "ü"}4[assistant]'


def test_raise_exception_is_a_400():
    template = ChatTemplate(HELPERS)
    with pytest.raises(InvalidRequestError, match="first must be user"):
        template.render(Conversation([ChatMessage("assistant", "hi"), ChatMessage("user", "x")]))


def test_prefill_is_continued_not_closed():
    template = ChatTemplate(HELPERS, eos_token="</s>")
    text = template.render(Conversation([ChatMessage("user", "hi"), ChatMessage("assistant", "Sure,")]))
    assert text.endswith("[assistant]Sure,")


@pytest.mark.parametrize("attack", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ messages.append(1) }}",
    "{{ cycler.__init__.__globals__.os }}",
])
def test_sandbox_blocks_escapes(attack):
    with pytest.raises(InvalidRequestError):
        ChatTemplate(attack).render(Conversation([ChatMessage("user", "hi")]))
