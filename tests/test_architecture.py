"""The architecture, enforced: rooms, import direction, no cycles, Dagster internals in one place.

The import graph is read from the source (every import statement, those inside functions too), so
a cycle hidden behind a function-level import still counts.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sunalgo", "sunrise_assets", "resources")
INTERNALS = "sunrise_assets.dagster_internals"
GENERATED = {"sunalgo.proto.sunrise_recording_pb2"}


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """(imported module or name, line) for every import statement of a module, relative ones resolved."""
    found = []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            # `from pkg import sub` imports the submodule pkg.sub when there is one, else a name of pkg
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def _resolve(imported: str) -> str | None:
    """The project module an import refers to (the longest module prefix), or None for outside code."""
    while imported:
        if imported in MODULES:
            return imported
        imported = imported.rpartition(".")[0]
    return None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in MODULES.items():
        for imported, _ in _imports(name, path):
            target = _resolve(imported)
            if target and target != name:
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
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
                found.append(sorted(component))

    for module in sorted(set(graph) | {m for targets in graph.values() for m in targets}):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _private_dagster_imports() -> list[str]:
    offenders = []
    for name, path in MODULES.items():
        if name == INTERNALS or name.startswith(INTERNALS + "."):
            continue
        for imported, line in _imports(name, path):
            top, _, rest = imported.partition(".")
            if top.startswith("dagster") and (rest.startswith("_") or "._" in f".{rest}"):
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {imported}")
    return offenders


def test_dagster_private_api_only_in_the_internals_package():
    assert _private_dagster_imports() == [], (
        f"Dagster's private API (dagster._...) may be imported only in {INTERNALS}: "
        "add what you need there, with a check in tests/test_dagster_internals.py"
    )


def test_the_internals_package_is_where_the_private_imports_are():
    internal = [
        imported
        for name, path in MODULES.items()
        if name.startswith(INTERNALS)
        for imported, _ in _imports(name, path)
        if imported.startswith("dagster._")
    ]
    assert internal, "the internals package imports no dagster._ name: the check above would prove nothing"


def test_module_names_are_unique():
    by_name = defaultdict(list)
    for name in MODULES:
        leaf = name.rpartition(".")[2]
        if name not in PACKAGES and MODULES[name].name != "__init__.py" and name not in GENERATED:
            by_name[leaf].append(name)
    assert {leaf: names for leaf, names in by_name.items() if len(names) > 1} == {}


def _dagster_free(modules: list[str]) -> str:
    """Import each module in a fresh interpreter, in turn; print the first that pulled Dagster in."""
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "    if any(k == 'dagster' or k.startswith('dagster.') for k in sys.modules):\n"
        "        print(m); break\n"
        "else:\n"
        "    print('ok')\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_domain_code_imports_no_dagster():
    domain = [m for m in MODULES if m == "sunrise_assets.domain" or m.startswith("sunrise_assets.domain.")]
    assert len(domain) > 15
    assert _dagster_free(sorted(domain)) == "ok", "this domain module imports Dagster (directly or not)"


def test_sunalgo_imports_no_dagster():
    assert _dagster_free(sorted(m for m in MODULES if m.startswith("sunalgo"))) == "ok"


def test_the_dagster_free_check_catches_dagster():
    assert _dagster_free(["sunrise_assets.domain.layout", "sunrise_assets.defs.partitions"]) == (
        "sunrise_assets.defs.partitions"
    )


def test_domain_code_does_not_reach_into_dagster_rooms():
    graph = _graph()
    rooms = ("sunrise_assets.defs", "sunrise_assets.lib", "sunrise_assets.cli", INTERNALS, "resources")
    leaks = {
        module: sorted(t for t in targets if t.startswith(rooms))
        for module, targets in graph.items()
        if module.startswith("sunrise_assets.domain")
    }
    assert {m: t for m, t in leaks.items() if t} == {}


def test_settings_and_help_import_no_dagster():
    assert _dagster_free(["sunrise_assets.settings"]) == "ok"
    # `sunrise ingest` starts its daemon child before it imports Dagster (the child loads meanwhile).
    assert _dagster_free(["sunrise_assets.lib.daemon_child", "sunrise_assets.cli.console"]) == "ok"
    code = (
        "import sys\n"
        "sys.argv = ['sunrise', '--help']\n"
        "from sunrise_assets.cli.app import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('DAGSTER' if any(k.split('.')[0] == 'dagster' for k in sys.modules) else 'NO-DAGSTER')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Usage" in done.stdout and "ingest" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "NO-DAGSTER"


@pytest.mark.parametrize("room", ["defs", "domain", "lib", "cli", "synthetic", "dagster_internals"])
def test_every_room_says_what_it_is(room):
    doc = ast.get_docstring(ast.parse((ROOT / "sunrise_assets" / room / "__init__.py").read_text()))
    assert doc and len(doc) > 60
