"""The grammar of a custom tool's free-text input (OpenAI Responses `format: {"type": "grammar", ...}`).

The model writes a custom tool's call as `{"name": ..., "arguments": {"input": "<text>"}}`; the GBNF made
here constrains `<text>` — the inside of that JSON string, escapes and all — to exactly what the tool's
Lark or regex grammar accepts. tool_grammar.py puts it between the quotes.
"""

from __future__ import annotations

from typing import Literal

from ..errors import InvalidRequestError
from .lark_gbnf import lark_gbnf
from .limits import grammar_problem
from .regex_gbnf import regex_gbnf


def text_grammar_gbnf(syntax: Literal["lark", "regex"], definition: str, where: str) -> str:
    """GBNF whose `root` generates the JSON-string content of exactly the strings `definition` accepts.
    A 400 naming `where` when the grammar is invalid, uses what no grammar can hold (backreferences,
    lookarounds), or makes a grammar llama.cpp would not take (too large, indirectly left-recursive)."""
    if syntax == "lark":
        gbnf = lark_gbnf(definition, where)
    elif syntax == "regex":
        gbnf = regex_gbnf(definition, where)
    else:
        raise InvalidRequestError(f"{where}: unknown grammar syntax {syntax!r}: expected 'lark' or 'regex'")
    if (problem := grammar_problem(gbnf)) is not None:
        hint = " (left recursion through another rule, or a repetition of something that can be empty?)" if (
            "does not accept" in problem) else ""
        raise InvalidRequestError(f"{where}: grammar not usable for constrained decoding: {problem}{hint}")
    return gbnf
