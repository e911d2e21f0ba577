"""Grammars that make every tool call parley returns valid against its tool's input_schema.

The call object `{"name": ..., "arguments": ...}` is one JSON Schema (an anyOf over the tools) turned
into GBNF (converter.py); the format's wrapper (`<tool_call>…</tool_call>`, a ```json fence) goes around
it. Forced grammars apply from the first token (`tool_choice` any/tool); lazy ones engage when the output
starts a call (`auto`), so free text stays unconstrained. A tool whose schema would make an unsafe grammar
(limits.py) is constrained to any object; a tool set whose grammar would be unsafe gets none.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from ..core.messages import TEXT_INPUT_SCHEMA, ToolSpec
from ..core.params import GrammarConstraint
from ..parsers.tool_calls import CallSyntax
from .converter import SPACE, schema_to_gbnf
from .limits import grammar_problem

log = logging.getLogger(__name__)


def _hoist_defs(schema: Any, prefix: str, defs: dict[str, Any]) -> Any:
    """Move a tool's `$defs`/`definitions` to the top level under unique names, rewriting its `$ref`s."""
    if isinstance(schema, dict):
        for key in ("$defs", "definitions"):
            for name, sub in (schema.get(key) or {}).items():
                defs[f"{prefix}{name}"] = _hoist_defs(sub, prefix, defs)
        out = {}
        for k, v in schema.items():
            if k in ("$defs", "definitions"):
                continue
            if k == "$ref" and isinstance(v, str):
                v = re.sub(r"^#/(\$defs|definitions)/", f"#/$defs/{prefix}", v)
            out[k] = _hoist_defs(v, prefix, defs)
        return out
    if isinstance(schema, list):
        return [_hoist_defs(v, prefix, defs) for v in schema]
    return schema


def _enforceable(tool: ToolSpec) -> dict[str, Any]:
    """The tool's schema if its grammar is safe to use, else any object: a call is still forced, its input
    unchecked."""
    if tool.custom:
        return TEXT_INPUT_SCHEMA
    schema = tool.input_schema or {"type": "object"}
    try:
        problem = grammar_problem(schema_to_gbnf(schema))
    except Exception as exc:  # the converter asserts on schema features it does not know
        problem = f"not convertible: {exc!r}"[:200]
    if problem is None:
        return schema
    log.warning("tool %r: schema not enforceable by grammar (%s); constraining to any object", tool.name, problem)
    return {"type": "object"}


def call_schema(tools: list[ToolSpec]) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    variants = []
    for i, tool in enumerate(tools):
        arguments = _hoist_defs(_enforceable(tool), f"t{i}_", defs)
        variants.append({
            "type": "object",
            "properties": {"name": {"const": tool.name}, "arguments": arguments},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        })
    schema: dict[str, Any] = {"anyOf": variants} if len(variants) > 1 else variants[0]
    if defs:
        schema["$defs"] = defs
    return schema


SPACE_REGEX = r"[ \t\n\r]{0,20}"  # the grammar's `space` (converter.SPACE): triggers and grammar must agree


def _call_rules(tools: list[ToolSpec]) -> str:
    """The `call` rule: one call object of any of `tools`. A custom tool with an input grammar (text_grammar.py)
    gets its own alternative, `{"name": ..., "arguments": {"input": "<text>"}}`, the text held by that grammar;
    the other tools share one JSON Schema (a custom tool without a grammar takes any string: TEXT_INPUT_SCHEMA)."""
    texts = [(i, t) for i, t in enumerate(tools) if t.custom and t.input_grammar]
    others = [t for t in tools if not (t.custom and t.input_grammar)]
    if not texts:
        return _schema_call_rules(others, "call")
    alternatives, parts = [], []
    if others:
        alternatives.append("schema-call")
        parts.append(_schema_call_rules(others, "schema-call"))
    else:
        parts.append(f"space ::= {SPACE}")  # the converter's, which the wrappers use too
    for i, tool in texts:
        prefix = f"custom{i}-"  # the converter's names come from "root", properties and `t<i>_` defs: never this
        alternatives.append(f"{prefix}call")
        parts.append(f'{prefix}call ::= "{{" space "\\"name\\"" space ":" space {_json_literal(tool.name)} '
                     f'"," space "\\"arguments\\"" space ":" space "{{" space "\\"input\\"" space ":" space '
                     f'"\\"" {prefix}root "\\"" space "}}" space "}}" space')
        parts.append(prefixed_rules(tool.input_grammar or "", prefix).strip())
    return "\n".join([f"call ::= {' | '.join(alternatives)}", *parts])


def _schema_call_rules(tools: list[ToolSpec], name: str) -> str:
    gbnf = schema_to_gbnf(call_schema(tools), prop_order=["name", "arguments"])
    return re.sub(r"^root ::=", f"{name} ::=", gbnf, flags=re.MULTILINE)


def _json_literal(text: str) -> str:
    """The GBNF literal of `text` written as a JSON string."""
    return '"' + json.dumps(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _literal(text: str) -> str:
    return json.dumps(text)


def _wrapped(syntax: CallSyntax) -> str:
    if syntax.opener_is_json:
        return "call"
    return f"{_literal(syntax.opener)} space call space {_literal(syntax.closer)}" if syntax.closer else (
        f"{_literal(syntax.opener)} space call")


def _usable(grammar: GrammarConstraint) -> GrammarConstraint | None:
    if (problem := grammar_problem(grammar.gbnf)) is None:
        return grammar
    log.warning("tool calls not constrained by grammar: %s", problem)
    return None


def forced_grammar(tools: list[ToolSpec], native: CallSyntax, parallel: bool) -> GrammarConstraint | None:
    """`tool_choice` any/tool: the output is one (or more) calls of these tools, from the first token.
    None when the grammar would be unsafe to compile (limits.py): the model is then asked, not forced."""
    block = _wrapped(native)
    more = f" ( space {block} )*" if parallel and not native.opener_is_json else ""
    return _usable(GrammarConstraint(f"root ::= {block}{more}\n{_call_rules(tools)}"))


def _trigger(syntax: CallSyntax) -> str:
    """A regex that llama.cpp searches for in all the output so far, after each token; the grammar then has
    to accept the text from its first group to the end — and aborts the process if it cannot. So a trigger
    matches only at the end of the output: the opener plus a tail the grammar surely accepts; a token that
    overshoots leaves that call unconstrained (and leniently parsed) instead. No leading `[\\s\\S]*?`:
    std::regex retries it from every position, which made each search quadratic and as deep in native stack
    frames as the output is long (a 4,000-character answer took two minutes; longer ones overflowed)."""
    ws = SPACE_REGEX
    if syntax.opener_is_json:
        return rf'(?:^|\n){ws}(\{{{ws}"name")(?:{ws}:{ws}"?)?$'
    return rf"({re.escape(syntax.opener)}){ws}\{{?$"


# GBNF's pieces: literals, classes and repetition counts are left alone; the rest are rule names.
_GBNF_PIECE = re.compile(r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]|\{[^}]*\}|[A-Za-z0-9][A-Za-z0-9-]*')


def prefixed_rules(gbnf: str, prefix: str) -> str:
    """`gbnf` with every rule renamed `prefix` + name, so that two converted grammars can share one file."""
    return _GBNF_PIECE.sub(lambda m: m.group() if m.group()[0] in '"[{' else prefix + m.group(), gbnf)


def answer_or_calls_grammar(tools: list[ToolSpec], syntaxes: tuple[CallSyntax, ...], parallel: bool,
                            answer_gbnf: str) -> GrammarConstraint | None:
    """Structured output with tools the model may call: from the first token, either the JSON answer or
    valid calls. None when the grammar would be unsafe to compile."""
    blocks = " | ".join(f"( {_wrapped(s)} )" for s in syntaxes)
    more = f" ( space ( {blocks} ) )*" if parallel else ""
    answer = prefixed_rules(answer_gbnf, "answer-")
    return _usable(GrammarConstraint(f"root ::= answer-root | ( {blocks} ){more}\n{_call_rules(tools)}\n{answer}"))


def lazy_grammar(tools: list[ToolSpec], syntaxes: tuple[CallSyntax, ...],
                 parallel: bool) -> GrammarConstraint | None:
    """`tool_choice` auto: free text until an opener appears, then a valid call (or calls) and the end.
    None when the grammar would be unsafe to compile: calls are then only parsed, leniently."""
    blocks = " | ".join(f"( {_wrapped(s)} )" for s in syntaxes)
    more = f" ( space ( {blocks} ) )*" if parallel else ""
    triggers = tuple(_trigger(s) for s in syntaxes)
    return _usable(GrammarConstraint(f"root ::= ( {blocks} ){more}\n{_call_rules(tools)}", lazy=True,
                                     triggers=triggers))
