"""The checks every API runs on what a request offers the model — tools and output schemas — in one place,
so a tool or a schema is accepted, tightened or refused the same way on every route. `where` is the place in
the calling API's own terms (`tools.2.function`, `text.format.schema`), for its error messages."""

from __future__ import annotations

import re
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from ..core.messages import TEXT_INPUT_SCHEMA, ToolSpec
from ..core.request import OutputFormat, SchemaPolicy
from ..errors import InvalidRequestError
from ..grammar.json_output import check_strict_schema, strict_gbnf

TOOL_NAME = re.compile(r"^[a-zA-Z0-9_.-]{1,128}$")
MAX_SCHEMA_DEPTH = 32  # nesting of objects/arrays in one schema


def _depth(value: Any) -> int:
    """How deeply JSON containers nest, counted without recursion (a hostile schema may be very deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def check_json_schema(schema: Any, where: str) -> None:
    """A JSON Schema parley may compile: not too deep, and valid (else a 400)."""
    if _depth(schema) > MAX_SCHEMA_DEPTH:
        raise InvalidRequestError(f"{where}: nested deeper than {MAX_SCHEMA_DEPTH} levels")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise InvalidRequestError(f"{where}: invalid JSON Schema: {exc.message}") from exc


def check_tool_name(name: str, where: str) -> None:
    if not TOOL_NAME.match(name):
        raise InvalidRequestError(f"{where}.name: String should match pattern '{TOOL_NAME.pattern}'")


def function_tool(name: str, description: str | None, schema: dict[str, Any], strict: bool, where: str,
                  schema_field: str = "input_schema") -> ToolSpec:
    """A tool that takes a JSON object: a sane name and an object schema; a strict one is checked to be
    wholly enforceable by grammar (a 400 now, not an unenforced tool later)."""
    check_tool_name(name, where)
    at = f"{where}.{schema_field}"
    check_json_schema(schema, at)
    if schema.get("type") != "object":
        raise InvalidRequestError(f"{at}.type: Input should be 'object'")
    if not strict:
        return ToolSpec(name, description or "", schema)
    schema = check_strict_schema(schema, at)
    strict_gbnf(schema, at)
    return ToolSpec(name, description or "", schema, strict=True)


def custom_tool(name: str, description: str | None, input_grammar: str | None, where: str) -> ToolSpec:
    """A tool that takes free text, optionally constrained by a grammar (GBNF of the text inside a JSON
    string; grammar/text_grammar.py makes it from Lark or a regex)."""
    check_tool_name(name, where)
    return ToolSpec(name, description or "", TEXT_INPUT_SCHEMA, custom=True, input_grammar=input_grammar)


def unique_names(tools: list[ToolSpec], where: str = "tools") -> None:
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise InvalidRequestError(f"{where}: Tool names must be unique.")


def output_format(kind: Literal["text", "json_object", "json_schema"], schema: Any, strict: bool,
                  where: str) -> OutputFormat:
    """The answer's format. A strict schema must be wholly enforceable (else a 400 naming what is not) and
    has its objects closed; a non-strict one is constrained as far as a grammar safely can."""
    if kind != "json_schema":
        return OutputFormat(kind)
    if schema is None:
        raise InvalidRequestError(f"{where}: Field required")
    check_json_schema(schema, where)
    policy: SchemaPolicy = "reject" if strict else "loosen"
    if strict:
        schema = check_strict_schema(schema, where)
    return OutputFormat("json_schema", schema, policy, where)
