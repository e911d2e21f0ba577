"""JSON Schema → GBNF: llama-cpp-python's converter, with bounded repetitions written flat.

That converter writes `maxLength: n` as n nested optional groups, `(c (c (c)?)?)?`, and llama.cpp parses
groups by recursion: Claude Code's `maxLength: 524288` overflowed the native stack and killed the server.
Here bounded strings and arrays are written `x{m,n}`, which llama.cpp and llguidance expand into flat rules
(schema_rewrite.py keeps n small). Numeric ranges are beyond this converter; an integer whose lower bound
is not negative at least loses its minus sign. Other bounds (±2**53−1 included) never reach the grammar.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from llama_cpp.llama_grammar import PRIMITIVE_RULES, RESERVED_NAMES, STRING_FORMAT_RULES, BuiltinRule, SchemaConverter

from .schema_rewrite import converter_input

# The converter's `space` is `" "?`; models put newlines in JSON, and a lazy grammar that meets text it
# cannot accept aborts the process inside llama.cpp. Lazy triggers (tool_grammar.py) use the same class.
SPACE = "[ \\t\\n\\r]{0,20}"

# A JSON string character. llama-cpp-python's `[^"\\]` lets a model write a raw newline (or any control
# character) inside a string: invalid JSON, which a strict parser rejects. llama.cpp's own converter excludes
# them, as JSON does.
CHAR = BuiltinRule(r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" '
                   r'[0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])', [])

_TAKEN_FIRST = ("$ref", "oneOf", "anyOf", "const", "enum")  # the converter's branches before any bound


def schema_to_gbnf(schema: dict[str, Any], prop_order: Sequence[str] = ()) -> str:
    """The grammar of `converter_input(schema)`. Raises what the converter raises on schema features it does
    not know (it asserts)."""
    converter = _FlatConverter(prop_order)
    schema = json.loads(json.dumps(converter_input(schema)))  # a copy: the converter rewrites `$ref`s in place
    converter.visit(converter.resolve_refs(schema, "stdin"), "")
    return converter.format_grammar()


class _FlatConverter(SchemaConverter):
    def __init__(self, prop_order: Sequence[str]) -> None:
        super().__init__(prop_order={name: i for i, name in enumerate(prop_order)}, allow_fetch=False,
                         dotall=False, raw_pattern=False)
        self._rules["space"] = SPACE
        self._ref_rules: dict[str, str] = {}

    def visit(self, schema: dict[str, Any], name: str) -> str:
        rule_name = name + "-" if name in RESERVED_NAMES else name or "root"
        if _bounded(schema, "string", "minLength", "maxLength"):
            char = self._add_primitive("char", CHAR)
            body = _repeat(char, schema.get("minLength", 0), schema.get("maxLength"))
            return self._add_rule(rule_name, f'"\\"" {body} "\\"" space')
        if _bounded(schema, "array", "minItems", "maxItems"):
            item = self.visit(schema["items"], f"{name}{'-' if name else ''}item")
            body = _items(item, schema.get("minItems", 0), schema.get("maxItems"))
            return self._add_rule(rule_name, f'"[" space {body} "]" space')
        if (low := _integer_floor(schema)) is not None and low >= 0:
            digits = "[1-9] [0-9]{0,15}" if low > 0 else '( "0" | [1-9] [0-9]{0,15} )'
            return self._add_rule(rule_name, f"{digits} space")
        return super().visit(schema, name)

    def _add_primitive(self, name: str, rule: BuiltinRule) -> str:
        return super()._add_primitive(name, CHAR if name == "char" else rule)

    def _resolve_ref(self, ref: str) -> str:
        """The rule of a `$ref`, converted once. The converter looked it up by its raw name but stored it under
        a sanitized one (`t0_A` as `t0-A`): such a definition was converted again at every use, exponentially
        in nested references (a hang), and a reference back into it named a rule that did not exist."""
        if ref not in self._ref_rules:
            alias = self._add_rule(f"ref-{ref.split('/')[-1]}", f"<{ref}>")  # a free name, held while converting
            self._ref_rules[ref] = alias
            self._rules[alias] = self.visit(self._refs[ref], ref.split("/")[-1])
        return self._ref_rules[ref]

    def _build_object_rule(self, properties: list[tuple[str, Any]], required: set[str], name: str,
                           additional_properties: Any) -> str:
        """The converter's own, made linear: it rebuilt each optional property's tail once per property before
        it (400 optional properties: 80,000 calls, a second per conversion). Here each tail is built once."""
        prefix = f"{name}{'-' if name else ''}"
        kv_rules = {}
        for prop_name, prop_schema in properties:
            value = self.visit(prop_schema, f"{prefix}{prop_name}")
            key = self._format_literal(json.dumps(prop_name))
            kv_rules[prop_name] = self._add_rule(f"{prefix}{prop_name}-kv", f'{key} space ":" space {value}')
        order = self._prop_order
        ranked = [k for _, (k, _) in sorted(enumerate(properties),
                                            key=lambda ikv: (order.get(ikv[1][0], len(order)), ikv[0]))]
        required_props = [k for k in ranked if k in required]
        optional = [kv_rules[k] for k in ranked if k not in required]
        if additional_properties is True or isinstance(additional_properties, dict):
            value = self.visit({} if additional_properties is True else additional_properties,
                               f"{prefix}additional-value")
            string = self._add_primitive("string", PRIMITIVE_RULES["string"])
            kv = self._add_rule(f"{prefix}additional-kv", f'{string} ":" space {value}')
            optional.append(self._add_rule(f"{prefix}additional-kvs", f'{kv} ( "," space {kv} )*'))
        rule = '"{" space ' + ' "," space '.join(kv_rules[k] for k in required_props)
        if optional:
            tails = " | ".join(self._optional_tails(optional, prefix))
            rule += f' ( "," space ( {tails} ) )?' if required_props else f" ( {tails} )?"
        return rule + ' "}" space'

    def _optional_tails(self, optional: list[str], prefix: str) -> list[str]:
        """One alternative per optional property: it, then any of the ones after it, in order."""
        tails, rest = [], ""
        for i in reversed(range(len(optional))):
            tails.append(f"{optional[i]} {rest}".rstrip())
            if i:  # what may follow the property before: this one or not, then its own rest
                rest = self._add_rule(f"{prefix}{i - 1}-rest", f'( "," space {optional[i]} )? {rest}'.rstrip())
        return tails[::-1]

    def _format_literal(self, literal: str) -> str:
        """`literal` is JSON text (a constant, a property name): as a model writes it, printable characters as
        themselves, and escaped for GBNF. The converter left `\\` unescaped, so `"\\u00fc"` reached GBNF as an
        escape (which llguidance misreads) and a backslash in a value as a lone one (invalid JSON)."""
        text = json.dumps(json.loads(literal), ensure_ascii=False)
        text = "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in text)  # control characters too
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _bounded(schema: dict[str, Any], kind: str, low: str, high: str) -> bool:
    """Whether the converter would write this schema's bounds as a repetition (its branch order)."""
    if not (low in schema or high in schema) or any(key in schema for key in _TAKEN_FIRST):
        return False
    kind_of = schema.get("type")
    if kind == "string":
        fmt = str(schema.get("format") or "")
        return (kind_of == "string" and "pattern" not in schema and not re.match(r"^uuid[1-5]?$", fmt)
                and f"{fmt}-string" not in STRING_FORMAT_RULES)
    object_like = ("properties" in schema or "allOf" in schema
                   or schema.get("additionalProperties", True) is not True)
    items = schema.get("items")
    return (kind_of == "array" or kind_of is None and not object_like) and isinstance(items, dict) and bool(items)


def _repeat(item: str, low: int, high: int | None) -> str:
    if high is None:
        return f"{item}{{{low},}}" if low else f"{item}*"
    return f"{item}{{{low},{high}}}" if high else ""


def _items(item: str, low: int, high: int | None) -> str:
    """`low` to `high` comma-separated items."""
    if high == 0:
        return ""
    more = _repeat(f'( "," space {item} )', max(low - 1, 0), None if high is None else high - 1)
    body = f"{item} {more}".rstrip()
    return body if low else f"( {body} )?"


def _integer_floor(schema: dict[str, Any]) -> int | None:
    """The least integer a plain `integer` schema allows, when it says."""
    if schema.get("type") != "integer" or any(key in schema for key in _TAKEN_FIRST):
        return None
    floors = []
    for key, to_floor in (("minimum", math.ceil), ("exclusiveMinimum", lambda v: math.floor(v) + 1)):
        value = schema.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            floors.append(to_floor(value))
    return max(floors) if floors else None
