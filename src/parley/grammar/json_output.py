"""Structured output: a grammar that makes the whole answer one JSON value valid against a schema."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from ..core.params import GrammarConstraint
from ..core.request import OutputFormat
from ..errors import InvalidRequestError
from .converter import SPACE, schema_to_gbnf
from .limits import grammar_problem
from .strict_schema import closed_objects, strict_schema_problems

log = logging.getLogger(__name__)


def loose_gbnf(schema: dict[str, Any], where: str) -> str | None:
    """A non-strict schema's grammar: None when it would be unsafe to compile (limits.py): the answer is
    then unconstrained, and that is logged."""
    try:
        gbnf = schema_to_gbnf(schema)
    except Exception as exc:  # the converter asserts on schema features it does not know
        raise InvalidRequestError(f"{where}: schema not supported for constrained output: {exc}") from exc
    if (problem := grammar_problem(gbnf)) is not None:
        log.warning("%s: output not constrained by grammar: %s", where, problem)
        return None
    return gbnf


def answer_gbnf(output: OutputFormat) -> str | None:
    """The grammar of the answer `output` asks for, under its policy; None for free text (or, loosened, a
    schema too large to hold)."""
    schema = output.answer_schema
    if schema is None:
        return None
    return strict_gbnf(schema, output.where) if output.policy == "reject" else loose_gbnf(schema, output.where)


def check_strict_schema(schema: dict[str, Any], where: str) -> dict[str, Any]:
    """The schema a strict grammar enforces (objects closed), or a 400 naming what it cannot enforce."""
    problems = strict_schema_problems(schema, where)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise InvalidRequestError(f"Unsupported JSON Schema features for structured output: {shown}")
    return closed_objects(schema)


def strict_gbnf(schema: dict[str, Any], where: str) -> str:
    """The grammar of a checked strict schema; a 400 when it cannot be built or would be unsafe."""
    try:
        gbnf = schema_to_gbnf(schema)
    except Exception as exc:  # the converter asserts on schema features it does not know
        raise InvalidRequestError(f"{where}: schema not supported for structured output: {exc}") from exc
    if (problem := grammar_problem(gbnf)) is not None:
        raise InvalidRequestError(f"{where}: schema too large for structured output ({problem})")
    return gbnf


def after_reasoning(grammar: GrammarConstraint, close: str) -> GrammarConstraint:
    """`grammar`, engaged once the model's output closes its reasoning with `close`: the reasoning before it
    stays free. Only a forced grammar can be deferred so (a lazy one already waits for its own triggers)."""
    if grammar.lazy:
        return grammar
    # llama.cpp hands the grammar the output from the trigger's first group on: the close text, then JSON.
    gbnf = re.sub(r"^root ::=", "answer ::=", grammar.gbnf, count=1, flags=re.MULTILINE)
    gbnf = f"root ::= {json.dumps(close)} {SPACE} answer\n{gbnf}"
    # A token may carry the answer's first character along: only `{`, which every object answer starts with.
    opener = r"\{?" if re.search(r'^answer ::= "\{"', gbnf, flags=re.MULTILINE) else ""
    return GrammarConstraint(gbnf, lazy=True, triggers=(f"({re.escape(close)})[ \\t\\n\\r]*{opener}$",))
