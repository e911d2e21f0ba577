"""Which tool-call format a model speaks, read from its chat template."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..core.events import Event
from .mistral import MistralToolParser
from .qwen3_coder import Qwen3CoderToolParser
from .tool_calls import BARE_JSON, HERMES, JSON_FENCE, PYTHON_TAG, CallSyntax, ToolCallParser


class OutputParser(Protocol):
    """Per request: model text in, text and tool-call events out."""

    def feed(self, text: str) -> list[Event]: ...

    def finish(self) -> list[Event]: ...


ParserFactory = Callable[[dict[str, dict[str, Any]]], OutputParser]  # tool name → input_schema


@dataclass(frozen=True)
class ToolFormat:
    name: str
    syntaxes: tuple[CallSyntax, ...]  # what the parser accepts (lenient: small models stray); lazy grammar triggers
    native: CallSyntax  # what constrained decoding forces
    factory: ParserFactory | None = None  # None: a ToolCallParser over `syntaxes`

    def make_parser(self, tool_schemas: dict[str, dict[str, Any]]) -> OutputParser:
        """A fresh parser for one request whose callable tools are `tool_schemas`."""
        if self.factory is not None:
            return self.factory(tool_schemas)
        return ToolCallParser(self.syntaxes, set(tool_schemas))


# Constrained output for these is a JSON call object after the syntax's opener, which their parsers accept too.
MISTRAL_TAG = CallSyntax("[TOOL_CALLS]", markup=True)

HERMES_FORMAT = ToolFormat("hermes", (HERMES, JSON_FENCE, BARE_JSON), HERMES)
LLAMA3_FORMAT = ToolFormat("llama3", (PYTHON_TAG, JSON_FENCE, BARE_JSON), BARE_JSON)
JSON_FORMAT = ToolFormat("json", (JSON_FENCE, BARE_JSON), BARE_JSON)
MISTRAL_FORMAT = ToolFormat("mistral", (MISTRAL_TAG,), MISTRAL_TAG, lambda schemas: MistralToolParser(set(schemas)))
QWEN3_CODER_FORMAT = ToolFormat("qwen3_coder", (HERMES,), HERMES, Qwen3CoderToolParser)


def infer_tool_format(template_source: str) -> ToolFormat:
    if "[TOOL_CALLS]" in template_source:
        return MISTRAL_FORMAT
    # Before hermes: Qwen3-Coder templates contain <tool_call> too (and Functionary's <function= has no <parameter=).
    if "<function=" in template_source and "<parameter=" in template_source:
        return QWEN3_CODER_FORMAT
    if "<tool_call>" in template_source:
        return HERMES_FORMAT
    if "<|python_tag|>" in template_source or "ipython" in template_source:
        return LLAMA3_FORMAT
    return JSON_FORMAT
