"""Output parsers by name. The chat template picks a model's default (infer.py); `--tool-parser`,
`--reasoning-parser` or a model's `tool_parser` / `reasoning_parser` config key name another.

A new tool-call format is one module (its parser and its `ToolFormat`) and one entry here."""

from __future__ import annotations

from .infer import infer_reasoning_parser, infer_tool_parser
from .mistral import MISTRAL_FORMAT
from .qwen3_coder import QWEN3_CODER_FORMAT
from .think import NO_REASONING, THINK_FORMAT, ReasoningFormat
from .tool_calls import HERMES_FORMAT, JSON_FORMAT, LLAMA3_FORMAT, ToolFormat

TOOL_PARSERS: dict[str, ToolFormat] = {
    "hermes": HERMES_FORMAT,
    "llama3_json": LLAMA3_FORMAT,
    "json": JSON_FORMAT,
    "mistral": MISTRAL_FORMAT,
    "qwen3_coder": QWEN3_CODER_FORMAT,
}
REASONING_PARSERS: dict[str, ReasoningFormat] = {
    "think": THINK_FORMAT,
    "none": NO_REASONING,
}
TOOL_PARSER_NAMES = tuple(TOOL_PARSERS)
REASONING_PARSER_NAMES = tuple(REASONING_PARSERS)


class UnknownParserError(ValueError):
    pass


def check_parser(kind: str, name: str) -> str:
    """`name` if `kind` ("tool" or "reasoning") has a parser of that name; else an error listing the names."""
    known = TOOL_PARSER_NAMES if kind == "tool" else REASONING_PARSER_NAMES
    if name not in known:
        raise UnknownParserError(f"unknown {kind} parser {name!r}; one of {', '.join(known)}")
    return name


def tool_parser_for(template_source: str, name: str | None = None) -> ToolFormat:
    """The tool-call format named, or (None) the one the template implies."""
    return TOOL_PARSERS[check_parser("tool", name or infer_tool_parser(template_source))]


def reasoning_parser_for(template_source: str, name: str | None = None) -> ReasoningFormat:
    """The reasoning format named, or (None) the one the template implies."""
    return REASONING_PARSERS[check_parser("reasoning", name or infer_reasoning_parser(template_source))]
