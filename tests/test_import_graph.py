"""No import circles among sweepax's modules: each module reads as a floor above the ones it imports.

The graph is read from the source (ast), not by importing: an edge `a -> b` for every import in
module `a` of module `b` (a name imported from a package is an edge to the package, a submodule
imported from it an edge to the submodule). Module-level imports, those under `if TYPE_CHECKING:`
included, make one graph; adding the imports inside functions (deferred imports, which a circle
often hides behind) makes a second. Neither may hold a circle.

The benchmarks' scripts, which import each other by file name, are held to the same rule.
Run as a script to print the circles and every edge of each module in them:

    python tests/test_import_graph.py
"""

from __future__ import annotations

import ast
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    deferred: bool  # inside a function: runs when it is called, not when the module is imported


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path = ROOT, package: str = "sweeps") -> dict[str, Path]:
    return {module_name(path, root): path for path in sorted((root / package).rglob("*.py"))}


def import_edges(known: dict[str, Path]) -> list[Edge]:
    """Every import of a module in `known` by a module in `known` (relative imports resolved)."""
    edges = []
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]

        def visit(node: ast.AST, deferred: bool, name=name, package=package) -> None:
            for child in ast.iter_child_nodes(node):
                inside = deferred or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
                targets = []
                if isinstance(child, ast.Import):
                    targets = [alias.name for alias in child.names]
                elif isinstance(child, ast.ImportFrom):
                    base = package.split(".")[: len(package.split(".")) - child.level + 1] if child.level else []
                    module = ".".join([*base, *([child.module] if child.module else [])])
                    targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in child.names]
                for target in dict.fromkeys(targets):
                    if target in known and target != name:
                        edges.append(Edge(name, target, child.lineno, inside))
                visit(child, inside)

        visit(ast.parse(path.read_text()), False)
    return edges


def circles(edges: list[Edge]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted, in sorted order."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(found)


def describe(found: list[list[str]], edges: list[Edge]) -> str:
    """Each circle and the imports that close it: 'a:12 -> b (in a function)'."""
    lines = []
    for members in found:
        lines.append(" <-> ".join(members))
        for e in edges:
            if e.source in members and e.target in members:
                where = modules()[e.source].relative_to(ROOT)
                lines.append(f"    {where}:{e.line} imports {e.target}" + (" (in a function)" * e.deferred))
    return "\n".join(lines)


def test_no_import_circles_at_module_level():
    edges = [e for e in import_edges(modules()) if not e.deferred]
    found = circles(edges)
    assert not found, "import circles among module-level imports:\n" + describe(found, edges)


def test_no_import_circles_through_deferred_imports():
    edges = import_edges(modules())
    found = circles(edges)
    assert not found, "import circles, imports inside functions counted:\n" + describe(found, edges)


def test_no_import_circles_among_the_benchmarks():
    """The benchmarks are scripts that import each other by file name (benchmarks/ is on the path)."""
    edges = import_edges(modules(ROOT / "benchmarks", ""))
    found = circles(edges)
    assert not found, "import circles among benchmarks/, imports inside functions counted:\n" + "\n".join(
        f"{' <-> '.join(members)}: "
        + ", ".join(f"{e.source}:{e.line}" for e in edges if {e.source, e.target} <= set(members))
        for members in found
    )


def test_a_circle_is_found_whatever_level_closes_it(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from ..a import x\n")
    (package / "c.py").write_text("import pkg.a\n")
    edges = import_edges(modules(tmp_path, "pkg"))
    assert {(e.source, e.target, e.deferred) for e in edges} == {
        ("pkg.a", "pkg.sub.b", False),
        ("pkg.sub.b", "pkg.a", True),
        ("pkg.c", "pkg.a", False),
    }
    assert circles([e for e in edges if not e.deferred]) == []
    assert circles(edges) == [["pkg.a", "pkg.sub.b"]]


if __name__ == "__main__":
    every = import_edges(modules())
    for title, edges in (("module level", [e for e in every if not e.deferred]), ("all imports", every)):
        found = circles(edges)
        print(f"{title}: {len(found)} circle(s)" + (f"\n{describe(found, edges)}" if found else ""))
    sys.exit(0)
