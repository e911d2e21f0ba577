"""The check after parsing: a tool call's input against its tool's full `input_schema`.

Grammars hold most of a schema, but not all of it: bounds too large to write flat (lengths and counts over
grammar/schema_rewrite.py's limit), patterns with large quantifiers, numeric ranges, and tools whose schema
could not be made into a safe grammar at all. A call that breaks what the grammar could not hold is still
returned — the client's own tool runner validates too, and a turn cut short helps no agent — but it is logged
with the request id, so a model that writes out-of-bounds inputs is visible."""

from __future__ import annotations

import logging
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from ..core.messages import ToolSpec

log = logging.getLogger(__name__)


class CallChecker:
    """Per request: validators built on first use for the tools that were actually called."""

    def __init__(self, tools: list[ToolSpec]) -> None:
        self._schemas = {t.name: t.input_schema for t in tools}
        self._validators: dict[str, Draft202012Validator | None] = {}

    def problems(self, name: str, arguments: dict[str, Any]) -> list[str]:
        validator = self._validator(name)
        if validator is None:
            return []
        return [f"{'/'.join(map(str, e.absolute_path)) or '(input)'}: {e.message[:200]}"
                for e in validator.iter_errors(arguments)]

    def check(self, name: str, arguments: dict[str, Any]) -> bool:
        found = self.problems(name, arguments)
        if found:
            log.warning("tool call %r: input breaks its schema where the grammar could not hold it: %s",
                        name, "; ".join(found[:5]))
        return not found

    def _validator(self, name: str) -> Draft202012Validator | None:
        if name not in self._validators:
            schema = self._schemas.get(name)
            try:
                self._validators[name] = Draft202012Validator(schema) if schema is not None else None
            except SchemaError:  # checked at the boundary already; never fail a turn over it
                self._validators[name] = None
        return self._validators[name]
