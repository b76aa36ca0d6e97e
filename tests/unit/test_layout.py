"""The packages' import rules (ARCHITECTURE.md, Packages), read from the source with ``ast``:

(a) nothing under broker/, wal/, cache/ or objectstore/ imports ``bench`` (the
    benchmark and test harness), at any level, inside functions included;
    ``sluice bench`` loads ``bench.cli`` by name, only from broker/cli.py;
(b) wal/, cache/ and objectstore/ never import ``broker``;
(c) no import cycle among the project's modules.

For (c) an import inside a function counts as much as one at module level,
one under ``if TYPE_CHECKING:`` does not (it never runs). Relative imports are
resolved against the importing module's package. ``from pkg import name`` imports
``pkg.name`` when that is a module, else ``pkg``. Importing ``a.b.c`` also
imports the packages ``a`` and ``a.b`` (their ``__init__``), except the
importer's own enclosing packages: Python initialises those before the
importer runs at all, so that edge orders nothing. An explicit import of names
from an enclosing package (``from . import NAME``) does count.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("broker", "wal", "cache", "objectstore", "bench")
CORE = ("broker", "wal", "cache", "objectstore")      # never import bench
STORAGE = ("wal", "cache", "objectstore")             # never import broker
BENCH_LOADER = "broker.cli"                           # the one module that loads bench.cli by name


@dataclass(frozen=True)
class Import:
    importer: str
    target: str            # the module imported (resolved, absolute)
    line: int
    type_checking: bool    # under `if TYPE_CHECKING:`

    def where(self) -> str:
        return f"{_path(self.importer)}:{self.line}"


def _modules() -> dict[str, Path]:
    """Every module of the project's packages: dotted name -> file."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _path(module: str) -> str:
    return str(MODULES[module].relative_to(ROOT))


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _package_of(module: str) -> str:
    return module if _is_package(module) else module.rpartition(".")[0]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"
            or isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _nearest_module(name: str) -> str | None:
    """``name`` if it is a project module, else its longest prefix that is (None: not ours)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str) -> list[Import]:
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    found: list[Import] = []

    def add(target: str, node: ast.stmt, tc: bool) -> None:
        if target.split(".")[0] in PACKAGES:
            resolved = _nearest_module(target) or target
            found.append(Import(module, resolved, node.lineno, tc))

    def visit(node: ast.AST, tc: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, tc)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node, tc)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(module)
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                add(sub if alias.name != "*" and sub in MODULES else base, node, tc)
        for child in ast.iter_child_nodes(node):
            visit(child, tc)

    visit(tree, False)
    return found


IMPORTS = {m: _imports(m) for m in MODULES}


def _dynamic_bench_loads(module: str) -> list[int]:
    """Lines of ``importlib.import_module("bench...")`` / ``__import__("bench...")`` calls."""
    lines = []
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and node.args[0].value.split(".")[0] == "bench"
                and (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
                     or isinstance(node.func, ast.Name) and node.func.id in ("__import__", "import_module"))):
            lines.append(node.lineno)
    return lines


def _edges() -> dict[str, dict[str, Import]]:
    """importer -> {imported module: the first import that makes the edge}, without TYPE_CHECKING ones."""
    graph: dict[str, dict[str, Import]] = {m: {} for m in MODULES}
    for m, imports in IMPORTS.items():
        ancestors = {m.rsplit(".", k)[0] for k in range(1, m.count(".") + 1)} | {m}
        for imp in imports:
            if imp.type_checking or imp.target not in MODULES:
                continue
            parts = imp.target.split(".")
            implicit = {".".join(parts[:k]) for k in range(1, len(parts))} - ancestors
            for target in sorted(implicit) + [imp.target]:
                if target != m and target in MODULES:
                    graph[m].setdefault(target, imp)
    return graph


def _cycles(graph: dict[str, dict[str, Import]]) -> list[tuple[list[str], list[str]]]:
    """Per strongly connected component of more than one module (Tarjan): one cycle
    (a list of modules, first repeated at the end; the shortest through its smallest
    module) and the component's modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    sccs: list[set[str]] = []

    def strongconnect(v: str) -> None:      # recursion depth is bounded by the module count
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.add(w)
                if w == v:
                    break
            if len(scc) > 1:
                sccs.append(scc)

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    cycles = []
    for scc in sccs:
        start = min(scc)
        prev = {start: None}
        frontier = [start]
        found = None
        while frontier and found is None:      # breadth first: the shortest way back to start
            nxt = []
            for v in frontier:
                for w in sorted(graph[v]):
                    if w == start:
                        found = v
                        break
                    if w in scc and w not in prev:
                        prev[w] = v
                        nxt.append(w)
                if found is not None:
                    break
            frontier = nxt
        path = [start]
        v = found
        while v is not None and v != start:
            path.insert(1, v)
            v = prev[v]
        cycles.append((path + [start], sorted(scc)))
    return sorted(cycles)


def _describe(cycle: list[str], scc: list[str], graph: dict[str, dict[str, Import]]) -> str:
    steps = [f"    {a} -> {b}  ({graph[a][b].where()})" for a, b in zip(cycle, cycle[1:])]
    return (" -> ".join(cycle) + "\n" + "\n".join(steps)
            + f"\n  one of the cycles among these {len(scc)} modules: {', '.join(scc)}")


def test_every_package_is_found():
    for pkg in PACKAGES:
        assert pkg in MODULES, f"{pkg}/__init__.py missing"
    assert "bench.launch" in MODULES and "bench.minio" in MODULES


def test_core_packages_never_import_bench():
    bad = [f"{imp.where()}: {imp.importer} imports {imp.target}"
           for m, imports in IMPORTS.items() if m.split(".")[0] in CORE
           for imp in imports if imp.target.split(".")[0] == "bench"]
    assert not bad, "the broker and its storage packages must not import bench:\n" + "\n".join(bad)


def test_only_the_cli_loads_bench_by_name():
    loads = {m: _dynamic_bench_loads(m) for m in MODULES if m.split(".")[0] in CORE}
    bad = [f"{_path(m)}:{line}" for m, lines in loads.items() if m != BENCH_LOADER for line in lines]
    assert not bad, f"only {BENCH_LOADER} (for `sluice bench`) may load bench: " + ", ".join(bad)
    assert loads[BENCH_LOADER], f"{BENCH_LOADER} no longer loads bench.cli: update this test"


def test_storage_packages_never_import_broker():
    bad = [f"{imp.where()}: {imp.importer} imports {imp.target}"
           for m, imports in IMPORTS.items() if m.split(".")[0] in STORAGE
           for imp in imports if imp.target.split(".")[0] == "broker"]
    assert not bad, "wal, cache and objectstore must not import broker:\n" + "\n".join(bad)


def test_no_import_cycles():
    graph = _edges()
    cycles = _cycles(graph)
    assert not cycles, (f"{len(cycles)} import cycle(s) (one per strongly connected group of modules):\n"
                        + "\n".join(_describe(c, scc, graph) for c, scc in cycles))


def test_the_cycle_finder_finds_cycles():
    imp = Import("x", "y", 1, False)
    graph = {"a": {"b": imp}, "b": {"c": imp}, "c": {"a": imp, "d": imp}, "d": {}, "e": {"e": imp}}
    assert _cycles(graph) == [(["a", "b", "c", "a"], ["a", "b", "c"])]
    assert _cycles({"a": {"b": imp}, "b": {}}) == []
