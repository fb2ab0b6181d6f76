"""No import cycle among tradingd's modules. The graph is read from the source with `ast` (nothing
is imported): an edge per `import` of a tradingd module, `if TYPE_CHECKING:` blocks left out
(they never run). A cycle of module-level imports fails at import time; a cycle closed by an
import inside a function hides a tangle until some call order breaks it, so those are refused
too, except the deferrals listed below, each there for a reason."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROOMS = {"engine": "tradingd.engine", "adapters": "tradingd.adapters"}
# Imports made inside a function on purpose, which would close a cycle at module level.
DEFERRED = {
    # rich is loaded only when logs are pretty
    ("tradingd.adapters.app.logs", "tradingd.adapters.app.log_pretty"),
    # the Settings schema is walked once, on the first TOML amount, while settings is decoding
    ("tradingd.adapters.app.config_amounts", "tradingd.adapters.app.settings"),
}
Graph = dict[str, set[str]]


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for folder, package in ROOMS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            out[".".join([package, *(p for p in parts if p != "__init__")])] = path
    return out


def _imports(nodes: list[ast.AST], in_functions: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in nodes:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from _imports(list(node.orelse), in_functions)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif in_functions or not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _imports(list(ast.iter_child_nodes(node)), in_functions)


def _imported(node: ast.Import | ast.ImportFrom, name: str, modules: dict[str, Path]) -> set[str]:
    """The tradingd modules one import statement of module `name` loads."""
    if isinstance(node, ast.Import):
        wanted = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = (
                name.split(".") if modules[name].name == "__init__.py" else name.split(".")[:-1]
            )
            package = package[: len(package) - node.level + 1]
            base = ".".join([*package, *([base] if base else [])])
        # `from pkg import name` loads the submodule pkg.name when there is one, else pkg
        wanted = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    found = set()
    for target in wanted:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def import_graph(in_functions: bool) -> Graph:
    """Module -> the tradingd modules it imports."""
    modules = _modules()
    graph: Graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[name] = set()
        for node in _imports(list(tree.body), in_functions):
            graph[name] |= _imported(node, name, modules)
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
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


def test_the_graph_sees_tradingd_imports() -> None:
    graph = import_graph(in_functions=False)
    assert "tradingd.engine.model" in graph["tradingd.engine.core"]  # relative, in engine/
    assert "tradingd.adapters.store.stream_codec" in graph["tradingd.adapters.store.writer"]
    assert "tradingd.adapters.store" in import_graph(True)["tradingd.adapters.app.daemon"]


def test_cycles_finds_a_cycle_and_only_it() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_module_level_imports_form_no_cycle() -> None:
    assert cycles(import_graph(in_functions=False)) == []


def test_imports_inside_functions_close_no_cycle_but_the_listed_deferrals() -> None:
    graph = import_graph(in_functions=True)
    for importer, imported in DEFERRED:
        assert imported in graph[importer], f"stale deferral {importer} -> {imported}"
        graph[importer].discard(imported)
    assert cycles(graph) == []
