"""The import rules of DESIGN.md, enforced."""

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
