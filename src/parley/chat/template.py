"""Prompt rendering with the model's own Jinja chat template, in a sandbox."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import InvalidRequestError
from .messages import Conversation

# Used only when a model file carries no template of its own.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None,
            sort_keys: bool = False) -> str:
    # Hugging Face's tojson keeps non-ASCII characters, unlike Jinja's HTML-safe built-in.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class ChatTemplate:
    """Compiled once per model; `render` holds no state between calls."""

    def __init__(self, source: str | None, bos_token: str = "", eos_token: str = "") -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        self.source = source or CHATML_TEMPLATE
        self._template = env.from_string(self.source)
        self.bos_token = bos_token
        self.eos_token = eos_token

    def render(self, conversation: Conversation, **extra: Any) -> str:
        """Render the prompt; a final assistant turn is continued rather than closed."""
        prefill = conversation.prefill
        try:
            text = self._template.render(
                messages=conversation.template_messages(),
                tools=conversation.template_tools(),
                add_generation_prompt=prefill is None,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                **extra,
            )
        except jinja2.exceptions.TemplateError as exc:
            raise InvalidRequestError(f"The model's chat template rejected the conversation: {exc}") from exc
        except Exception as exc:  # a template bug met by this input (TypeError, KeyError, ...)
            raise InvalidRequestError(f"The model's chat template failed on this conversation: {exc!r}") from exc
        if prefill is not None:
            # Cut what the template appended after the prefilled text (its end-of-turn marker).
            at = text.rfind(prefill) if prefill else -1
            if at < 0:
                raise InvalidRequestError("The model's chat template cannot continue a final assistant turn.")
            text = text[: at + len(prefill)]
        return text
