"""Structured output: a grammar that makes the whole answer one JSON value valid against a schema."""

from __future__ import annotations

import json
from typing import Any

from llama_cpp.llama_grammar import json_schema_to_gbnf

from ..chat.params import GrammarConstraint
from ..errors import InvalidRequestError
from .tool_grammar import SPACE, normalized_schema


def json_output_grammar(schema: dict[str, Any]) -> GrammarConstraint:
    try:
        gbnf = json_schema_to_gbnf(json.dumps(normalized_schema(schema)))
    except Exception as exc:  # the converter asserts on schema features it does not know
        raise InvalidRequestError(f"response_format: schema not supported for constrained output: {exc}") from exc
    lines = [f"space ::= {SPACE}" if line.startswith("space ::=") else line for line in gbnf.splitlines()]
    return GrammarConstraint("\n".join(lines))
