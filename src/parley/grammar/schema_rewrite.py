"""JSON Schemas rewritten before conversion, so that the grammar they become is small, flat and compiles.

- A subschema with only annotations (`{"description": ...}`) means any value; the converter only understands
  that spelled `{}`.
- Length and item-count bounds become repetitions: llama.cpp expands `x{m,n}` into n rules (past 2000 it
  refuses a minimum and ignores a maximum). Claude Code's tools say `maxLength: 524288`. A bound up to
  REPEAT_LIMIT is kept and enforced exactly; a larger one is dropped: that side is then unbounded.
- A `pattern` with a quantifier over PATTERN_REPEAT_LIMIT is dropped (the string stays a string): the converter
  writes a pattern's `{m,n}` as n − m nested groups.

What is dropped here is not enforced by the grammar; chat/call_check.py checks each parsed tool input against
the full schema and logs a violation. The limits make one need an unlikely value: a string or list of more than
REPEAT_LIMIT characters or items where the schema allowed more than that anyway (524288 is beyond any context),
or fewer where it demanded more than REPEAT_LIMIT.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

REPEAT_LIMIT = 1000  # half of llama.cpp's own cap (MAX_REPETITION_THRESHOLD, 2000) on one repetition
PATTERN_REPEAT_LIMIT = 16  # nested groups per pattern quantifier; limits.MAX_NESTING is 24

_SHAPING = {"type", "$ref", "anyOf", "oneOf", "allOf", "enum", "const", "properties", "items", "prefixItems"}
_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems", "items")
_SINGLE = ("items", "additionalProperties", "not", "contains", "propertyNames", "if", "then", "else")
_BOUNDS = (("minLength", "maxLength"), ("minItems", "maxItems"))
QUANTIFIER = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")


def converter_input(schema: Any) -> Any:
    """`schema` as the converter should see it; a new object, the original is left as it is."""
    if not isinstance(schema, dict):
        return schema  # `true` / `false`
    if not _SHAPING & schema.keys():
        return {}
    out = map_subschemas(schema, converter_input)
    _keep_cheap_bounds(out)
    if out.get("items") == {}:  # the converter trips on an empty `items`; leaving it out means the same
        del out["items"]
    return out


def map_subschemas(schema: dict[str, Any], fn: Callable[[Any], Any]) -> dict[str, Any]:
    """A copy with `fn` applied to each direct subschema (never to data: `enum`, `const`, `default`)."""
    out = dict(schema)
    for key in _MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {name: fn(sub) for name, sub in out[key].items()}
    for key in _LISTS:
        if isinstance(out.get(key), list):
            out[key] = [fn(sub) for sub in out[key]]
    for key in _SINGLE:
        if isinstance(out.get(key), dict):
            out[key] = fn(out[key])
    return out


def _keep_cheap_bounds(schema: dict[str, Any]) -> None:
    for low_key, high_key in _BOUNDS:
        low, high = _count(schema.pop(low_key, None)), _count(schema.pop(high_key, None))
        if low is not None and high is not None and high < low:
            high = low  # unsatisfiable; llama.cpp would loop on x{m,n} with n < m
        if low:
            schema[low_key] = low
        if high is not None:
            schema[high_key] = high
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and any(int(n) > PATTERN_REPEAT_LIMIT
                                        for match in QUANTIFIER.finditer(pattern) for n in match.groups() if n):
        del schema["pattern"]


def _count(value: Any) -> int | None:
    """A bound the grammar holds: a whole number from 0 to REPEAT_LIMIT; anything else is dropped."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= REPEAT_LIMIT:
        return None
    return int(value) if value == int(value) else None
