"""The package's modules import one way: no cycle, counting the imports made
inside functions too (a cycle hidden in a function is still a cycle: it breaks
as soon as someone moves the import to the top)."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter

from conftest import ROOT

PACKAGE = ROOT / "procmon_ctl"


def module_name(path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path, name: str, modules: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            mod = f"{base}.{node.module}" if node.level and node.module else node.module or base
            # `from . import x` and `from .pkg import mod` name modules too.
            targets = [mod, *(f"{mod}.{a.name}" for a in node.names)]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def test_no_import_cycle_in_the_package():
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: imports_of(path, name, set(paths)) for name, path in paths.items()}
    assert graph["procmon_ctl.stream"] >= {"procmon_ctl.render", "procmon_ctl.rows"}
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as err:
        raise AssertionError(f"import cycle: {' -> '.join(err.args[1])}") from None
