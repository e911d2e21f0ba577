"""Regular expressions → GBNF that writes the matched text as the inside of a JSON string.

A custom tool's free-text input reaches the model's output as a JSON string (`{"input": "..."}`), so each
character of the text is generated as JSON writes it: `"` as `\\"`, `\\` as `\\\\`, newline, tab and CR as
`\\n` `\\t` `\\r`, other control characters as `\\u00XX`, everything else raw. Character sets are kept as
code-point ranges and split into those pieces. Patterns are read by Python's own parser (`re._parser`), so a
class, a flag or `\\w` means here what it means to `re.fullmatch` (Unicode `\\d \\w \\s` included).
"""

from __future__ import annotations

import re
from re import _constants as sre_c  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

from ..errors import InvalidRequestError
from .code_points import MAX_CHAR, Ranges, cased, category, complement, contains, matched, minus, normal
from .limits import MAX_BYTES

MAX_COUNT = 1000  # repetition bounds: above this a maximum is left unbounded, a minimum is refused
_JSON_ESCAPES = {0x22: '\\"', 0x5C: "\\\\", 0x0A: "\\n", 0x09: "\\t", 0x0D: "\\r"}
_NOT_RAW: Ranges = ((0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C))  # characters JSON writes only as escapes
_REFUSED = {
    sre_c.GROUPREF: "backreferences", sre_c.GROUPREF_EXISTS: "conditional groups",
    sre_c.ASSERT: "lookarounds", sre_c.ASSERT_NOT: "lookarounds", sre_c.ATOMIC_GROUP: "atomic groups",
    sre_c.POSSESSIVE_REPEAT: "possessive quantifiers",
}
_STARTS = (sre_c.AT_BEGINNING, sre_c.AT_BEGINNING_STRING)
_ENDS = (sre_c.AT_END, sre_c.AT_END_STRING)
_CATEGORIES = {
    sre_c.CATEGORY_DIGIT: ("d", False), sre_c.CATEGORY_NOT_DIGIT: ("d", True),
    sre_c.CATEGORY_SPACE: ("s", False), sre_c.CATEGORY_NOT_SPACE: ("s", True),
    sre_c.CATEGORY_WORD: ("w", False), sre_c.CATEGORY_NOT_WORD: ("w", True),
}


class Unsupported(Exception):
    """A pattern feature no grammar can hold; the caller turns it into a 400 naming where it was."""


# -- GBNF text ----------------------------------------------------------------------------------------------
SURROGATES = (0xD800, 0xDFFF)  # no UTF-8 text holds one: left out of every class


def _gbnf_char(cp: int) -> str:
    """ASCII letters and digits as themselves, other ASCII as `\\xXX`, the rest raw: llguidance (MLX, vLLM)
    misreads `\\uXXXX` in classes, and raw UTF-8 means the same to llama.cpp."""
    if cp >= 0x80 or chr(cp).isalnum():
        return chr(cp)
    return f"\\x{cp:02X}"


def gbnf_literal(text: str) -> str:
    """A GBNF literal for exactly `text` (printable ASCII as itself)."""
    out = "".join("\\" + c if c in '"\\' else c if " " <= c <= "~" else _gbnf_char(ord(c)) for c in text)
    return f'"{out}"'


def json_text(text: str) -> str:
    """`text` as it stands inside a JSON string."""
    return "".join(_JSON_ESCAPES.get(ord(c)) or (f"\\u{ord(c):04x}" if ord(c) < 0x20 else c) for c in text)


def _gbnf_class(ranges: Ranges) -> str:
    """A class of raw characters, written positively or negated, whichever is shorter."""
    def items(rs: Ranges) -> str:
        rs = minus(rs, (SURROGATES,))
        return "".join(_gbnf_char(lo) if lo == hi else f"{_gbnf_char(lo)}-{_gbnf_char(hi)}" for lo, hi in rs)
    positive, negative = f"[{items(ranges)}]", f"[^{items(complement(ranges))}]"
    return positive if len(positive) <= len(negative) else negative


def _unicode_escapes(controls: list[int]) -> str:
    """`\\u00XX` for these control characters, hex digits in either case."""
    alternatives = []
    for high in (0, 1):
        lows = [cp & 0xF for cp in controls if cp >> 4 == high]
        if lows:
            digits = "".join(sorted({f"{n:x}" for n in lows} | {f"{n:X}" for n in lows}))
            alternatives.append(f'"{high}" [{digits}]')
    body = alternatives[0] if len(alternatives) == 1 else f"( {' | '.join(alternatives)} )"
    return f'"\\\\u00" {body}'


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]|\{[^}]*\}|[()|?*+]|[^\s()|?*+"\[{]+')


def is_atom(expr: str) -> bool:
    """Whether `expr` is one literal, class, rule name or parenthesized group (a quantifier binds to it)."""
    depth = 0
    tokens = _TOKEN.findall(expr)
    for i, token in enumerate(tokens):
        depth += (token == "(") - (token == ")")
        if depth == 0 and i < len(tokens) - 1:
            return False
    return len(tokens) > 0


_QUANTIFIER = re.compile(r"[?*+]|\{[^}]*\}")


def group(expr: str) -> str:
    if is_atom(expr):
        return expr
    tokens = _TOKEN.findall(expr)
    if len(tokens) >= 2 and _QUANTIFIER.fullmatch(tokens[-1]) and is_atom(expr[:expr.rindex(tokens[-1])].rstrip()):
        # llguidance (MLX, vLLM) flattens `( x+ )?` into `x+?`, which its reader refuses: an empty literal
        # keeps the group a group, and means nothing to either reader
        return f'( {expr} "" )'
    return f"( {expr} )"


def quantified(expr: str, low: int, high: int | None) -> str:
    if low > MAX_COUNT:
        raise Unsupported(f"a repetition of at least {low} (at most {MAX_COUNT} is supported)")
    if high is not None and high > MAX_COUNT:
        high = None  # as for JSON Schema bounds: left unbounded, the grammar stays small
    if high == 0 or expr == '""':
        return '""'
    suffix = {(0, None): "*", (1, None): "+", (0, 1): "?", (1, 1): ""}.get((low, high))
    if suffix is None:
        suffix = f"{{{low},}}" if high is None else f"{{{low}}}" if low == high else f"{{{low},{high}}}"
    return group(expr) + suffix


class TextGrammar:
    """Collects the rules of one text grammar; every name it makes starts with a letter and has no `_`."""

    def __init__(self) -> None:
        self.rules: dict[str, str] = {}
        self._sets: dict[Ranges, str] = {}
        self._size = 0

    def add(self, stem: str, body: str = '""') -> str:
        """A new rule; its name is `stem` plus a number no other rule has."""
        name = f"{stem}{len(self.rules)}"
        self.rules[name] = ""
        self.set(name, body)
        return name

    def set(self, name: str, body: str) -> None:
        self._size += len(name) + len(body) + 6
        if self._size > MAX_BYTES:  # stop early: grammar_problem would refuse it anyway
            raise Unsupported(f"the grammar would be over {MAX_BYTES} bytes")
        self.rules[name] = body

    def text(self, root: str) -> str:
        return "\n".join([f"root ::= {root}", *(f"{n} ::= {b}" for n, b in self.rules.items())]) + "\n"

    def chars(self, ranges: Ranges) -> str:
        """One character of the set, as JSON writes it."""
        if not ranges:
            raise Unsupported("a character class that matches nothing")
        if ranges in self._sets:
            return self._sets[ranges]
        parts = []
        if raw := minus(ranges, _NOT_RAW):
            parts.append(_gbnf_class(raw))
        parts += [gbnf_literal(text) for cp, text in _JSON_ESCAPES.items() if contains(ranges, cp)]
        controls = [cp for cp in range(0x20) if cp not in _JSON_ESCAPES and contains(ranges, cp)]
        if controls:
            parts.append(_unicode_escapes(controls))
        expr = parts[0] if len(parts) == 1 and is_atom(parts[0]) else self.add("c", " | ".join(parts))
        self._sets[ranges] = expr
        return expr

    # -- regular expressions ------------------------------------------------------------------------------
    def regex(self, pattern: str, flags: int = 0, anchors: bool = True) -> str:
        """The expression for `pattern`'s full matches. `^`/`$` (and `\\A`, `\\Z`) are allowed only at its ends,
        where full matching makes them no-ops, and only if `anchors`."""
        try:
            parsed = sre_parse.parse(pattern, flags)
        except re.error as exc:
            raise Unsupported(f"invalid regular expression: {exc}") from exc
        except RecursionError as exc:
            raise Unsupported("the regular expression is nested too deeply") from exc
        edges = (anchors, anchors)
        return self._sequence(list(parsed), parsed.state.flags, edges)

    def _sequence(self, items: list[tuple[Any, Any]], flags: int, edges: tuple[bool, bool]) -> str:
        out: list[str] = []
        literal = ""
        for i, (op, av) in enumerate(items):
            # A control character's `\u00XX` takes hex digits in either case: it is a set, not a literal.
            if op is sre_c.LITERAL and (av >= 0x20 or av in _JSON_ESCAPES) and not (
                    flags & re.IGNORECASE and contains(cased(), av)):
                literal += chr(av)  # consecutive characters make one literal
                continue
            if literal:
                out.append(gbnf_literal(json_text(literal)))
                literal = ""
            if op is sre_c.AT:
                if av in _STARTS and edges[0] and i == 0 or av in _ENDS and edges[1] and i == len(items) - 1:
                    continue
                raise Unsupported("anchors and word boundaries other than `^` and `$` at the pattern's ends")
            out.append(self._item(op, av, flags, (edges[0] and i == 0, edges[1] and i == len(items) - 1)))
        if literal:
            out.append(gbnf_literal(json_text(literal)))
        return " ".join(e for e in out if e != '""') or '""'

    def _item(self, op: Any, av: Any, flags: int, edges: tuple[bool, bool]) -> str:
        if op in _REFUSED:
            raise Unsupported(f"{_REFUSED[op]} cannot be written as a grammar")
        if op is sre_c.LITERAL:
            return self.chars(matched(((av, av),), False, flags))
        if op is sre_c.NOT_LITERAL:
            return self.chars(matched(((av, av),), True, flags))
        if op is sre_c.ANY:
            return self.chars(((0, MAX_CHAR),) if flags & re.DOTALL else complement(((0x0A, 0x0A),)))
        if op is sre_c.IN:
            return self.chars(self._class(av, flags))
        if op is sre_c.BRANCH:
            alternatives = [self._sequence(list(alt), flags, edges) for alt in av[1]]
            return f"( {' | '.join(alternatives)} )"
        if op is sre_c.SUBPATTERN:
            _group, add, remove, sub = av
            return self._sequence(list(sub), (flags | add) & ~remove, edges)
        if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT):  # lazy or greedy: the same full matches
            low, high, sub = av
            inner = self._sequence(list(sub), flags, (False, False))
            return quantified(inner, low, None if high == sre_c.MAXREPEAT else high)
        raise Unsupported(f"{str(op).lower()} is not supported")

    def _class(self, items: list[tuple[Any, Any]], flags: int) -> Ranges:
        negate = bool(items) and items[0][0] is sre_c.NEGATE
        ranges: list[tuple[int, int]] = []
        for op, av in items[1:] if negate else items:
            if op is sre_c.LITERAL:
                ranges.append((av, av))
            elif op is sre_c.RANGE:
                ranges.append(av)
            elif op is sre_c.CATEGORY and av in _CATEGORIES:
                letter, negated = _CATEGORIES[av]
                found = category(letter, bool(flags & re.ASCII))
                ranges += complement(found) if negated else found
            else:
                raise Unsupported(f"{str(av or op).lower()} in a character class is not supported")
        return matched(normal(ranges), negate, flags)


def regex_gbnf(pattern: str, where: str) -> str:
    """GBNF whose `root` is exactly the JSON-string text of the strings `re.fullmatch(pattern, ·)` accepts."""
    grammar = TextGrammar()
    try:
        root = grammar.regex(pattern)
    except Unsupported as exc:
        raise InvalidRequestError(f"{where}: {exc}") from exc
    return grammar.text(root)
