"""Per request: which tools the model may call, how its output is parsed, what grammar constrains it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..core.messages import ToolSpec
from ..core.params import GrammarConstraint
from ..core.tools import ToolChoice
from ..grammar.tool_grammar import answer_or_calls_grammar, forced_grammar, lazy_grammar
from ..parsers.base import OutputParser
from ..parsers.registry import tool_parser_for
from ..parsers.tool_calls import ToolFormat


def _held(tool: ToolSpec) -> bool:
    """A tool whose input is grammar-enforced even with `tool_grammar` off: strict, or a grammar's text."""
    return tool.strict or tool.input_grammar is not None


def _any_object(tool: ToolSpec) -> ToolSpec:
    return tool if tool.custom else dataclasses.replace(tool, input_schema={"type": "object"})


@dataclass(frozen=True)
class ToolPlan:
    tools: list[ToolSpec]
    choice: ToolChoice
    template_source: str
    grammar_in_auto: bool = True
    tool_parser: str | None = None  # a registry name; None: the one the template implies

    @property
    def format(self) -> ToolFormat:
        """How calls are written: what the parser reads and what the grammars force."""
        return tool_parser_for(self.template_source, self.tool_parser)

    @property
    def active(self) -> bool:
        return bool(self.tools) and self.choice.kind != "none"

    def _callable(self) -> list[ToolSpec]:
        if self.choice.kind == "tool":
            return [t for t in self.tools if t.name == self.choice.name]
        return self.tools

    def _constrained(self) -> list[ToolSpec] | None:
        """The tools a grammar holds under `auto`: all, or with `tool_grammar` off only the strict ones
        (the others then take any object); None when nothing is to be held."""
        if self.grammar_in_auto:
            return self.tools
        if not any(_held(t) for t in self.tools):
            return None
        return [t if _held(t) else _any_object(t) for t in self.tools]

    def grammar(self, answer: str | None = None) -> GrammarConstraint | None:
        """`answer` (structured output): the GBNF a text answer must match, beside any calls."""
        fmt = self.format
        if self.active and self.choice.kind in ("any", "tool"):
            return forced_grammar(self._callable(), fmt.native, self.choice.parallel)
        if answer is not None:
            if not self.active:
                return GrammarConstraint(answer)
            tools = self._constrained() or [_any_object(t) for t in self.tools]
            return answer_or_calls_grammar(tools, fmt.syntaxes, self.choice.parallel, answer)
        constrained = self._constrained() if self.active else None
        return lazy_grammar(constrained, fmt.syntaxes, self.choice.parallel) if constrained else None

    def parser(self) -> OutputParser | None:
        if not self.active:
            return None
        fmt = self.format
        return fmt.make_parser({t.name: t.input_schema for t in self._callable()})
