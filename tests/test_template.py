"""Chat template rendering: Hugging Face helpers, prefill, and the sandbox."""

from __future__ import annotations

import pytest

from parley.core.messages import ChatMessage, Conversation
from parley.core.template import ChatTemplate, fold_system_turns
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


# System turns after the first user turn: rendered where the template takes them, else folded into user text.
LATE = Conversation([ChatMessage("user", "A"), ChatMessage("assistant", "B"), ChatMessage("system", "S"),
                     ChatMessage("user", "C")], system="P")
ROLES = "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
MISTRAL_STYLE = (  # a system message only first; the rest alternate, or raise_exception
    "{% if messages[0]['role'] == 'system' %}{% set rest = messages[1:] %}<<{{ messages[0]['content'] }}>>"
    "{% else %}{% set rest = messages %}{% endif %}{% for m in rest %}"
    "{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('roles must alternate') }}{% endif %}"
    "{% if m['role'] == 'user' %}[INST]{{ m['content'] }}[/INST]{% elif m['role'] == 'assistant' %}{{ m['content'] }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported') }}{% endif %}{% endfor %}"
)
GEMMA_STYLE = (  # any role renders, but alternation is checked by position only
    "{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('roles must alternate') }}{% endif %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
)
DROPS_LATE = (  # a leading system message is kept, later ones vanish
    "{% for m in messages %}{% if m['role'] != 'system' or loop.first %}[{{ m['role'] }}]{{ m['content'] }}"
    "{% endif %}{% endfor %}"
)


def test_template_that_takes_late_system_turns_renders_them():
    template = ChatTemplate(ROLES)
    assert template.takes_late_system_turns
    assert template.render(LATE) == "[system]P[user]A[assistant]B[system]S[user]C"


@pytest.mark.parametrize("source, expected", [
    (MISTRAL_STYLE, "<<P>>[INST]A[/INST]B[INST]S\n\nC[/INST]"),
    ("{% for m in messages[1:] %}" + GEMMA_STYLE[len("{% for m in messages %}"):],
     "<user>A<assistant>B<user>S\n\nC"),
    (DROPS_LATE, "[system]P[user]A[assistant]B[user]S\n\nC"),
])
def test_late_system_turns_are_folded_where_the_template_refuses_or_drops_them(source, expected):
    template = ChatTemplate(source)
    assert not template.takes_late_system_turns
    assert template.render(LATE) == expected


def test_position_checking_template_is_probed_at_both_parities():
    """[user, system, user] passes a positional alternation check; [user, assistant, system, user] does not."""
    assert not ChatTemplate(GEMMA_STYLE).takes_late_system_turns
    text = ChatTemplate(GEMMA_STYLE).render(Conversation([ChatMessage("user", "A"), ChatMessage("assistant", "B"),
                                                          ChatMessage("system", "S"), ChatMessage("user", "C")]))
    assert text == "<user>A<assistant>B<user>S\n\nC"


@pytest.mark.parametrize("turns, expected", [
    ([("user", "A"), ("system", "S"), ("user", "B")], [("user", "A\n\nS\n\nB")]),
    ([("user", "A"), ("assistant", "B"), ("system", "S")], [("user", "A"), ("assistant", "B"), ("user", "S")]),
    ([("user", "A"), ("system", "S"), ("assistant", "Sure,")], [("user", "A\n\nS"), ("assistant", "Sure,")]),
    ([("assistant", "B"), ("tool", "R"), ("system", "S"), ("system", "T")],
     [("assistant", "B"), ("tool", "R"), ("user", "S\n\nT")]),
])
def test_fold_system_turns_keeps_order_and_alternation(turns, expected):
    folded = fold_system_turns(Conversation([ChatMessage(role, text) for role, text in turns], system="P"))
    assert [(m.role, m.content) for m in folded.messages] == expected
    assert folded.system == "P"


def test_prefill_after_a_folded_system_turn_is_continued():
    conversation = Conversation([ChatMessage("user", "A"), ChatMessage("system", "S"),
                                 ChatMessage("assistant", "Sure,")])
    assert ChatTemplate(MISTRAL_STYLE).render(conversation) == "[INST]A\n\nS[/INST]Sure,"
