"""The shape of the code: no import circle, no module past ~350 lines, names declared once."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("loadtest", "servers")
MAX_LINES = 360


def modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules a module imports at run time (TYPE_CHECKING blocks do not run)."""
    tree = ast.parse(path.read_text())
    guards = [node for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)]
    skipped = {id(n) for guard in guards for n in ast.walk(guard)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
            submodules = [n for n in names if n in known]
            out.update(submodules or [node.module])
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m in known}


def test_there_is_no_import_circle() -> None:
    known = modules()
    graph = {name: imports(path, known) - {name} for name, path in known.items()}
    # A package's __init__ importing its own submodules is how a package is made, not a circle.
    for name in graph:
        graph[name] = {d for d in graph[name] if not (d.startswith(name + ".") and known[name].name == "__init__.py")}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        for dep in graph[node]:
            if dep in path:
                cycles.append([*path[path.index(dep) :], dep])
            elif len(path) < 40:
                visit(dep, [*path, dep])

    for name in graph:
        visit(name, [name])
    assert not cycles, cycles[:5]


def test_no_module_is_past_the_mark() -> None:
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_ops_designs_and_scenarios_are_not_listed_outside_their_declarations() -> None:
    from loadtest.declare.scenarios import SCENARIOS
    from servers import DESIGNS

    lists = {
        "ops": re.compile(r"""["']ECHO["'],\s*["']SLEEP["']"""),
        "designs": re.compile(r"""["']blocking["'],\s*["']threaded["'],\s*["']selectors["'],\s*["']asyncio["']"""),
        "scenarios": re.compile(r"""["']echo["'],\s*["']io-wait["'],\s*["']conn-storm["'],\s*["']arrivals["']"""),
    }
    for name, path in modules().items():
        text = path.read_text()
        for what, pattern in lists.items():
            assert not pattern.search(text), f"{name} lists the {what} by hand"
    assert "unp30" in SCENARIOS and "blocking" in DESIGNS  # the declarations themselves
    for path in (ROOT / "loadtest" / "report").glob("*.py"):  # no report keys on a scenario's or design's name
        assert '"unp30"' not in path.read_text(), path.name
