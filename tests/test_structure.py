"""The package's shape: no import cycle among its modules, no function over 60 lines outside
``cli/``.

Every import statement counts, also those inside functions and under ``TYPE_CHECKING``: each is
a dependency a reader has to follow, and a cycle of them is two modules that cannot be
understood (or moved) apart. The rules match ``structure-check`` (the project's tool): relative
imports are resolved, ``from package import module`` depends on the module, an import of a
module's own parent package does not count, and a function's docstring is not counted in its
length.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "breastcls"
MAX_FUNCTION_LINES = 60
UNMEASURED_PACKAGE = "cli"  # typer commands: their option declarations are long by nature


def module_files(root: Path) -> dict[str, Path]:
    """Every module of the package at ``root`` by dotted name (a package by its own name)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imported_names(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The dotted names an import may refer to: ``from a import b`` is ``a`` or ``a.b``."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        # A package's __init__ is its own base; a module's base is its package.
        base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join([*base, node.module] if node.module else base)
    else:
        prefix = node.module or ""
    return [prefix, *(f"{prefix}.{alias.name}" for alias in node.names)]


def import_graph(root: Path) -> dict[str, set[str]]:
    """Each module of the package at ``root`` and the package's modules it imports."""
    modules = module_files(root)
    graph: dict[str, set[str]] = {module: set() for module in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for name in _imported_names(module, path, node):
                while name and name not in modules:  # a name inside a module: the module
                    name = name.rpartition(".")[0]
                if name and name != module and not module.startswith(name + "."):
                    graph[module].add(name)
    return graph


def import_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle through each group of modules that import each other (Tarjan's strongly
    connected components), as ``[a, b, ..., a]``; empty when the graph has none."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_within(graph, component) for component in components]


def _cycle_within(graph: Mapping[str, set[str]], component: set[str]) -> list[str]:
    """A closed path through ``component``, from its first module back to it (breadth first,
    so the shortest such path)."""
    start = min(component)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & component):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if target not in came_from:
                    came_from[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"{sorted(component)} is not strongly connected")


def long_functions(root: Path, limit: int = MAX_FUNCTION_LINES) -> Iterator[str]:
    """``path:line name (n lines)`` for every function over ``limit`` lines, docstring not
    counted, outside the package's ``cli`` sub-package."""
    unmeasured = f"{root.name}.{UNMEASURED_PACKAGE}"
    for module, path in module_files(root).items():
        if module == unmeasured or module.startswith(unmeasured + "."):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            assert node.end_lineno is not None
            lines = node.end_lineno - node.lineno + 1
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                assert first.end_lineno is not None
                lines -= first.end_lineno - first.lineno + 1
            if lines > limit:
                yield f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({lines} lines)"


def test_no_import_cycle() -> None:
    cycles = import_cycles(import_graph(PACKAGE))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_no_function_over_60_lines_outside_cli() -> None:
    found = sorted(long_functions(PACKAGE))
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(found)


# The walker itself, on small packages: each way a module can import another must count.


def _package(tmp_path: Path, files: Mapping[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


@pytest.mark.parametrize(
    "importer",
    [
        "from pkg.b import thing\n",
        "import pkg.b\n",
        "def later():\n    from pkg.b import thing\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import thing\n",
        "from . import b\n",
        "from .b import thing\n",
        "from pkg import b\n",
    ],
    ids=["from", "import", "in-function", "type-checking", "relative-module", "relative", "pkg"],
)
def test_every_kind_of_import_closes_a_cycle(tmp_path: Path, importer: str) -> None:
    root = _package(
        tmp_path,
        {"__init__.py": "", "a.py": importer, "b.py": "from pkg.a import other\nthing = 1\n"},
    )
    assert import_cycles(import_graph(root)) == [["pkg.a", "pkg.b", "pkg.a"]]


def test_relative_imports_resolve_from_a_sub_package(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "core.py": "from pkg.sub.deep import helper\n",
            "sub/__init__.py": "from .deep import helper\n",
            "sub/deep.py": "def helper():\n    from ..core import x\n",
        },
    )
    graph = import_graph(root)
    assert graph["pkg.sub"] == {"pkg.sub.deep"}
    assert graph["pkg.sub.deep"] == {"pkg.core"}
    assert import_cycles(graph) == [["pkg.core", "pkg.sub.deep", "pkg.core"]]


def test_a_chain_is_no_cycle_and_a_parent_package_import_does_not_count(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "__init__.py": "from pkg.a import x\n",
            "a.py": "import pkg\nfrom pkg.b import y\nx = 1\n",
            "b.py": "import numpy\ny = 2\n",
        },
    )
    graph = import_graph(root)
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b"}, "pkg.b": set()}
    assert import_cycles(graph) == []


def test_a_longer_cycle_is_printed_in_import_order(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from pkg import b\n",
            "b.py": "from pkg import c\n",
            "c.py": "def f():\n    import pkg.a\n",
            "d.py": "from pkg import a\n",
        },
    )
    assert import_cycles(import_graph(root)) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]


def test_long_functions_are_measured_without_docstrings_and_outside_cli(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(59))
    docstring = '    """One.\n\n    Two.\n    """\n'
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "fits.py": f"def sixty():\n{docstring}{body}",  # def line + 59: 60 lines
            "long.py": f"def sixty_one():\n{body}    return x0\n",
            "cli/__init__.py": "",
            "cli/commands.py": f"def command():\n{body}    return x0\n",
            "clinical.py": f"def report():\n{body}    return x0\n",
        },
    )
    assert sorted(long_functions(root)) == [
        "pkg/clinical.py:1 report (61 lines)",
        "pkg/long.py:1 sixty_one (61 lines)",
    ]
