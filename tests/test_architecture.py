"""The package's architecture, read from its source with `ast`: no module may reach itself again
(no import circle), and no room imports a room of a higher layer (`mlflow_governance.LAYERS`).

Every import counts, also one inside a function (a lazy import only delays the circle, it does
not open it) or under ``TYPE_CHECKING``: ``from mlflow_governance.x import name`` is an arrow to
the submodule ``x.name`` when there is one, else to ``x``; the package a module sits in is not
an arrow of its own (Python imports it first, whoever imports what). A circle is a strongly
connected part of that graph; the message names its modules and the arrows that tie them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import mlflow_governance

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


def room_of(module: str, package: str = PACKAGE) -> str | None:
    """The room (first package below ``package``) a module sits in; None for the package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == package else None


def upward_imports(graph: dict[str, dict[str, int]], layers: tuple[tuple[str, ...], ...],
                   package: str = PACKAGE) -> list[str]:
    """Every arrow from one room to another of the same or a higher layer, and every module in a
    room no layer names; a room may import its own modules and those of lower layers only."""
    layer = {room: depth for depth, rooms in enumerate(layers) for room in rooms}
    found = []
    for module in sorted(graph):
        room = room_of(module, package)
        if room is None:
            continue
        if room not in layer:
            found.append(f"{module}: room {room!r} is in no layer")
            continue
        for target, line in sorted(graph[module].items()):
            other = room_of(target, package)
            if other is None or other == room or other not in layer:
                continue
            if layer[other] >= layer[room]:
                found.append(f"{module} (layer {layer[room]}, {room}) imports {target} (layer {layer[other]}, "
                             f"{other}) at line {line}")
    return found


def describe(part: list[str], graph: dict[str, dict[str, int]], root: Path) -> str:
    members = set(part)
    arrows = [f"  {a} -> {b} (line {graph[a][b]})" for a in part for b in sorted(graph[a]) if b in members]
    return f"circle of {len(part)} modules:\n" + "\n".join(arrows)


def test_the_package_has_no_import_circle():
    graph = import_graph(ROOT)
    assert len(graph) > 50 and graph[f"{PACKAGE}.cli.main"], "the package was not read"
    found = circles(graph)
    assert not found, "\n".join(describe(part, graph, ROOT) for part in found)


def test_no_room_imports_a_room_above_it():
    graph = import_graph(ROOT)
    rooms = {room_of(m) for m in graph} - {None}
    declared = {room for rooms_ in mlflow_governance.LAYERS for room in rooms_}
    assert rooms == declared, f"rooms without a layer: {sorted(rooms - declared)}; layers without a room: " \
                              f"{sorted(declared - rooms)}"
    found = upward_imports(graph, mlflow_governance.LAYERS)
    assert not found, "imports against the layer order:\n" + "\n".join(found)


def test_the_core_imports_nothing_else_of_the_package():
    graph = import_graph(ROOT)
    core = {m: sorted(t for t in graph[m] if room_of(t) != "core") for m in graph if room_of(m) == "core"}
    assert len(core) > 15 and not any(core.values()), {m: t for m, t in core.items() if t}


def test_store_does_not_import_the_engine():
    """The governed store decides with `workflow` and delegates governance operations to the
    governor the composition root (`core.plugin`) hands it: importing it must not load the engine."""
    code = (
        "import sys, mlflow_governance.core.store\n"
        "print(sorted(m for m in sys.modules if m.startswith('mlflow_governance.core.engine')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"mlflow_governance.core.store imports {out}"


def test_entry_points_build_the_store_with_the_engine(tmp_path):
    targets = {e.name: e.value for e in entry_points(group="mlflow.model_registry_store")}
    assert targets == {
        scheme: "mlflow_governance.core.plugin:governed_store_builder"
        for scheme in ("governed-sqlite", "governed-postgresql", "governed-mysql")
    }
    from mlflow_governance.core import engine
    from mlflow_governance.core.plugin import governed_store_builder

    store = governed_store_builder(f"governed-sqlite:///{tmp_path / 'r.db'}")
    assert store.governor is engine


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


LAYERS = (("core",), ("safe", "airline"), ("client",), ("sidecar",))


@pytest.mark.parametrize("files, expected", [
    # a core module reaching up to a feature, lazily: the arrow is named with its line
    ({"core/__init__.py": "", "core/engine.py": "def f():\n    from pkg.sidecar.app import A\n",
      "sidecar/__init__.py": "", "sidecar/app.py": "from pkg.core import engine\n"},
     ["pkg.core.engine (layer 0, core) imports pkg.sidecar.app (layer 3, sidecar) at line 2"]),
    # rooms of one layer do not import each other; a room outside the layers is named
    ({"safe/__init__.py": "", "safe/urls.py": "import pkg.airline.flights\n", "airline/__init__.py": "",
      "airline/flights.py": "", "extra/__init__.py": "", "extra/x.py": "from pkg.core import y\n",
      "core/__init__.py": "", "core/y.py": ""},
     ["pkg.extra: room 'extra' is in no layer", "pkg.extra.x: room 'extra' is in no layer",
      "pkg.safe.urls (layer 1, safe) imports pkg.airline.flights (layer 1, airline) at line 1"]),
    # downward and within a room is the rule kept
    ({"client/__init__.py": "", "client/rest.py": "from pkg.core.y import Y\nfrom pkg.client import local\n",
      "client/local.py": "", "core/__init__.py": "", "core/y.py": ""}, []),
])
def test_the_reading_finds_imports_against_the_layers(tmp_path, files, expected):
    assert upward_imports(import_graph(_tree(tmp_path, files), "pkg"), LAYERS, "pkg") == expected
