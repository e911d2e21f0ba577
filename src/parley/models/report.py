"""`parley models`: the servable models as a table, corrupt files flagged, aliases last."""

from __future__ import annotations

from ..core.template import template_supports_tools
from ..engines.formats.facts import ModelFacts
from ..parsers.registry import reasoning_parser_for
from .discovery import ModelEntry
from .packaged import PACKAGED_MODELS
from .registry import ModelRegistry

HEADER = ("ID", "ENGINE", "FILE", "SIZE", "ARCH", "CONTEXT", "QUANT", "TOOLS", "REASONING", "STATUS")


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return "?"


def _file(entry: ModelEntry) -> str:
    packaged = next((m for m in PACKAGED_MODELS if m.id == entry.id), None)
    if entry.source == "embedded" and packaged and len(packaged.parts) > 1:
        return f"{entry.path} (+{len(packaged.parts) - 1} parts)"
    return str(entry.path)


def _facts(info: ModelFacts | str, reasoning_parser: str | None) -> tuple[str, ...]:
    """Tools and reasoning as a request would find them: the template's, and the reasoning parser chosen."""
    if isinstance(info, str):
        return ("-",) * 5
    yes_no = {True: "yes", False: "no"}
    template = info.chat_template or ""
    tools = bool(info.chat_template) and template_supports_tools(template)
    reasons = reasoning_parser_for(template, reasoning_parser).reasons
    return (info.architecture, str(info.context_length or "?"), info.quantization, yes_no[tools], yes_no[reasons])


def models_table(registry: ModelRegistry, default_model: str) -> str:
    rows: list[tuple[str, ...]] = [HEADER]
    known: dict[str, tuple[str, ...]] = {}
    for entry, info in registry.inventory():
        facts = _facts(info, registry.parser_names(entry)[1])
        try:
            kind = registry.engine_of(entry)
            engine, runnable = kind.name, kind.unavailable() is None
        except ValueError:
            engine, runnable = "?", False
        if isinstance(info, str):
            status = f"corrupt: {info}" if runnable else f"unavailable: {info}"
        else:
            status = "default" if entry.id == default_model else "ok"
            known[entry.id] = facts
        rows.append((entry.id, engine, _file(entry), _size(entry.size), *facts, status))
    for name, target in registry.config.aliases.items():
        kind = "alias" if name in registry.config.listable_aliases() else "alias pattern"
        status = kind if target in known else f"{kind} (target not on disk)"
        rows.append((name, "", f"→ {target}", "", *known.get(target, ("-",) * 5), status))
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)
