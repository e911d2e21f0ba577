"""Responses tools → the neutral tool specs, and `tool_choice` → the neutral choice.

`function` tools are offered as they are; a `namespace`'s tools are offered under their own names and their
calls report the namespace; `custom` tools take free text, constrained by their Lark or regex grammar; hosted
tools (web search, file search, ...) are accepted and not offered: parley cannot run them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...chat.validate import custom_tool, function_tool, unique_names
from ...core.messages import ToolSpec
from ...core.tools import ToolChoice
from ...errors import InvalidRequestError

HOSTED_TOOLS = ("web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11",
                "file_search", "code_interpreter", "image_generation", "computer_use_preview", "computer_use",
                "mcp", "local_shell", "shell", "apply_patch", "tool_search")


@dataclass(frozen=True)
class ToolSet:
    specs: list[ToolSpec] = field(default_factory=list)
    namespaces: dict[str, str] = field(default_factory=dict)  # tool name → its namespace

    def is_custom(self, name: str) -> bool:
        return any(t.custom and t.name == name for t in self.specs)


def _custom(tool: dict[str, Any], where: str) -> ToolSpec:
    fmt = tool.get("format") or {"type": "text"}
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "grammar"):
        raise InvalidRequestError(f"{where}.format.type: Input should be 'text' or 'grammar'")
    grammar = None
    if fmt["type"] == "grammar":
        syntax, definition = fmt.get("syntax"), fmt.get("definition")
        if syntax not in ("lark", "regex"):
            raise InvalidRequestError(f"{where}.format.syntax: Input should be 'lark' or 'regex'")
        if not isinstance(definition, str) or not definition:
            raise InvalidRequestError(f"{where}.format.definition: Field required")
        from ...grammar.text_grammar import text_grammar_gbnf  # Lark is loaded only for a grammar tool

        grammar = text_grammar_gbnf(syntax, definition, f"{where}.format.definition")
    return custom_tool(_name(tool, where), tool.get("description"), grammar, where)


def _name(tool: dict[str, Any], where: str) -> str:
    name = tool.get("name")
    if not isinstance(name, str):
        raise InvalidRequestError(f"{where}.name: Field required")
    return name


def _function(tool: dict[str, Any], where: str) -> ToolSpec:
    schema = tool.get("parameters") or {"type": "object", "properties": {}}
    if not isinstance(schema, dict):
        raise InvalidRequestError(f"{where}.parameters: Input should be an object")
    return function_tool(_name(tool, where), tool.get("description"), schema, tool.get("strict") is True, where,
                         "parameters")


def _spec(tool: dict[str, Any], where: str) -> ToolSpec:
    if tool.get("type") == "custom":
        return _custom(tool, where)
    if tool.get("type") == "function":
        return _function(tool, where)
    raise InvalidRequestError(f"{where}.type: Input should be 'function' or 'custom'")


def to_tools(tools: list[dict[str, Any]] | None) -> ToolSet:
    specs: list[ToolSpec] = []
    namespaces: dict[str, str] = {}
    for i, tool in enumerate(tools or []):
        where, kind = f"tools.{i}", tool.get("type")
        if kind in HOSTED_TOOLS:
            continue
        if kind == "namespace":
            namespace = _name(tool, where)
            for j, inner in enumerate(tool.get("tools") or []):
                spec = _spec(inner, f"{where}.tools.{j}")
                specs.append(spec)
                namespaces[spec.name] = namespace
        else:
            specs.append(_spec(tool, where))
    unique_names(specs)
    return ToolSet(specs, namespaces)


def _named(name: Any, tools: ToolSet, kind: str) -> ToolChoice:
    if not any(t.name == name for t in tools.specs):
        raise InvalidRequestError(f"tool_choice.name: tool '{name}' is not in tools")
    if tools.is_custom(name) != (kind == "custom"):
        raise InvalidRequestError(f"tool_choice.type: '{name}' is not a {kind} tool")
    return ToolChoice("tool", name)


def to_tool_choice(choice: str | dict[str, Any] | None, tools: ToolSet, parallel: bool
                   ) -> tuple[ToolChoice, ToolSet]:
    """The choice, and the tools it leaves callable (`allowed_tools` narrows them)."""
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = {t.get("name") for t in choice.get("tools") or [] if isinstance(t, dict)}
        tools = ToolSet([t for t in tools.specs if t.name in allowed], tools.namespaces)
        choice = choice.get("mode", "auto")
    if choice is None or choice == "auto":
        return ToolChoice("auto", None, parallel), tools
    if choice == "none":
        return ToolChoice("none", None, parallel), tools
    if not tools.specs:
        raise InvalidRequestError("tool_choice: requires tools")
    if choice == "required":
        return ToolChoice("any", None, parallel), tools
    if isinstance(choice, dict) and choice.get("type") in ("function", "custom"):
        named = _named(choice.get("name"), tools, choice["type"])
        return ToolChoice("tool", named.name, parallel), tools
    raise InvalidRequestError("tool_choice: Input should be 'auto', 'none', 'required', a function or custom tool, "
                              "or allowed_tools")
