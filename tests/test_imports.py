"""The package's folders follow a record's path, and imports only go down it:
kernel → instance → process → stream → views → commands → cli.  A module may import
its own layer and the layers below; `errors` and the package's __init__ are the
vocabulary of all.  Imports made inside functions count too: an upward import
hidden in a function is still one, and a cycle through it breaks as soon as
someone moves the import to the top."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter

from conftest import ROOT

PACKAGE = ROOT / "procmon_ctl"

# Lowest first.  A module's layer is its folder's name, or its own for the modules
# beside the folders.
LAYERS = ("base", "kernel", "instance", "process", "stream", "views", "commands", "cli")
BASE = {"procmon_ctl", "procmon_ctl.errors", "procmon_ctl.quoting"}
TOP = {"procmon_ctl.__main__": "cli"}


def module_name(path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    if module in BASE:
        return "base"
    if module in TOP:
        return TOP[module]
    layer = module.split(".")[1]
    assert layer in LAYERS, f"{module} is in no layer: put it in one of {LAYERS[1:]}"
    return layer


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
    # A module's own packages are imported before it in any case: not a dependency.
    return {t for t in found if not name.startswith(t + ".")}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports_of(path, name, set(paths)) for name, path in paths.items()}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    return sorted(
        f"{a} ({layer_of(a)}) imports {b} ({layer_of(b)})"
        for a, targets in graph.items()
        for b in targets
        if rank[layer_of(b)] > rank[layer_of(a)]
    )


def test_every_module_is_in_a_layer():
    for name in import_graph():
        layer_of(name)


def test_imports_only_go_down_the_layers():
    upward = upward_imports(import_graph())
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_the_check_sees_an_upward_import():
    graph = {"procmon_ctl.kernel.libbpf": {"procmon_ctl.views.render"}}
    assert upward_imports(graph) == [
        "procmon_ctl.kernel.libbpf (kernel) imports procmon_ctl.views.render (views)"
    ]
    assert upward_imports({"procmon_ctl.views.render": {"procmon_ctl.kernel.ringbuf"}}) == []


def test_the_graph_sees_imports_made_inside_functions():
    # cli/events.py imports the reading loop inside its command function.
    assert "procmon_ctl.stream.follow" in import_graph()["procmon_ctl.cli.events"]


def test_no_import_cycle_in_the_package():
    # Across layers the test above already refuses one; within a layer it can hide.
    try:
        list(TopologicalSorter(import_graph()).static_order())
    except CycleError as err:
        raise AssertionError(f"import cycle: {' -> '.join(err.args[1])}") from None
