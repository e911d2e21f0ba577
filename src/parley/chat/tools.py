"""Per request: which tools the model may call, how its output is parsed, what grammar constrains it."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.messages import ToolSpec
from ..core.params import GrammarConstraint
from ..core.tools import ToolChoice
from ..grammar.tool_grammar import forced_grammar, lazy_grammar
from ..parsers.infer import OutputParser, infer_tool_format


@dataclass(frozen=True)
class ToolPlan:
    tools: list[ToolSpec]
    choice: ToolChoice
    template_source: str
    grammar_in_auto: bool = True

    @property
    def active(self) -> bool:
        return bool(self.tools) and self.choice.kind != "none"

    def _callable(self) -> list[ToolSpec]:
        if self.choice.kind == "tool":
            return [t for t in self.tools if t.name == self.choice.name]
        return self.tools

    def grammar(self) -> GrammarConstraint | None:
        if not self.active:
            return None
        fmt = infer_tool_format(self.template_source)
        if self.choice.kind in ("any", "tool"):
            return forced_grammar(self._callable(), fmt.native, self.choice.parallel)
        return lazy_grammar(self.tools, fmt.syntaxes, self.choice.parallel) if self.grammar_in_auto else None

    def parser(self) -> OutputParser | None:
        if not self.active:
            return None
        fmt = infer_tool_format(self.template_source)
        return fmt.make_parser({t.name: t.input_schema for t in self._callable()})
