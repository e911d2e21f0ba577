"""Prompt rendering with the model's own Jinja chat template, in a sandbox."""

from __future__ import annotations

import dataclasses
import functools
import json
import operator
import sys
import time
from collections.abc import Callable
from datetime import datetime
from types import FrameType
from typing import Any

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from ..errors import InvalidRequestError
from .messages import ChatMessage, Conversation

# Used only when a model file carries no template of its own.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)


def template_supports_tools(template_source: str) -> bool:
    """The template renders the request's `tools` itself (else parley describes them in the system prompt)."""
    return "tools" in template_source


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None,
            sort_keys: bool = False) -> str:
    # Hugging Face's tojson keeps non-ASCII characters, unlike Jinja's HTML-safe built-in.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


RENDER_SECONDS = 5.0  # a template from a model file must not hang a worker
MAX_REPEAT = 1_000_000  # longest string or list `*` may build
MAX_EXPONENT = 1_000


class _TemplateTimeout(Exception):
    pass


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, plus bounds on the operators that can exhaust memory in one C call."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise SecurityError("exponent too large in chat template")
            return operator.pow(left, right)
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(n, int) and len(seq) * n > MAX_REPEAT:
                raise SecurityError("repetition too large in chat template")
        return operator.mul(left, right)


def _with_time_limit(render: Callable[[], str], seconds: float) -> str:
    """Run a template render under a line tracer that gives up at the deadline. Only the template's own
    compiled code is traced (Jinja compiles it to Python), so the cost is a clock read per template line."""
    deadline = time.monotonic() + seconds

    def on_line(frame: FrameType, event: str, arg: Any) -> Any:
        if time.monotonic() > deadline:
            raise _TemplateTimeout
        return on_line

    def on_call(frame: FrameType, event: str, arg: Any) -> Any:
        return on_line if frame.f_code.co_filename == "<template>" else None

    previous = sys.gettrace()
    sys.settrace(on_call)
    try:
        return render()
    finally:
        sys.settrace(previous)


# A system turn after the first user turn, as Claude Code and OpenAI clients send them; see `ChatTemplate`.
_PROBE_MARK = "parley-probe-7f3a"
_PROBE_TURNS = (
    [ChatMessage("user", "Hi"), ChatMessage("system", _PROBE_MARK), ChatMessage("user", "Go on")],
    [ChatMessage("user", "Hi"), ChatMessage("assistant", "Hello"), ChatMessage("system", _PROBE_MARK),
     ChatMessage("user", "Go on")],
)  # at an odd and an even place, for templates that check alternation by position (Gemma's)
_SYSTEM_PROBES = tuple(Conversation(turns, system=system) for turns in _PROBE_TURNS for system in (None, "Be brief."))


def fold_system_turns(conversation: Conversation) -> Conversation:
    """Each system turn among the messages becomes user text, joined with the user turns right next to it:
    [user A, system S, user B] → [user "A\n\nS\n\nB"]; after an assistant or tool turn it opens a user turn
    of its own. So the text keeps its place in the order and the turns still alternate, which the templates
    that refuse a late system turn (Mistral's, Gemma's, Llama 2's) demand. The leading system prompt is left
    alone, so the prompt-prefix cache of the earlier turns still holds."""
    messages: list[ChatMessage] = []
    for message in conversation.messages:
        if message.role == "system":
            message = ChatMessage("user", message.content)
        if message.role == "user" and messages and messages[-1].role == "user":
            message = ChatMessage("user", "\n\n".join(t for t in (messages.pop().content, message.content) if t))
        messages.append(message)
    return dataclasses.replace(conversation, messages=messages)


class ChatTemplate:
    """Compiled once per model; `render` holds no state between calls."""

    def __init__(self, source: str | None, bos_token: str = "", eos_token: str = "") -> None:
        env = _Sandbox(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        self.source = source or CHATML_TEMPLATE
        self._template = env.from_string(self.source)
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.time_limit = RENDER_SECONDS
        # Output parsers by registry name (parsers/registry.py), set when the model loads; None: the template's.
        self.tool_parser: str | None = None
        self.reasoning_parser: str | None = None

    @functools.cached_property
    def takes_late_system_turns(self) -> bool:
        """Whether a system turn after a user turn reaches the prompt: the template neither raises on it nor
        drops it, with or without a leading system prompt. Found once per model, by rendering four probes,
        on the first conversation that has such a turn (Qwen2.5's, SmolLM2's and Llama 3's templates take it)."""
        try:
            return all(_PROBE_MARK in self._render(probe, {}) for probe in _SYSTEM_PROBES)
        except Exception:  # whatever a template does with it, the probe says only "not here"
            return False

    def _render(self, conversation: Conversation, extra: dict[str, Any]) -> str:
        variables = dict(messages=conversation.template_messages(), tools=conversation.template_tools(),
                         add_generation_prompt=conversation.prefill is None, bos_token=self.bos_token,
                         eos_token=self.eos_token, **extra)
        return _with_time_limit(lambda: self._template.render(**variables), self.time_limit)

    def render(self, conversation: Conversation, **extra: Any) -> str:
        """Render the prompt; a final assistant turn is continued rather than closed. System turns among the
        messages are rendered as such where the template takes them, else folded into user turns."""
        if any(m.role == "system" for m in conversation.messages) and not self.takes_late_system_turns:
            conversation = fold_system_turns(conversation)
        prefill = conversation.prefill
        try:
            text = self._render(conversation, extra)
        except _TemplateTimeout:
            raise InvalidRequestError(
                f"The model's chat template did not finish rendering within {self.time_limit:g} s.") from None
        except SecurityError as exc:
            raise InvalidRequestError(f"The model's chat template tried an unsafe operation: {exc}") from None
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
