"""The shape of the code, checked: no import cycles (function-level imports included), the
language never imports the engine, the SDK is imported in one place, and the Gateway's wire
format stays at the edge (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {
    "riskc.dsl": "dsl",
    "riskc.engine": "engine",
    "riskc.stdlib_rules": "stdlib_rules",
    "riskc.policies": "policies",
}
# Names only the ProjectX adapter (decode, the SDK boundary, recordings) and the simulated
# broker (which speaks the Gateway) may spell: the wire format's field names and hub targets.
WIRE_NAMES = frozenset(
    {
        "contractId",
        "averagePrice",
        "profitAndLoss",
        "creationTimestamp",
        "updateTimestamp",
        "canTrade",
        "stopPrice",
        "limitPrice",
        "fillVolume",
        "accountId",
        "orderId",
        "lastPrice",
        "bestBid",
        "bestAsk",
        "GatewayUserAccount",
        "GatewayUserPosition",
        "GatewayUserOrder",
        "GatewayUserTrade",
        "GatewayQuote",
        "GatewayTrade",
        "GatewayDepth",
    }
)
WIRE_HOMES = ("engine/adapters/projectx/", "engine/sim/")


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in (REPO / folder).rglob("*.py"):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            name = ".".join((package, *parts))
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every riskc module ``name`` imports, at any level (a function-level import counts)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in out if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _without_packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's ``__init__`` importing its own modules is how Python packages work, not a
    cycle between stages: edges from a package to its own submodules are left out."""
    return {n: {m for m in deps if not m.startswith(n + ".")} for n, deps in graph.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_cycle():
    assert _cycle(_without_packages(GRAPH)) is None, " -> ".join(_cycle(_without_packages(GRAPH)) or [])


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_language_never_imports_the_engine():
    offenders = {n: sorted(d for d in deps if d.startswith("riskc.engine")) for n, deps in GRAPH.items()}
    assert {n: d for n, d in offenders.items() if n.startswith("riskc.dsl") and d} == {}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_the_sdk_is_imported_in_one_place(module: str):
    source = MODULES[module].read_text(encoding="utf-8")
    if module != "riskc.engine.adapters.projectx.sdk":
        assert "project_x_py" not in {
            alias.name.split(".")[0]
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
        }


def _code_strings(path: Path) -> set[str]:
    """String constants in code, docstrings left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    }


def test_the_wire_format_stays_at_the_edge():
    leaks = {}
    for path in MODULES.values():
        where = path.relative_to(REPO).as_posix()
        if where.startswith(WIRE_HOMES):
            continue
        found = sorted(s for s in _code_strings(path) if any(name in s for name in WIRE_NAMES))
        if found:
            leaks[where] = found
    assert leaks == {}
