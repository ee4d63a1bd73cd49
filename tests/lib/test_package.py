"""The package's shape: no import circle between its modules.

A module that imports one that imports it back (even inside a function, or under
``TYPE_CHECKING``) makes the import order matter and hides which module owns what; issue 22 asks
for none. The package's ``__init__`` is left out: every module may import ``safeclients`` for its
public names, and it imports them all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import safeclients

PACKAGE = Path(safeclients.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    files = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("safeclients"):
                    found.add(node.module)
                    found.update(
                        f"{node.module}.{alias.name}"
                        for alias in node.names
                        if f"{node.module}.{alias.name}" in files
                    )
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("safeclients."))
        found.discard(name)
        found.discard("safeclients")
        graph[name] = found & set(files)
    return graph


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = _imports()
    cycles = []
    for start in graph:
        if start == "safeclients":
            continue
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    cycles.append(" -> ".join([*path, nxt]))
                elif nxt not in seen and nxt != "safeclients":
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert cycles == [], "import circles:\n" + "\n".join(sorted(set(cycles)))


def test_the_check_sees_a_circle() -> None:
    """The check above can fail: the graph it reads has edges (a sanity check of the reader)."""
    graph = _imports()
    assert "safeclients._uses" in graph["safeclients._escape"]
    assert "safeclients._escape" in graph["safeclients._use"]
