"""Structured output: a grammar that makes the whole answer one JSON value valid against a schema."""

from __future__ import annotations

import logging
from typing import Any

from ..core.params import GrammarConstraint
from ..errors import InvalidRequestError
from .converter import schema_to_gbnf
from .limits import grammar_problem

log = logging.getLogger(__name__)


def json_output_grammar(schema: dict[str, Any]) -> GrammarConstraint | None:
    """None when the grammar would be unsafe to compile (limits.py): the answer is then unconstrained."""
    try:
        gbnf = schema_to_gbnf(schema)
    except Exception as exc:  # the converter asserts on schema features it does not know
        raise InvalidRequestError(f"response_format: schema not supported for constrained output: {exc}") from exc
    if (problem := grammar_problem(gbnf)) is not None:
        log.warning("response_format: output not constrained by grammar: %s", problem)
        return None
    return GrammarConstraint(gbnf)
