"""Which tool-call format a model speaks, read from its chat template."""

from __future__ import annotations

from dataclasses import dataclass

from .tool_calls import BARE_JSON, HERMES, JSON_FENCE, PYTHON_TAG, CallSyntax


@dataclass(frozen=True)
class ToolFormat:
    name: str
    syntaxes: tuple[CallSyntax, ...]  # what the parser accepts (lenient: small models stray)
    native: CallSyntax  # what constrained decoding forces


HERMES_FORMAT = ToolFormat("hermes", (HERMES, JSON_FENCE, BARE_JSON), HERMES)
LLAMA3_FORMAT = ToolFormat("llama3", (PYTHON_TAG, JSON_FENCE, BARE_JSON), BARE_JSON)
JSON_FORMAT = ToolFormat("json", (JSON_FENCE, BARE_JSON), BARE_JSON)


def infer_tool_format(template_source: str) -> ToolFormat:
    if "<tool_call>" in template_source:
        return HERMES_FORMAT
    if "<|python_tag|>" in template_source or "ipython" in template_source:
        return LLAMA3_FORMAT
    return JSON_FORMAT
