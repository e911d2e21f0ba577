"""The parsers a model's chat template implies: only the default, which a name given by the user beats
(registry.py)."""

from __future__ import annotations

from ..core.thinking import template_reasons


def infer_tool_parser(template_source: str) -> str:
    """The tool-call format the template's markup shows, by its registry name."""
    if "[TOOL_CALLS]" in template_source:
        return "mistral"
    # Before hermes: Qwen3-Coder templates contain <tool_call> too (and Functionary's <function= has no <parameter=).
    if "<function=" in template_source and "<parameter=" in template_source:
        return "qwen3_coder"
    if "<tool_call>" in template_source:
        return "hermes"
    if "<|python_tag|>" in template_source or "ipython" in template_source:
        return "llama3_json"
    return "json"


def infer_reasoning_parser(template_source: str) -> str:
    """`think` for a template that writes or switches `<think>` blocks, else `none`."""
    return "think" if template_reasons(template_source) else "none"
