"""The import rules of docs/design.md, enforced."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_proto_is_pure():
    for path in (ROOT / "warpgate" / "proto").rglob("*.py"):
        bad = imports(path) & {"asyncio", "socket", "time", "selectors"}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_engine_never_imports_the_lab():
    for path in (ROOT / "warpgate").rglob("*.py"):
        bad = imports(path) & {"netsim", "mininet"}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def module_imports(path: Path) -> set[str]:
    """Every warpgate module this file imports, TYPE_CHECKING blocks included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("warpgate")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("warpgate"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def engine_graph() -> dict[str, set[str]]:
    modules = {}
    for path in (ROOT / "warpgate").rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        modules[name] = path
    return {
        name: {m for m in module_imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }


def test_plugins_never_import_the_node():
    graph = engine_graph()
    for name, deps in graph.items():
        if name.startswith("warpgate.plugins"):
            assert "warpgate.node" not in deps and "warpgate.race" not in deps, name


def test_no_import_cycles_between_engine_modules():
    """node <-> plugins and channels <-> stun were cycles once; no module may import its importer.
    Package __init__ files re-export, so they are left out of the cycle search."""
    graph = {
        n: {d for d in deps if not (ROOT / Path(*d.split("."))).is_dir()}
        for n, deps in engine_graph().items()
    }
    graph = {n: d for n, d in graph.items() if not (ROOT / Path(*n.split("."))).is_dir()}
    state: dict[str, int] = {}

    def visit(n: str, stack: list[str]) -> None:
        state[n] = 1
        for d in graph.get(n, ()):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(d) :], d]))
            if d not in state:
                visit(d, [*stack, d])
        state[n] = 2

    for n in graph:
        if n not in state:
            visit(n, [n])
