#!/usr/bin/env python3
"""The import graph of src/parley, file by file: no cycle, and no arrow from a lower layer to a higher one.

Every `import` counts, wherever it is written (module top, inside a function, under `if TYPE_CHECKING:`):
a lazy import is still a dependency a reader has to follow. Run from the repository root (CI does):

    python scripts/import_graph.py            # exit 1 and a report when the graph breaks a rule
    python scripts/import_graph.py --edges    # also print every arrow, for reading
    python scripts/import_graph.py --root DIR # another tree's src/ (the checker's own test)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "parley"

# Highest first. A module belongs to the layer of its longest matching prefix; it may import its own layer
# and any layer below it. A module matching no prefix is an error: a new top-level module must be placed.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("entry", ("parley.cli", "parley.app", "parley.server", "parley.banner", "parley.commands")),
    ("api", ("parley.api",)),
    ("services", ("parley.services",)),
    ("chat", ("parley.chat",)),
    ("models", ("parley.models", "parley.settings")),
    ("engines", ("parley.engines",)),
    ("parsers/grammar", ("parley.parsers", "parley.grammar")),
    ("core", ("parley.core", "parley.errors", "parley")),
]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted((root / PACKAGE).rglob("*.py")) if "__pycache__" not in p.parts}


def imports(name: str, path: Path, known: set[str]) -> dict[str, int]:
    """The parley modules `name` imports, each with the line of its first import."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        while target and target not in known:  # `from pkg.mod import Class`: the arrow goes to pkg.mod
            target = target.rpartition(".")[0]
        if target and target != name:
            found.setdefault(target, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:  # `from . import x`, `from .pkg import module`: the module itself
                sub = f"{source}.{alias.name}"
                add(sub if sub in known else source, node.lineno)
    return found


def layer_of(name: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer index)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            exact_only = prefix == PACKAGE  # the root package: its own __init__ only
            if name == prefix or (not exact_only and name.startswith(prefix + ".")):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), index)
    return None if best is None else best[1]


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one file (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def rel(name: str, files: dict[str, Path], root: Path) -> str:
    return str(files[name].relative_to(root.parent))


def main(argv: list[str]) -> int:
    root = Path(argv[argv.index("--root") + 1]).resolve() if "--root" in argv else ROOT
    files = modules(root)
    graph = {name: imports(name, path, set(files)) for name, path in files.items()}
    problems: list[str] = []
    for name in files:
        if layer_of(name) is None:
            problems.append(f"{rel(name, files, root)}: in no layer (add its prefix to LAYERS)")
    for component in cycles(graph):
        arrows = [f"{rel(a, files, root)}:{graph[a][b]} -> {b}" for a in component for b in graph[a] if b in component]
        problems.append("cycle: " + " <-> ".join(component) + "\n    " + "\n    ".join(arrows))
    for name, targets in sorted(graph.items()):
        mine = layer_of(name)
        for target, line in sorted(targets.items()):
            theirs = layer_of(target)
            if mine is not None and theirs is not None and theirs < mine:
                problems.append(f"{rel(name, files, root)}:{line}: {LAYERS[mine][0]} imports {LAYERS[theirs][0]} "
                                f"({target})")
    if "--edges" in argv:
        for name, targets in sorted(graph.items()):
            for target, line in sorted(targets.items()):
                print(f"{rel(name, files, root)}:{line} -> {target}")
    edges = sum(len(t) for t in graph.values())
    print(f"{len(files)} files, {edges} imports between them, {len(problems)} problems")
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
