"""Lark grammars → GBNF that writes the accepted text as the inside of a JSON string.

Lark itself reads the grammar — imports, templates, literals (`"..."i` too), `"a".."z"` ranges, terminals
built from other terminals, `~ n..m` — up to the EBNF rule trees and one regex per terminal, the form its
parsers are built from (Grammar.compile's first steps, repeated here). Each rule becomes a GBNF rule, each
terminal's regex goes through regex_gbnf. Lark's own parser is not built: its Earley parser refuses
zero-width terminals such as Codex's `/(.*)/`, which OpenAI accepts. The language is the grammar's, each
terminal standing for every string its regex fully matches (Lark's lexer takes one match per position,
which can accept less). Priorities, aliases and `?`/`_`/`!` rule marks shape Lark's trees, not the language.
"""

from __future__ import annotations

import re
from typing import Any

from lark import Tree
from lark.grammar import NonTerminal, Terminal
from lark.lexer import Pattern, TerminalDef
from lark.load_grammar import (
    ApplyTemplates,
    PrepareAnonTerminals,
    PrepareLiterals,
    TerminalTreeToPattern,
    ValidateSymbols,
    load_grammar,
    nr_deepcopy_tree,
)

from ..errors import InvalidRequestError
from .regex_gbnf import TextGrammar, Unsupported, group, is_atom, quantified

_STDLIB = ("common", "lark", "python", "unicode")  # the grammars Lark ships; nothing is read from disk
_IMPORT = re.compile(r"^[ \t]*%import[ \t]+(\.?)[ \t]*(\w*)", re.MULTILINE)
# common.ESCAPED_STRING ends its lazy `.*?` with a lookbehind; in a token it means what this says.
_ESCAPED_STRING = ('".*?(?<!\\\\)(\\\\\\\\)*?"', '"(?:[^"\\\\\\n]|\\\\.)*"')


def lark_gbnf(definition: str, where: str) -> str:
    """GBNF whose `root` is the JSON-string text of exactly the strings the Lark grammar's `start` accepts."""
    for dot, module in _IMPORT.findall(definition):
        if dot or module not in _STDLIB:
            raise InvalidRequestError(f"{where}: a Lark grammar can import only from {', '.join(_STDLIB)}, "
                                      f"not {dot}{module!r}")
    try:
        terminals, rules, ignore = _lark_parts(definition)
    except RecursionError as exc:
        raise InvalidRequestError(f"{where}: the Lark grammar is nested too deeply") from exc
    except Exception as exc:  # GrammarError mostly, but Lark asserts on some malformed input
        raise InvalidRequestError(f"{where}: invalid Lark grammar: {exc}") from exc
    if "start" not in rules:
        raise InvalidRequestError(f"{where}: a Lark grammar needs a `start` rule")
    try:
        return _Converter(terminals, rules).gbnf(ignore)
    except Unsupported as exc:
        raise InvalidRequestError(f"{where}: {exc}") from exc
    except RecursionError as exc:
        raise InvalidRequestError(f"{where}: the Lark grammar is nested too deeply") from exc


def _lark_parts(definition: str) -> tuple[dict[str, Pattern], dict[str, Tree], list[str]]:
    """Terminal patterns (declared-only ones left out), rule trees with literals as terminals and templates
    applied, and the %ignore'd terminal names."""
    grammar, _files = load_grammar(definition, "<custom tool>", [], False)
    to_pattern = PrepareLiterals() * TerminalTreeToPattern()
    terminals = [TerminalDef(name, to_pattern.transform(nr_deepcopy_tree(tree)), priority)
                 for name, (tree, priority) in grammar.term_defs if tree is not None]
    rule_defs = [(n, p, nr_deepcopy_tree(t), o) for n, p, t, o in grammar.rule_defs]
    prepare = PrepareLiterals() * ValidateSymbols() * PrepareAnonTerminals(terminals)  # adds to `terminals`
    prepare *= ApplyTemplates(rule_defs)  # adds each template use to `rule_defs`
    rules = {}
    for name, params, tree, _options in rule_defs:  # grows while iterating, as in Grammar.compile
        if not params:
            rules[name] = prepare.transform(tree)
    return {t.name: t.pattern for t in terminals}, rules, list(grammar.ignore)


def _stem(name: str) -> str:
    return (re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-") or "r") + "-"


class _Converter:
    def __init__(self, terminals: dict[str, Pattern], rules: dict[str, Tree]) -> None:
        self.grammar = TextGrammar()
        self.terminals = terminals
        self.rules = rules
        self.names: dict[str, str] = {}  # Lark symbol → GBNF rule
        self.pending: list[str] = []  # rules named but not yet written
        self.ignored = ""  # the rule for %ignore'd text, written after every token

    def gbnf(self, ignore: list[str]) -> str:
        if ignore:
            for name in ignore:
                if self.terminals.get(name) is not None and self.terminals[name].min_width == 0:
                    raise Unsupported(f"%ignore {name}: an ignored terminal must not match the empty string")
            alternatives = " | ".join(self._terminal(name) for name in dict.fromkeys(ignore))
            self.ignored = self.grammar.add("ignored-", f"( {alternatives} )*")
        start = self._rule("start")
        while self.pending:
            name = self.pending.pop()
            self.grammar.set(self.names[name], self._rule_body(name, self.rules[name]))
        return self.grammar.text(f"{self.ignored} {start}" if self.ignored else start)

    def _rule(self, name: str) -> str:
        if name not in self.names:
            if name not in self.rules:
                raise Unsupported(f"rule {name} is used but not defined")
            self.names[name] = self.grammar.add(_stem(name))
            self.pending.append(name)
        return self.names[name]

    def _terminal(self, name: str) -> str:
        if name not in self.names:
            pattern = self.terminals.get(name)
            if pattern is None:
                raise Unsupported(f"terminal {name} is declared but not defined")
            regex = pattern.to_regexp().replace(*_ESCAPED_STRING)
            try:
                expr = self.grammar.regex(regex, anchors=False)
            except Unsupported as exc:
                raise Unsupported(f"terminal {name} ({regex}): {exc}") from exc
            # A literal or a class stands for itself; anything longer gets a rule of its own.
            self.names[name] = expr if is_atom(expr) else self.grammar.add(_stem(name), expr)
        return self.names[name]

    def _rule_body(self, name: str, tree: Tree) -> str:
        """The rule's alternatives. Direct left recursion (`sum: sum "+" n | n`), which llama.cpp refuses,
        is written as repetition (`n ( "+" n )*`); indirect left recursion is left to fail its compile."""
        base, tails = [], []
        for alternative in tree.children:
            expansion = alternative.children[0] if alternative.data == "alias" else alternative
            items = expansion.children
            if items and items[0] == NonTerminal(name):
                tails.append(self._sequence(items[1:]))
            else:
                base.append(self._sequence(items))
        if not base:
            raise Unsupported(f"rule {name} has no alternative that does not start with itself")
        tails = [t for t in tails if t != '""']  # `a: a | b` is `a: b`
        if not tails:
            return " | ".join(base)
        return f"{group(' | '.join(base))} ( {' | '.join(tails)} )*"

    def _sequence(self, items: list[Any]) -> str:
        return " ".join(e for e in map(self._expr, items) if e != '""') or '""'

    def _expr(self, node: Any) -> str:
        if isinstance(node, Terminal):
            return f"{self._terminal(node.name)} {self.ignored}".rstrip()
        if isinstance(node, NonTerminal):
            return self._rule(node.name)
        if node.data == "expansions":
            alternatives = [self._expr(child) for child in node.children]
            return alternatives[0] if len(alternatives) == 1 else f"( {' | '.join(alternatives)} )"
        if node.data == "alias":
            return self._expr(node.children[0])
        if node.data == "expansion":
            return self._sequence(node.children)
        if node.data == "maybe":
            return quantified(self._expr(node.children[0]), 0, 1)
        if node.data == "expr":
            item, op, *counts = node.children
            inner = self._expr(item)
            if op == "~":
                low, high = int(counts[0]), int(counts[-1])
                if high < low:
                    raise Unsupported(f"bad repetition range {low}..{high}")
                return quantified(inner, low, high)
            return quantified(inner, *{"?": (0, 1), "*": (0, None), "+": (1, None)}[op])
        raise Unsupported(f"{node.data} is not supported")
