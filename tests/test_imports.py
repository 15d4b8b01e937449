"""The import graph of the project: dependencies point one way, no cycles, no private names across modules.

``pipeline`` -> ``transforms`` -> ``schemas`` (``schemas`` imports nothing of ours); a module never imports a private
(underscore) name from another module (make it public where it lives, or move it). Imports inside functions count:
a cycle hidden in a function is still a cycle for a reader.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "transforms", "schemas", "runners")
LAYER = {"schemas": 0, "runners": 0, "transforms": 1, "pipeline": 2}


def _modules() -> dict[str, Path]:
    found = {}
    for package in (*PACKAGES, "benchmarks"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> list[tuple[str, list[str], int]]:
    """``(imported module, names, line)`` for every import of one of ``modules`` in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names if alias.name in modules]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [alias.name for alias in node.names]
            submodules = [f"{node.module}.{name}" for name in names if f"{node.module}.{name}" in modules]
            if node.module in modules:
                plain = [name for name in names if f"{node.module}.{name}" not in modules]
                found.append((node.module, plain, node.lineno))
            found += [(module, [], node.lineno) for module in submodules]
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {
        name: {imported for imported, _, _ in _imports(path, modules) if imported != name}
        for name, path in modules.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules():
    assert _cycles(_graph()) == []


def test_dependencies_point_one_way():
    wrong = []
    modules = _modules()
    for name, path in modules.items():
        layer = LAYER.get(name.split(".")[0])
        if layer is None:
            continue
        for imported, _, line in _imports(path, modules):
            target = LAYER.get(imported.split(".")[0])
            if target is not None and target > layer:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    assert wrong == []


def test_no_private_names_imported_across_modules():
    wrong = []
    modules = _modules()
    for name, path in modules.items():
        for imported, names, line in _imports(path, modules):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and imported != name:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {', '.join(private)} from {imported}")
    assert wrong == []
