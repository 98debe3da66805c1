"""The layout rules of issue 9: two products in the core and a node layer that mirrors them, no import
circles, relative imports in the pack, routes added by the package only, nodes that never parse reports."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("wanlean", "nodes")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Pack modules `path` imports (relative imports resolved; `from . import x` counts x when it is a module)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom) or not node.level:
            continue
        base = package.split(".")
        base = base[: len(base) - (node.level - 1)]
        if node.module:
            base = base + node.module.split(".")
        target = ".".join(base)
        for alias in node.names:
            found.add(f"{target}.{alias.name}")
        found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    paths = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    modules = {_module_name(p): p for p in paths}
    graph = {}
    for name, path in modules.items():
        edges = {target for target in _imports(path) if target in modules and target != name}
        # importing a.b.c runs a and a.b first: only the module itself is an edge here
        graph[name] = edges
    return graph


def test_no_import_circles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for target in graph[node]:
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])
    # A package importing its own submodules is how packages work, not a circle.
    cycles = [c for c in cycles if not all(c[0].startswith(m + ".") or m.startswith(c[0] + ".") or m == c[0] for m in c)]
    assert cycles == []


def test_core_has_one_package_per_product_and_nodes_mirror_it():
    for product in ("prompt", "video"):
        assert (ROOT / "wanlean" / product / "__init__.py").is_file()
        assert (ROOT / "nodes" / product / "__init__.py").is_file()


def test_every_pack_module_imports_the_pack_relatively():
    for path in (ROOT / "nodes").rglob("*.py"):
        assert not re.search(r"^\s*(from|import)\s+(nodes|wanlean)\b", path.read_text(), re.M), path


def test_routes_are_added_by_the_package_not_by_a_node_module():
    for path in (ROOT / "nodes").rglob("*.py"):
        if path.name in ("__init__.py", "routes.py", "_comfy.py") and path.parent.name == "nodes":
            continue
        text = path.read_text()
        assert "register()" not in text and "add_route" not in text, path


def test_nodes_never_parse_report_text():
    for path in (ROOT / "nodes").rglob("*.py"):
        assert ".splitlines()" not in path.read_text(), path
