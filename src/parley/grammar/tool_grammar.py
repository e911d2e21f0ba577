"""Grammars that make every tool call parley returns valid against its tool's input_schema.

The call object `{"name": ..., "arguments": ...}` is one JSON Schema (an anyOf over the tools) turned
into GBNF by llama.cpp's own converter; the format's wrapper (`<tool_call>…</tool_call>`, a ```json
fence) goes around it. Forced grammars apply from the first token (`tool_choice` any/tool); lazy ones
engage when the output starts a call (`auto`), so free text stays unconstrained.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from llama_cpp.llama_grammar import json_schema_to_gbnf

from ..chat.messages import ToolSpec
from ..chat.params import GrammarConstraint
from ..parsers.tool_calls import CallSyntax

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


_SHAPING = {"type", "$ref", "anyOf", "oneOf", "allOf", "enum", "const", "properties", "items", "prefixItems"}
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMAS = ("items", "additionalProperties", "not")


def normalized_schema(schema: Any) -> Any:
    """An annotation-only subschema (`{"description": ...}`) means any value; llama.cpp's converter only
    understands that spelled `{}`."""
    if not isinstance(schema, dict):
        return schema
    if not _SHAPING & schema.keys():
        return {}
    out = dict(schema)
    for key in _SUBSCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {name: normalized_schema(sub) for name, sub in out[key].items()}
    for key in _SUBSCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [normalized_schema(sub) for sub in out[key]]
    for key in _SUBSCHEMAS:
        if isinstance(out.get(key), dict):
            out[key] = normalized_schema(out[key])
    if out.get("items") == {}:  # the converter trips on an empty `items`; leaving it out means the same
        del out["items"]
    return out


def _enforceable(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema if the converter takes it, else any object: a call is still forced, its input unchecked."""
    try:
        json_schema_to_gbnf(json.dumps(schema))
        return schema
    except Exception:  # the converter asserts on schema features it does not know
        log.warning("tool schema not enforceable by grammar; constraining to any object")
        return {"type": "object"}


def call_schema(tools: list[ToolSpec]) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    variants = []
    for i, tool in enumerate(tools):
        schema = _enforceable(normalized_schema(tool.input_schema or {"type": "object"}))
        arguments = _hoist_defs(schema, f"t{i}_", defs)
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


# The converter's `space` is `" "?`; models put newlines in JSON, and a lazy grammar that meets text it
# cannot accept aborts the process inside llama.cpp. Triggers and grammar must agree on whitespace.
SPACE = "[ \\t\\n\\r]{0,20}"
SPACE_REGEX = r"[ \t\n\r]{0,20}"


def _call_rules(tools: list[ToolSpec]) -> str:
    gbnf = json_schema_to_gbnf(json.dumps(call_schema(tools)), prop_order=["name", "arguments"])
    gbnf = re.sub(r"^space ::= .*$", lambda _: f"space ::= {SPACE}", gbnf, flags=re.MULTILINE)
    if not re.search(r"^space ::=", gbnf, flags=re.MULTILINE):
        gbnf += f"\nspace ::= {SPACE}"
    return re.sub(r"^root ::=", "call ::=", gbnf, flags=re.MULTILINE)


def _literal(text: str) -> str:
    return json.dumps(text)


def _wrapped(syntax: CallSyntax) -> str:
    if syntax.opener_is_json:
        return "call"
    return f"{_literal(syntax.opener)} space call space {_literal(syntax.closer)}" if syntax.closer else (
        f"{_literal(syntax.opener)} space call")


def forced_grammar(tools: list[ToolSpec], native: CallSyntax, parallel: bool) -> GrammarConstraint:
    """`tool_choice` any/tool: the output is one (or more) calls of these tools, from the first token."""
    block = _wrapped(native)
    more = f" ( space {block} )*" if parallel and not native.opener_is_json else ""
    return GrammarConstraint(f"root ::= {block}{more}\n{_call_rules(tools)}")


def _trigger(syntax: CallSyntax) -> str:
    """A regex that llama.cpp matches against all the output so far; the grammar then has to accept the
    text from its first group to the end — and aborts the process if it cannot. So a trigger matches
    only while the output ends in the opener plus a tail the grammar surely accepts; a token that
    overshoots leaves that call unconstrained (and leniently parsed) instead."""
    ws = SPACE_REGEX
    if syntax.opener_is_json:
        return rf'(?:[\s\S]*?\n)?{ws}(\{{{ws}"name")(?:{ws}:{ws}"?)?'
    return rf"[\s\S]*?({re.escape(syntax.opener)}){ws}\{{?"


def lazy_grammar(tools: list[ToolSpec], syntaxes: tuple[CallSyntax, ...], parallel: bool) -> GrammarConstraint:
    """`tool_choice` auto: free text until an opener appears, then a valid call (or calls) and the end."""
    blocks = " | ".join(f"( {_wrapped(s)} )" for s in syntaxes)
    more = f" ( space ( {blocks} ) )*" if parallel else ""
    triggers = tuple(_trigger(s) for s in syntaxes)
    return GrammarConstraint(f"root ::= ( {blocks} ){more}\n{_call_rules(tools)}", lazy=True, triggers=triggers)
