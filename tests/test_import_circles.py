"""The package's imports, read from its source with `ast`: no module may reach itself again.

Every import counts, also one inside a function (a lazy import only delays the circle, it does
not open it) or under ``TYPE_CHECKING``: ``from mlflow_governance.x import name`` is an arrow to
the submodule ``x.name`` when there is one, else to ``x``; the package a module sits in is not
an arrow of its own (Python imports it first, whoever imports what). A circle is a strongly
connected part of that graph; the message names its modules and the arrows that tie them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "mlflow_governance"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE


def module_files(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``root`` (the package ``package``)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = (package, *path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def import_graph(root: Path, package: str = PACKAGE) -> dict[str, dict[str, int]]:
    """module -> {module it imports: the first line that does}, within ``package`` only."""
    modules = module_files(root, package)
    graph: dict[str, dict[str, int]] = {name: {} for name in modules}
    for name, path in modules.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules and target.startswith(package + "."):
                    target = target.rpartition(".")[0]  # `import pkg.mod.attr` style: the module
                if target in modules and target != name:
                    graph[name].setdefault(target, node.lineno)
    return graph


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected parts of more than one module (Tarjan), each sorted, in name order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:  # iterative: no recursion limit on a deep chain of imports
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                part = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    part.append(member)
                    if member == node:
                        break
                if len(part) > 1:
                    found.append(sorted(part))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return sorted(found)


def describe(part: list[str], graph: dict[str, dict[str, int]], root: Path) -> str:
    members = set(part)
    arrows = [f"  {a} -> {b} (line {graph[a][b]})" for a in part for b in sorted(graph[a]) if b in members]
    return f"circle of {len(part)} modules:\n" + "\n".join(arrows)


def test_the_package_has_no_import_circle():
    graph = import_graph(ROOT)
    assert len(graph) > 50 and graph[f"{PACKAGE}.cli.main"], "the package was not read"
    found = circles(graph)
    assert not found, "\n".join(describe(part, graph, ROOT) for part in found)


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize("files, expected", [
    # the delivery <-> notifications shape: one side imports lazily, inside a function
    ({"a.py": "from pkg.b import B\n", "b.py": "def f():\n    from pkg import a\n"}, [["pkg.a", "pkg.b"]]),
    # a package's modules through their package, relative imports, three long
    ({"s/__init__.py": "", "s/x.py": "from . import y\n", "s/y.py": "from .z import Z\n",
      "s/z.py": "import pkg.s.x\n"}, [["pkg.s.x", "pkg.s.y", "pkg.s.z"]]),
    # an attribute imported from a module is an arrow to that module
    ({"m.py": "from pkg.n import thing\n", "n.py": "import pkg.m.attr\n"}, [["pkg.m", "pkg.n"]]),
    # a chain is not a circle; nor is importing a sibling through the package that holds both
    ({"a.py": "from pkg import b\n", "b.py": "from pkg import c\n", "c.py": "import os\n"}, []),
    ({"p/__init__.py": "from pkg.p.q import Q\n", "p/q.py": "from pkg.p.r import R\n", "p/r.py": ""}, []),
])
def test_the_reading_finds_circles_and_only_circles(tmp_path, files, expected):
    assert circles(import_graph(_tree(tmp_path, files), "pkg")) == expected
