"""The package's dependencies point down only.

Every module of ``srdose`` is parsed (not imported) and each import of
``srdose.*`` is checked against the layer table below: a module may import
its own layer and those below, never upward; where a layer lists its entries
in sub-layers (curation, then governance), never to a later one. Also refused: a cycle of module-level imports, an
``import srdose.*`` inside a function, sqlalchemy outside ``srdose.store``,
anything importing ``srdose.cli``, and file access in ``srdose.physics``
outside ``srdose.physics.io``. Each offence is printed as ``file:line``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "srdose"

#: Bottom to top: each layer's sub-layers, bottom to top, each a list of entries. An entry is a
#: module or package (``srdose`` itself: the package root, its version).
LAYERS: list[list[list[str]]] = [
    [
        [
            "srdose",
            "srdose.vocab",
            "srdose.compat",
            "srdose.dates",
            "srdose.terminal",
            "srdose.files",
            "srdose.reference",
            "srdose.config",
            "srdose.units",
            "srdose.codes",
            "srdose.columns",
            "srdose.physics",
        ]
    ],
    [["srdose.parse", "srdose.pseudonym", "srdose.digest", "srdose.spool", "srdose.quarantine"]],
    [["srdose.store"]],
    [["srdose.curation"], ["srdose.governance"]],
    [["srdose.ingest", "srdose.recalc"]],
    [["srdose.receive", "srdose.report", "srdose.export"]],
    [["srdose.synth"], ["srdose.demo"]],
    [["srdose.cli", "srdose.web", "srdose.__main__"]],
]
#: Modules that may import only up to this layer, whatever their own.
CEILING = {"srdose.synth": 1}
#: The command line: nothing imports it but itself and ``python -m srdose``.
CLI = "srdose.cli"
CLI_IMPORTERS = ("srdose.cli", "srdose.__main__")
#: The one module of the physics that reads and writes files.
PHYSICS_IO = "srdose.physics.io"
#: Calls that read or write files (or package data).
FILE_CALLS = {
    "open",
    "read_text",
    "read_bytes",
    "write_text",
    "write_bytes",
    "load",
    "loadtxt",
    "genfromtxt",
    "save",
    "savez",
    "savez_compressed",
    "savetxt",
    "files",
    "mkdir",
}
FILE_MODULES = {"importlib.resources", "csv"}

_RANK = {name: (layer, sub) for layer, subs in enumerate(LAYERS) for sub, names in enumerate(subs) for name in names}


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported srdose module, or the third-party module's name
    where: str  # file:line
    in_function: bool
    at_import_time: bool  # runs when the module is imported (not in a function, not TYPE_CHECKING)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def _resolve(name: str, known: dict[str, Path]) -> str:
    """The longest known module that ``name`` is, or is inside."""
    while name not in known and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(name: str, path: Path, known: dict[str, Path]) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    rel = path.relative_to(PACKAGE_DIR.parent)
    out: list[Import] = []

    def add(target: str, node: ast.stmt, in_function: bool, type_checking: bool) -> None:
        out.append(Import(name, target, f"{rel}:{node.lineno}", in_function, not (in_function or type_checking)))

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    target = alias.name
                    add(
                        _resolve(target, known) if target.split(".")[0] == "srdose" else target,
                        child,
                        in_function,
                        type_checking,
                    )
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    module = ".".join(base + ([child.module] if child.module else []))
                else:
                    module = child.module or ""
                if module.split(".")[0] != "srdose":
                    add(module, child, in_function, type_checking)
                    continue
                for alias in child.names:
                    add(_resolve(f"{module}.{alias.name}", known), child, in_function, type_checking)
            else:
                visit(
                    child,
                    in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)),
                    type_checking or (isinstance(child, ast.If) and _is_type_checking(child)),
                )

    visit(tree, False, False)
    return out


def all_imports() -> list[Import]:
    known = modules()
    return [imp for name, path in known.items() for imp in imports_of(name, path, known)]


def rank(module: str) -> tuple[int, int] | None:
    while module not in _RANK and "." in module:
        module = module.rsplit(".", 1)[0]
    return _RANK.get(module)


def _group(module: str) -> str:
    """The entry of the layer table a module belongs to."""
    while module not in _RANK and "." in module:
        module = module.rsplit(".", 1)[0]
    return module


def _fail(what: str, lines: list[str]) -> None:
    lines = list(dict.fromkeys(lines))
    if lines:
        print(f"{what}:\n  " + "\n  ".join(lines))
        pytest.fail(f"{len(lines)} {what} (listed above)", pytrace=False)


def _srdose(imp: Import) -> bool:
    return imp.target.split(".")[0] == "srdose"


def test_every_module_has_a_layer():
    _fail("modules not in the layer table", [str(path) for name, path in modules().items() if rank(name) is None])


def test_imports_point_down():
    bad = []
    for imp in all_imports():
        if not _srdose(imp):
            continue
        src, dst = rank(imp.source), rank(imp.target)
        if src is None or dst is None or _group(imp.source) == _group(imp.target):
            continue
        ceiling = CEILING.get(_group(imp.source))
        if dst > src or (ceiling is not None and dst[0] > ceiling):
            bad.append(f"{imp.where}: {imp.source} (L{src[0]}) imports {imp.target} (L{dst[0]})")
    _fail("upward imports", bad)


def test_no_srdose_import_inside_a_function():
    _fail(
        "function-local imports of srdose",
        [
            f"{imp.where}: {imp.source} imports {imp.target}"
            for imp in all_imports()
            if imp.in_function and _srdose(imp)
        ],
    )


def test_no_import_cycle_at_module_level():
    graph: dict[str, dict[str, str]] = {}
    for imp in all_imports():
        if imp.at_import_time and _srdose(imp) and imp.target != imp.source:
            graph.setdefault(imp.source, {}).setdefault(imp.target, imp.where)
    # Tarjan's strongly connected components: each of more than one module is a cycle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    _fail(
        "import cycles",
        [", ".join(f"{graph[a][b]}: {a} -> {b}" for a in c for b in graph.get(a, {}) if b in c) for c in cycles],
    )


def test_sqlalchemy_only_in_the_store():
    _fail(
        "sqlalchemy imports outside srdose.store",
        [
            f"{imp.where}: {imp.source} imports {imp.target}"
            for imp in all_imports()
            if imp.target.split(".")[0] == "sqlalchemy" and _group(imp.source) != "srdose.store"
        ],
    )


def test_nothing_imports_the_command_line():
    _fail(
        "imports of srdose.cli",
        [
            f"{imp.where}: {imp.source} imports {imp.target}"
            for imp in all_imports()
            if _group(imp.target) == CLI and _group(imp.source) not in CLI_IMPORTERS
        ],
    )


def test_physics_reads_files_only_in_its_io_module():
    bad = []
    for name, path in modules().items():
        if _group(name) != "srdose.physics" or name == PHYSICS_IO:
            continue
        rel = path.relative_to(PACKAGE_DIR.parent)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if called in FILE_CALLS:
                    bad.append(f"{rel}:{node.lineno}: {called}()")
            elif isinstance(node, ast.ImportFrom) and node.module in FILE_MODULES | {"importlib"}:
                if node.module != "importlib" or any(a.name == "resources" for a in node.names):
                    bad.append(f"{rel}:{node.lineno}: imports {node.module}")
            elif isinstance(node, ast.Import):
                bad += [f"{rel}:{node.lineno}: imports {a.name}" for a in node.names if a.name in FILE_MODULES]
    _fail("file access in srdose.physics outside srdose.physics.io", bad)
