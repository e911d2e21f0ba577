"""Which parts of a JSON Schema a grammar cannot hold: structured outputs (`output_config.format`, strict tools)
promise every answer validates, so a schema asking for more than the grammar enforces is a 400, as the API
rejects what its own subset lacks (numeric bounds, `not`, conditionals, open objects, ...).

Bounds the grammar writes as flat repetitions (converter.py) are held exactly up to REPEAT_LIMIT, so parley
takes `minLength`/`maxLength`/`maxItems` and any `minItems` where the API takes only `minItems` 0 or 1.
"""

from __future__ import annotations

from typing import Any

from .schema_rewrite import PATTERN_REPEAT_LIMIT, QUANTIFIER, REPEAT_LIMIT, map_subschemas

# Keywords no grammar here enforces; the SDKs' `transform_schema` moves them into descriptions.
UNENFORCEABLE = (
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "not", "if", "then", "else",
    "uniqueItems", "contains", "minContains", "maxContains", "propertyNames", "patternProperties",
    "dependentRequired", "dependentSchemas", "dependencies", "unevaluatedProperties", "unevaluatedItems",
    "minProperties", "maxProperties", "$dynamicRef", "$dynamicAnchor", "prefixItems",
)
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf")
_COUNTS = ("minLength", "maxLength", "minItems", "maxItems")


def strict_schema_problems(schema: Any, where: str) -> list[str]:
    """Each unsupported feature as `path: why`; empty when the grammar enforces the whole schema."""
    problems: list[str] = []
    stack: list[tuple[Any, str]] = [(schema, where)]
    while stack:  # no recursion: a hostile schema may nest deeply
        node, at = stack.pop()
        if not isinstance(node, dict):
            if not isinstance(node, bool):
                problems.append(f"{at}: a schema must be an object or a boolean")
            continue
        problems += _own_problems(node, at)
        for key in _SUBSCHEMA_MAPS:
            if isinstance(node.get(key), dict):
                stack += [(sub, f"{at}.{key}.{name}") for name, sub in node[key].items()]
        for key in _SUBSCHEMA_LISTS:
            if isinstance(node.get(key), list):
                stack += [(sub, f"{at}.{key}.{i}") for i, sub in enumerate(node[key])]
        if isinstance(node.get("items"), dict | bool):
            stack.append((node["items"], f"{at}.items"))
    return problems


def _own_problems(node: dict[str, Any], at: str) -> list[str]:
    problems = [f"{at}.{key}: not supported in strict schemas" for key in UNENFORCEABLE if key in node]
    ref = node.get("$ref")
    if isinstance(ref, str) and not ref.startswith("#"):
        problems.append(f"{at}.$ref: only local references ('#/...') are supported")
    if _is_object(node) and node.get("additionalProperties", False) is not False:
        problems.append(f"{at}.additionalProperties: must be false (or left out) in strict schemas")
    if isinstance(node.get("items"), list):
        problems.append(f"{at}.items: tuple validation is not supported in strict schemas")
    for key in _COUNTS:
        value = node.get(key)
        if key in node and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= REPEAT_LIMIT):
            problems.append(f"{at}.{key}: must be a whole number from 0 to {REPEAT_LIMIT}")
    pattern = node.get("pattern")
    if pattern is not None and not _pattern_fits(pattern):
        problems.append(f"{at}.pattern: quantifiers above {PATTERN_REPEAT_LIMIT} are not supported")
    return problems


def _is_object(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    return kind == "object" or (isinstance(kind, list) and "object" in kind) or "properties" in node


def _pattern_fits(pattern: Any) -> bool:
    return isinstance(pattern, str) and all(
        int(n) <= PATTERN_REPEAT_LIMIT for match in QUANTIFIER.finditer(pattern) for n in match.groups() if n)


def closed_objects(schema: Any) -> Any:
    """`schema` with every object that leaves `additionalProperties` out closed: the API's strict schemas
    allow no other properties, and the grammar then writes none."""
    if not isinstance(schema, dict):
        return schema
    out = map_subschemas(schema, closed_objects)
    if _is_object(out) and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out
