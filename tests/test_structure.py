"""The shape of the code: the README's layers, no import circle (not even through a string), no module past
400 lines nor function past 60, names declared once, tests that share through tests/helpers.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("loadtest", "servers")
MAX_LINES = 400  # as ruff format lays them out
MAX_FUNCTION_LINES = 60  # socketserver's longest is 34
# loadtest's layers, lowest first: a module imports only its own layer and those below it.  servers/ is
# below them all and never imports loadtest.  The top (cli, docs, locustfile) may import any layer.
LAYERS = (
    "servers",
    "loadtest.declare",
    "loadtest.hosts",
    "loadtest.client",
    "loadtest.measure",
    "loadtest.report",
    "loadtest.matrix",
    "loadtest.glue",
)
TOP = {"loadtest", "loadtest.cli", "loadtest.docs", "loadtest.locustfile"}


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
    for path in (ROOT / "loadtest" / "report").rglob("*.py"):  # no report keys on a scenario's or design's name
        assert '"unp30"' not in path.read_text(), path.name


def layer(module: str) -> int:
    return max(
        (i for i, prefix in enumerate(LAYERS) if module == prefix or module.startswith(prefix + ".")), default=-1
    )


def test_every_module_sits_in_a_layer_and_imports_none_above_its_own() -> None:
    known = modules()
    stray = [name for name in known if layer(name) < 0 and name not in TOP]
    assert not stray, f"modules outside the README's layers: {stray}"
    upward = []
    for name, path in known.items():
        if name in TOP:
            continue
        for dep in imports(path, known):
            if dep not in TOP and layer(dep) > layer(name):
                upward.append(f"{name} -> {dep}")
            assert dep not in TOP, f"{name} imports the entry point {dep}"
    assert not upward, upward
    assert (
        sum(
            1
            for n in known
            if n.count(".") == 1 and n.startswith("loadtest.") and not (ROOT / n.replace(".", "/")).is_dir()
        )
        <= 12
    )
    assert sum(1 for p in (ROOT / "loadtest").iterdir() if (p / "__init__.py").exists()) >= 4


def test_the_report_rules_never_import_its_rendering() -> None:
    known = modules()
    rendering = {n for n in known if n.startswith("loadtest.report.") and not n.startswith("loadtest.report.rules")}
    rendering -= {"loadtest.report.load"}  # reading a run's files is neither rule nor rendering
    crossing = [
        f"{n} -> {d}"
        for n, p in known.items()
        if n.startswith("loadtest.report.rules")
        for d in imports(p, known) & rendering
    ]
    assert not crossing, crossing


def test_only_the_locust_glue_imports_locust_or_gevent() -> None:
    for name, path in modules().items():
        tree = ast.parse(path.read_text())
        roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        roots |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        if not name.startswith("loadtest.glue") and name != "loadtest.locustfile":
            assert not roots & {"locust", "gevent"}, f"{name} imports {roots & {'locust', 'gevent'}}"


def test_no_link_is_written_as_a_module_function_string() -> None:
    # A "module:function" string is an import the circle test cannot see.
    link = re.compile(r"^(loadtest|servers)(\.\w+)+:\w+$")
    for name, path in modules().items():
        strings = [n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)]
        assert not [s for s in strings if isinstance(s, str) and link.match(s)], name


def test_no_function_is_past_the_mark() -> None:
    long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {n}")
    assert not long, long


def test_no_test_module_imports_another() -> None:
    for path in (ROOT / "tests").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            bad = [m for m in mods if re.match(r"^(tests\.)?(test_\w+|conftest)$", m)]
            assert not bad, f"{path.name} imports {bad}: shared code belongs in tests/helpers.py"
